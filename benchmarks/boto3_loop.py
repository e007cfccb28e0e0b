"""The plain boto3 loop users write (benchmarks/whole_process.py's baseline), and the two
consumers `dsp run` gets for the same work.

``python -m benchmarks.boto3_loop ENDPOINT TABLE_OR_STREAM_ARN [--images]``: every shard of
the stream (the table's latest, or the ARN given) from the trim horizon, ``get_records``
pages of 1,000 until a page comes back empty, each record's keys (or every attribute of its
``NewImage``) through ``TypeDeserializer``."""

from __future__ import annotations

import sys
from typing import Any

from processor.core.records import StreamRecord

_seen = [0]


def read_keys(records: list[StreamRecord]) -> None:
    """`dsp run`'s consumer for the keys row: every record's keys, decoded."""
    for record in records:
        _seen[0] += len(record.keys)


def read_new_image(records: list[StreamRecord]) -> None:
    """`dsp run`'s consumer for the images row: every attribute of ``NewImage``, decoded."""
    for record in records:
        _seen[0] += len(record.new_image or {})


def main(argv: list[str]) -> int:
    import boto3  # noqa: PLC0415
    from boto3.dynamodb.types import TypeDeserializer  # noqa: PLC0415

    endpoint, arn = argv[0], argv[1]
    images = "--images" in argv
    streams: Any = boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name="us-east-1")
    deserialize = TypeDeserializer().deserialize
    if not arn.startswith("arn:"):
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        arn = ddb.describe_table(TableName=arn)["Table"]["LatestStreamArn"]
    shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    seen = 0
    for shard in shards:
        iterator: Any = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not page["Records"]:
                break
            for record in page["Records"]:
                change = record["dynamodb"]
                if images:
                    new = {k: deserialize(v) for k, v in change.get("NewImage", {}).items()}
                    seen += len(new)
                else:
                    keys = {k: deserialize(v) for k, v in change["Keys"].items()}
                    seen += len(keys)
            iterator = page.get("NextShardIterator")
    print(seen)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
