"""The audience Lambda (one Distributed Map batch) driven with events/audience_batch.json against moto's HTTP
server: decisions written to S3 and logged once per customer, also when the batch is retried."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from functions.audience.app import handler
from model.adapters import aws
from model.adapters.table import PK, SK, customer_pk
from model.domain.settings import get_settings
from tests.integration.lambda_env import LambdaContext, event

pytestmark = pytest.mark.usefixtures("local_endpoint")
BUCKET = "nbc-models-example"
CONTEXT = LambdaContext(function_name="nbc-audience")


def _objects(prefix: str) -> dict[str, bytes]:
    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def _logged(customer_id: str) -> list[dict[str, Any]]:
    return list(
        aws.client("dynamodb").query(
            TableName=get_settings().table_name,
            KeyConditionExpression=f"{PK} = :pk AND begins_with({SK}, :sk)",
            ExpressionAttributeValues={":pk": {"S": customer_pk(customer_id)}, ":sk": {"S": "DEC#"}},
        )["Items"]
    )


def test_batch_decides_writes_and_is_idempotent_on_retry() -> None:
    aws.client("s3").create_bucket(Bucket=BUCKET)
    ev = event("audience_batch.json")
    first = handler(ev, CONTEXT)
    assert first == {"decided": 2, "duplicates": 1, "rejected": 1}
    objects = _objects("decisions/spring-campaign/")
    (part,) = [v for k, v in objects.items() if "/part-" in k]
    rows = [json.loads(line) for line in part.decode().splitlines()]
    assert sorted(r["customer_id"] for r in rows) == ["c-1001", "c-1002"]
    assert all(r["channel"] in {"email", "push", "none"} for r in rows)
    (rejected,) = [v for k, v in objects.items() if "/rejected-" in k]
    assert json.loads(rejected)["customer_id"] == "not a valid id"
    # Step Functions retries a failed batch: the same part, the same decision ids, one logged decision each.
    assert handler(ev, CONTEXT) == first
    assert len(_objects("decisions/spring-campaign/")) == 2
    for row in rows:
        (logged,) = _logged(row["customer_id"])
        assert logged["decision_id"]["S"] == row["decision_id"]


def test_malformed_batch_fails_with_the_reason() -> None:
    ev = event("audience_batch.json")
    ev["BatchInput"]["out"] = "/tmp/not-s3"
    with pytest.raises(ValidationError, match="out"):
        handler(ev, CONTEXT)
