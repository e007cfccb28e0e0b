"""An amazon_kclpy record processor (v1, v2 or v3 API) that writes what it sees to a file.

    python recorder.py VERSION OUT.jsonl

Each line of OUT is one event: initialize, record (with the decoded record document),
checkpoint (what it asked, and the error the daemon answered), lease_lost, shard_ended,
shutdown_requested. It checkpoints the last record of every batch. Behaviour switches, by
environment: ``RECORDER_CRASH_AFTER=N`` exits abruptly (once per OUT file) after N records
of a batch, before checkpointing; ``RECORDER_BAD_CHECKPOINT=1`` also asks, once, for a
checkpoint past every record delivered; ``RECORDER_HANG_ONCE=1`` hangs in its first batch.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from amazon_kclpy import kcl
from amazon_kclpy.v2 import processor as v2
from amazon_kclpy.v3 import processor as v3

VERSION, OUT = int(sys.argv[1]), Path(sys.argv[2])
CRASH_AFTER = int(os.environ.get("RECORDER_CRASH_AFTER", "0"))
CRASHED = OUT.with_suffix(".crashed")
BAD = os.environ.get("RECORDER_BAD_CHECKPOINT") == "1"
BAD_DONE = OUT.with_suffix(".bad-done")
HANG = os.environ.get("RECORDER_HANG_ONCE") == "1"
HUNG = OUT.with_suffix(".hung")


def write(event: dict[str, Any]) -> None:
    with OUT.open("a") as out:
        out.write(json.dumps(event) + "\n")


class Recorder:
    shard = ""

    def on_initialize(self, shard_id: str, sequence_number: str | None) -> None:
        self.shard = shard_id
        write({"event": "initialize", "shard": shard_id, "position": sequence_number})

    def on_records(self, records: list[Any], checkpointer: kcl.Checkpointer) -> None:
        if HANG and records and not HUNG.exists():
            HUNG.write_text("hung")
            time.sleep(60)  # the daemon's timeoutInSeconds kills us first
        for index, record in enumerate(records):
            if CRASH_AFTER and index == CRASH_AFTER and not CRASHED.exists():
                CRASHED.write_text("crashed")
                os._exit(3)  # mid-batch, nothing checkpointed for it
            write(
                {
                    "event": "record",
                    "shard": self.shard,
                    "sequenceNumber": record.sequence_number,
                    "subSequenceNumber": record.sub_sequence_number,
                    "partitionKey": record.partition_key,
                    "approximateArrivalTimestamp": record.get("approximateArrivalTimestamp"),
                    "document": json.loads(record.binary_data),
                }
            )
        if BAD and records and not BAD_DONE.exists():
            BAD_DONE.write_text("done")
            self.checkpoint(checkpointer, str(int(records[-1].sequence_number) + 10**6))
        if records:
            self.checkpoint(checkpointer, records[-1].sequence_number)

    def checkpoint(self, checkpointer: kcl.Checkpointer, sequence: str | None) -> None:
        try:
            checkpointer.checkpoint(sequence)
            error = None
        except kcl.CheckpointError as exc:
            error = exc.value
        write({"event": "checkpoint", "shard": self.shard, "asked": sequence, "error": error})


class V1(kcl.RecordProcessorBase, Recorder):  # type: ignore[misc]
    def initialize(self, shard_id: str) -> None:
        self.on_initialize(shard_id, None)

    def process_records(self, records: list[Any], checkpointer: kcl.Checkpointer) -> None:
        self.on_records(records, checkpointer)

    def shutdown(self, checkpointer: kcl.Checkpointer, reason: str) -> None:
        write({"event": "shutdown", "shard": self.shard, "reason": reason})
        if reason == "TERMINATE":
            self.checkpoint(checkpointer, None)


class V2(v2.RecordProcessorBase, Recorder):  # type: ignore[misc]
    def initialize(self, initialize_input: Any) -> None:
        self.on_initialize(initialize_input.shard_id, initialize_input.sequence_number)

    def process_records(self, process_records_input: Any) -> None:
        self.on_records(process_records_input.records, process_records_input.checkpointer)

    def shutdown(self, shutdown_input: Any) -> None:
        write({"event": "shutdown", "shard": self.shard, "reason": shutdown_input.reason})
        if shutdown_input.reason == "TERMINATE":
            self.checkpoint(shutdown_input.checkpointer, None)


class V3(v3.RecordProcessorBase, Recorder):  # type: ignore[misc]
    def initialize(self, initialize_input: Any) -> None:
        self.on_initialize(initialize_input.shard_id, initialize_input.sequence_number)

    def process_records(self, process_records_input: Any) -> None:
        self.on_records(process_records_input.records, process_records_input.checkpointer)

    def lease_lost(self, lease_lost_input: Any) -> None:
        write({"event": "lease_lost", "shard": self.shard})

    def shard_ended(self, shard_ended_input: Any) -> None:
        write({"event": "shard_ended", "shard": self.shard})
        self.checkpoint(shard_ended_input.checkpointer, None)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        write({"event": "shutdown_requested", "shard": self.shard})
        self.checkpoint(shutdown_requested_input.checkpointer, None)


if __name__ == "__main__":
    print("a user's print on stdout: the daemon skips it")
    kcl.KCLProcess({1: V1, 2: V2, 3: V3}[VERSION]()).run()
