"""The capacity benchmark's "used" figure (benchmarks/capacity.py): a writer that takes every
token the capacity model offers, as soon as it is offered, uses all of what ``granted``
says could be granted, in every scenario. The ceiling is checked against the model itself
(processor.testing.CapacityModel, on a fake clock), not against a second reading of it."""

from __future__ import annotations

from functools import partial

import pytest

from benchmarks.capacity import (
    ITEMS,
    PARTITIONS,
    SCENARIOS,
    TABLE_WCU,
    Scenario,
    _keys,
    granted,
    model_for,
    partition_shares,
)
from processor.testing.capacity_proxy import partition_of

STEP_S = 0.01


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def greedy_run(scenario: Scenario) -> tuple[float, float]:
    """Seconds a writer needs that sends every item the moment its partition and the table
    have a token for it (1 WCU each), and the busiest partition's share of the writes."""
    clock = Clock()
    model = model_for(scenario, clock)
    where = partial(partition_of, partitions=PARTITIONS)
    waiting = [0] * PARTITIONS
    for key in _keys(scenario):
        waiting[where({"pk": {"S": key}})] += 1
    drop_after = ITEMS / TABLE_WCU / 3
    while any(waiting):
        clock.now += STEP_S
        if scenario.drop_to is not None and clock.now >= drop_after:
            model.set_capacity(scenario.drop_to)
        # the partition with the most left goes first: no partition is left to finish alone
        # at its cap while the table could write more (the fastest schedule there is)
        full: set[int] = set()
        while candidates := [p for p in range(PARTITIONS) if waiting[p] and p not in full]:
            partition = max(candidates, key=lambda p: waiting[p])
            if model.admit([(partition, 1)]) == [True]:
                waiting[partition] -= 1
            else:
                full.add(partition)
    return clock.now, max(partition_shares(_keys(scenario), where))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_a_writer_taking_every_token_offered_uses_all_that_could_be_granted(
    scenario: Scenario,
) -> None:
    seconds, busiest = greedy_run(scenario)
    used = ITEMS / granted(scenario, seconds, busiest)
    # one step of the simulation is the only slack: it can end up to STEP_S late
    assert 0.97 <= used <= 1.0 + 1e-9


def test_banked_credit_is_bounded_by_what_the_partitions_can_write() -> None:
    """With 5 s of credit the table bucket alone would grant 2,000 WCU more than four
    partitions of 150 WCU/s can write in the run."""
    (scenario,) = [s for s in SCENARIOS if s.burst_credit_s]
    seconds, busiest = greedy_run(scenario)
    table_alone = TABLE_WCU * seconds + scenario.burst_credit_s * TABLE_WCU
    assert granted(scenario, seconds, busiest) < 0.75 * table_alone
