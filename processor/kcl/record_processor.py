"""Our routes inside the stock KCL: an amazon_kclpy record processor (v3 interface).

Teams who keep the Java MultiLangDaemon (KCL 3's lease balancing, enhanced fan-out) point its
``executableName`` at ``python -m processor.kcl --config dsp.toml``. The daemon hands each
shard's records of a table's Kinesis Data Streams destination to this processor; they decode
to the same records ``dsp run`` sees, go through the configured routes (filters, retries,
dead letters), and the batch is checkpointed once it is handled: delivered, filtered or
dead-lettered. A batch the routes could not finish (a stop mid-retry) is not checkpointed, so
the KCL delivers it again.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

import structlog
from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor as kclpy

from processor.app.pipeline import Pipeline
from processor.app.routes import (
    refuse_windows,
)
from processor.aws import clients_for
from processor.core.consumer import StreamInfo
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.errors import RecordError
from processor.ops.logs import configure_logging
from processor.settings import Settings, load_settings
from processor.sources.kinesis.wire import from_kinesis

__all__ = ["RoutesRecordProcessor", "main"]

log = structlog.get_logger()


class RoutesRecordProcessor(kclpy.RecordProcessorBase):  # type: ignore[misc]
    """One shard's records through our routes; checkpoint after each handled batch."""

    def __init__(self, settings: Settings, *, dispatcher: Dispatcher | None = None) -> None:
        self._settings = settings
        self._dispatcher = dispatcher
        self._stop = threading.Event()
        self.shard_id: str | None = None
        self._last_handled: str | None = None

    def _routes(self) -> Dispatcher:
        if self._dispatcher is None:
            settings = self._settings
            refuse_windows(settings, "the Java KCL's record processor", "use dsp run")
            clients = clients_for(settings.aws, pool_size=10 + settings.batch.parallelism)
            config = settings.only_stream  # one KCL application reads one stream
            stream = StreamInfo(
                config.kinesis_stream or "", config.table or "", "NEW_AND_OLD_IMAGES", ()
            )
            pipeline = Pipeline.from_settings(
                settings, clients=clients, stream=stream, stop=self._stop
            )
            self._dispatcher = pipeline.dispatcher(self._stop)
        return self._dispatcher

    def initialize(self, initialize_input: Any) -> None:
        self.shard_id = initialize_input.shard_id
        structlog.contextvars.bind_contextvars(shard_id=self.shard_id)
        self._routes()
        log.info("kcl_shard_initialized", position=initialize_input.sequence_number)

    def process_records(self, process_records_input: Any) -> None:
        dispatcher = self._routes()
        records: list[StreamRecord] = []
        malformed: list[tuple[object, Exception]] = []
        for entry in process_records_input.records:
            try:
                records.append(
                    from_kinesis(entry.binary_data, entry.sequence_number, shard_id=self.shard_id)
                )
            except RecordError as exc:
                malformed.append(
                    ({"sequenceNumber": entry.sequence_number, "data": entry.data}, exc)
                )
        dispatcher.reject_malformed(malformed, self.shard_id)
        unhandled = dispatcher.dispatch(records)
        if unhandled:  # stopping mid-retry: the KCL hands these records over again
            log.warning("kcl_batch_not_checkpointed", unhandled=len(unhandled))
            return
        entries = process_records_input.records
        if entries:
            self._last_handled = entries[-1].sequence_number
            process_records_input.checkpointer.checkpoint(self._last_handled)

    def lease_lost(self, lease_lost_input: Any) -> None:
        self._stop.set()  # another worker owns the shard: checkpoint nothing more
        log.info("kcl_lease_lost")

    def shard_ended(self, shard_ended_input: Any) -> None:
        shard_ended_input.checkpointer.checkpoint()  # SHARD_END: the children may start

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        self._stop.set()
        if self._last_handled is not None:
            shutdown_requested_input.checkpointer.checkpoint(self._last_handled)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m processor.kcl",
        description="an amazon_kclpy record processor running dsp's routes (executableName)",
    )
    parser.add_argument("--config", default=os.environ.get("DSP_CONFIG"))
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    # stdout is the MultiLang protocol's channel: logs go to stderr, as JSON
    configure_logging(settings.logging.level, "json")
    kcl.KCLProcess(RoutesRecordProcessor(settings)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
