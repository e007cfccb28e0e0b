"""DescribeStream allows 10 calls a second per account, not per stream: the adapters of a
process's DynamoDB streams share one pacer (``[[streams]]``, ADR 0026), at the lowest
``describe_rate_per_s`` among them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from processor.app.streams import describe_pacer
from processor.settings import load_settings
from processor.sources.dynamodb import DescribePacer, StreamsAdapter


class FakeStreams:
    """DescribeStream answers, and the client's event hooks (the adapter registers one)."""

    def __init__(self) -> None:
        self.meta = SimpleNamespace(events=SimpleNamespace(register=lambda *a, **k: None))
        self.calls: list[str] = []

    def describe_stream(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs["StreamArn"])
        return {"StreamDescription": {"StreamStatus": "ENABLED", "Shards": []}}


def test_two_streams_share_the_account_s_describe_budget() -> None:
    """Four describes of two streams at 5 calls/s: one pacer spaces all four 0.2 s apart,
    where two pacers of their own would let each stream go at 5/s (10/s together)."""
    sleeps: list[float] = []
    pacer = DescribePacer(5.0, sleep=sleeps.append, monotonic=lambda: 0.0)
    client = FakeStreams()
    orders = StreamsAdapter(client, pacer=pacer)
    payments = StreamsAdapter(client, pacer=pacer)
    for adapter, arn in ((orders, "o"), (payments, "p"), (orders, "o"), (payments, "p")):
        adapter.describe(arn)
    assert client.calls == ["o", "p", "o", "p"]
    assert [round(s, 3) for s in sleeps] == [0.2, 0.4, 0.6]

    apart: list[float] = []
    alone = [
        StreamsAdapter(client, describe_rate_per_s=5.0, sleep=apart.append, monotonic=lambda: 0.0)
        for _ in range(2)
    ]
    for adapter in alone + alone:
        adapter.describe("x")
    assert [round(s, 3) for s in apart] == [0.2, 0.2]  # each its own 5/s: 10/s together


def test_the_process_pacer_runs_at_the_lowest_rate_of_its_dynamodb_streams(
    tmp_path: Path,
) -> None:
    config = tmp_path / "dsp.toml"
    config.write_text(
        """
[[streams]]
name = "orders"
table = "orders"
describe_rate_per_s = 4
[[streams]]
name = "customers"
table = "customers"
describe_rate_per_s = 2.5
[[streams]]
name = "payments"
source = "kinesis"
kinesis_stream = "payments"
describe_rate_per_s = 1
[checkpoints]
application = "app"
[[routes]]
name = "r"
consumer = "cache"
options = { keys = ["k:{pk}"] }
"""
    )
    pacer = describe_pacer(load_settings(config, environ={}))
    sleeps: list[float] = []
    pacer._sleep, pacer._monotonic = sleeps.append, lambda: 0.0
    pacer.wait()
    pacer.wait()
    assert sleeps == [0.4]  # 2.5 calls/s: the customers stream's (Kinesis does not count)
