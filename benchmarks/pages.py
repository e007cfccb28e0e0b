"""Recorded GetRecords pages: 1,000 records, 10 attributes, both images (deterministic)."""

from __future__ import annotations

import base64
import json
import random
from typing import Any


def _image(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"TENANT#{i % 7}"},
        "sk": {"S": f"ORDER#{i:06d}"},
        "status": {"S": rng.choice(["new", "paid", "shipped"])},
        "total": {"N": f"{rng.randint(1, 10**6)}.{rng.randint(0, 99):02d}"},
        "count": {"N": str(rng.randint(1, 50))},
        "customer": {"M": {"name": {"S": "Ada Lovelace"}, "email": {"S": f"u{i}@example.com"}}},
        "tags": {"SS": ["a", "b", f"t{i % 13}"]},
        "lines": {"L": [{"M": {"sku": {"S": f"sku-{j}"}, "qty": {"N": str(j)}}} for j in range(3)]},
        "paid": {"BOOL": rng.random() < 0.5},
        "blob": {"B": base64.b64encode(rng.randbytes(16)).decode()},
    }


def page(seed: int = 1, size: int = 1000) -> bytes:
    """The raw HTTP body of one GetRecords answer."""
    rng = random.Random(seed)
    records = []
    for i in range(size):
        new, old = _image(rng, i), _image(rng, i)
        records.append(
            {
                "eventID": f"{seed:04d}{i:028d}",
                "eventName": "MODIFY",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1_700_000_000 + i,
                    "Keys": {"pk": new["pk"], "sk": new["sk"]},
                    "NewImage": new,
                    "OldImage": old,
                    "SequenceNumber": f"{100000000000000000000 + seed * 10_000 + i}",
                    "SizeBytes": 600,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
            }
        )
    body = {"Records": records, "NextShardIterator": "arn:aws:dynamodb:...|1|AAAA"}
    return json.dumps(body).encode()
