"""The SQS consumer driven with events/ingest_queue_sqs.json against moto's HTTP server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.ingest_queue.app import handler
from model.adapters import aws, dynamodb, touchpoints
from tests.integration.lambda_env import LambdaContext, event

pytestmark = pytest.mark.usefixtures("local_endpoint")


def failed_ids(resp: dict[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in resp["batchItemFailures"]]


def test_poison_message_fails_alone_and_the_rest_is_stored() -> None:
    ev = event("ingest_queue_sqs.json")
    resp = handler(ev, LambdaContext())
    poison = ev["Records"][2]["messageId"]
    assert failed_ids(resp) == [poison]
    assert [t.event_id for t in touchpoints.query_touchpoints("cust-0101")] == ["sqs-20261122-0101"]
    assert len(touchpoints.query_touchpoints("cust-0102")) == 3  # an array message
    assert [t.event_id for t in touchpoints.query_touchpoints("cust-0103")] == ["sqs-20261122-0106"]  # after the poison


def test_redelivery_is_idempotent() -> None:
    ev = event("ingest_queue_sqs.json")
    handler(ev, LambdaContext())
    resp = handler(ev, LambdaContext())
    assert len(resp["batchItemFailures"]) == 1
    assert len(touchpoints.query_touchpoints("cust-0102")) == 3


def test_partly_invalid_array_stores_valid_items_and_fails_the_message() -> None:
    ev = event("ingest_queue_sqs.json")
    record = ev["Records"][1]
    items = json.loads(record["body"])
    items[1]["occurred_at"] = "2026-11-22T07:45:00"  # naive: rejected
    record["body"] = json.dumps(items)
    ev["Records"] = [record]
    assert failed_ids(handler(ev, LambdaContext())) == [record["messageId"]]
    stored = {t.event_id for t in touchpoints.query_touchpoints("cust-0102")}
    assert stored == {"sqs-20261122-0102", "sqs-20261122-0104"}


def test_store_outage_fails_messages_for_redelivery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dynamodb, "_sleep", lambda _s: None)
    ddb = aws.client("dynamodb")
    real = ddb.transact_write_items

    def throttled(**kw: Any) -> Any:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "TransactWriteItems")

    monkeypatch.setattr(ddb, "transact_write_items", throttled)
    ev = event("ingest_queue_sqs.json")
    assert len(handler(ev, LambdaContext())["batchItemFailures"]) == 4  # nothing acknowledged, nothing lost
    monkeypatch.setattr(ddb, "transact_write_items", real)
    assert len(handler(ev, LambdaContext())["batchItemFailures"]) == 1  # the redelivery stores them
    assert len(touchpoints.query_touchpoints("cust-0102")) == 3
