"""The write-capacity model the benchmarks and capacity tests use, against DynamoDB's
documented rules: a table bucket refilled at its rate that banks at most 300 s of unused
capacity, partitions capped per second, ceil(size / 1 KB) WCU per item, and a batch that
writes what fits."""

from __future__ import annotations

from processor.testing import CapacityModel, item_wcu


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_item_costs_one_wcu_per_started_kilobyte() -> None:
    assert item_wcu({"pk": {"S": "a"}}) == 1
    assert item_wcu({"pk": {"S": "a"}, "blob": {"S": "x" * 1017}}) == 1  # 2 + 1 + 4 + 1017 bytes
    assert item_wcu({"pk": {"S": "a"}, "blob": {"S": "x" * 1018}}) == 2
    assert item_wcu({"pk": {"S": "a"}, "blob": {"S": "x" * 5000}}) == 5


def test_a_spent_table_admits_its_rate_and_banks_at_most_300_seconds() -> None:
    clock = Clock()
    model = CapacityModel(wcu_per_s=100, partitions=1, partition_wcu_per_s=10_000, clock=clock)
    assert model.admit([(0, 1)]) == [False]  # burst spent: nothing banked yet
    clock.now += 0.5
    assert model.admit([(0, 1)] * 60) == [True] * 50 + [False] * 10  # what fits is written
    clock.now += 10_000  # idle for hours: 300 s of capacity banked, no more
    model.partition_wcu_per_s = 1e9
    assert sum(model.admit([(0, 1)] * 40_000)) == 30_000


def test_a_partition_is_capped_whatever_the_table_has() -> None:
    clock = Clock()
    model = CapacityModel(
        wcu_per_s=1000, partitions=2, partition_wcu_per_s=100, burst_credit=10_000, clock=clock
    )
    clock.now += 1.0
    hot = model.admit([(0, 1)] * 150)
    assert sum(hot) == 100  # the partition's second of capacity
    assert sum(model.admit([(1, 1)] * 50)) == 50  # the other partition is unaffected
    model.set_capacity(10)  # the table's limit drops (banked credit stays)
    clock.now += 1.0
    assert sum(model.admit([(0, 1)] * 150)) == 100
