"""THE parity test: online aggregate (HTTP ingest -> real stream records -> aggregator) == offline replay.

Touchpoints go through the HTTP handler into moto's server; the table's stream records are read back with
boto3 dynamodbstreams (get_shard_iterator/get_records) and fed to the aggregator handler in shuffled
batches, with duplicated deliveries, out of order within a window (as Lambda may redeliver after retries
and as producers send late). The stored aggregate must equal `replay()` of the same events sorted in time.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.aggregator.app import handler as aggregator
from functions.ingest.app import handler as ingest
from model.adapters import aws, states
from model.domain.aggregate import DAY, fold_event, replay
from model.domain.schemas import EVENT_TYPES, Touchpoint
from model.domain.settings import get_settings
from tests.integration.lambda_env import LambdaContext, http_event

pytestmark = pytest.mark.usefixtures("local_endpoint")

START = datetime(2026, 11, 1, tzinfo=UTC)
CHANNELS = ("email", "sms", "push", "web")
LATENESS = 2 * DAY  # events arrive at most this late relative to newer ones (within the fold's window)


def synthetic(rng: random.Random, n: int, customers: int) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        at = START + timedelta(seconds=rng.uniform(0, 12 * DAY))
        etype = rng.choice(EVENT_TYPES)
        items.append(
            {
                "event_id": f"p-{i:05d}",
                "customer_id": f"cust-{rng.randrange(customers)}",
                "channel": rng.choice(CHANNELS),
                "event_type": etype,
                "occurred_at": at.isoformat(),
                "value": round(rng.uniform(5, 200), 2) if etype == "converted" else 0,
            }
        )
    return items


def stream_records() -> list[dict[str, Any]]:
    """Every record of the table's stream, shaped as Lambda delivers them."""
    ddb, streams = aws.client("dynamodb"), aws.client("dynamodbstreams")
    arn = ddb.describe_table(TableName=get_settings().table_name)["Table"]["LatestStreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        iterator = it["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not page["Records"]:
                break
            for rec in page["Records"]:
                created = rec["dynamodb"]["ApproximateCreationDateTime"]
                rec["dynamodb"]["ApproximateCreationDateTime"] = int(created.timestamp())
                records.append({**rec, "eventSourceARN": arn})
            iterator = page.get("NextShardIterator")
    return records


def arrival_order(rng: random.Random, records: list[dict[str, Any]], by_id: dict[str, Touchpoint]) -> list[Any]:
    """Shuffled within LATENESS of event time, with ~30% of records delivered twice."""
    deliveries = []
    for rec in records:
        sk = rec["dynamodb"]["Keys"]["SK"]["S"]
        tp = by_id.get(sk.removeprefix("TP#"))
        base = tp.occurred_at.timestamp() if tp else 0.0
        copies = 2 if rng.random() < 0.3 else 1
        deliveries += [(base + rng.uniform(0, LATENESS), rng.random(), rec) for _ in range(copies)]
    deliveries.sort(key=lambda d: (d[0], d[1]))
    return [d[2] for d in deliveries]


def test_online_aggregate_equals_offline_replay() -> None:
    rng = random.Random(20261123)
    items = synthetic(rng, 300, customers=5)
    for start in range(0, len(items), 150):
        resp = ingest(http_event(json.dumps({"touchpoints": items[start : start + 150]})), LambdaContext())
        assert resp["statusCode"] == 200, resp["body"]
    # a producer retrying a batch: duplicates at ingest are not written again
    resp = ingest(http_event(json.dumps(items[:50])), LambdaContext())
    assert json.loads(resp["body"])["duplicates"] == 50

    records = stream_records()
    tps = [Touchpoint.model_validate(i) for i in items]
    by_id = {tp.event_id: tp for tp in tps}
    inserts = [r for r in records if r["eventName"] == "INSERT" and r["dynamodb"]["Keys"]["SK"]["S"].startswith("TP#")]
    assert len(inserts) == len(items)  # every accepted touchpoint reached the stream exactly once

    deliveries = arrival_order(rng, records, by_id)
    assert deliveries != sorted(deliveries, key=lambda r: r["dynamodb"]["SequenceNumber"])
    i = 0
    while i < len(deliveries):
        size = rng.randint(1, 60)
        out = aggregator({"Records": deliveries[i : i + size]}, LambdaContext())
        assert out == {"batchItemFailures": []}
        i += size

    for customer in sorted({tp.customer_id for tp in tps}):
        offline = replay(sorted((fold_event(tp) for tp in tps if tp.customer_id == customer), key=lambda e: e.ts))
        online, _ = states.get_state(customer)
        assert online is not None
        assert online == offline, customer
        assert online.n_events == sum(1 for tp in tps if tp.customer_id == customer)
