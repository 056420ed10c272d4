"""The HTTP ingest Lambda driven with the events/ files through Mangum, against moto's HTTP server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.common.http import MAX_BODY_BYTES, PROBLEM
from functions.ingest.app import handler
from model.adapters import aws, dynamodb, profiles, touchpoints
from model.domain.settings import get_settings
from tests.integration.lambda_env import LambdaContext, event, http_event

pytestmark = pytest.mark.usefixtures("local_endpoint")


def call(ev: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    resp = handler(ev, LambdaContext())
    body = resp["body"]
    if resp.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return resp["statusCode"], resp["headers"], json.loads(body) if body else {}


def test_touchpoints_event_reports_each_item() -> None:
    status, _, body = call(event("ingest_touchpoints.json"))
    assert status == 207
    assert (body["received"], body["stored"], body["duplicates"], body["rejected"]) == (11, 10, 0, 1)
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["stored"] * 10 + ["rejected"]
    bad = body["results"][10]
    assert bad["event_id"] == "bad-20261122-0011"
    assert {e["field"] for e in bad["errors"]} == {"channel", "occurred_at"}
    assert any("timezone offset" in e["reason"] for e in bad["errors"])
    stored = [t.event_id for t in touchpoints.query_touchpoints("cust-0001")]
    assert stored[:2] == ["esp-20261120-0001", "esp-20261120-0002"]

    status, _, again = call(event("ingest_touchpoints.json"))
    assert status == 207
    assert (again["stored"], again["duplicates"]) == (0, 10)


def test_unsubscribe_closes_the_channel_at_once() -> None:
    call(event("ingest_touchpoints.json"))
    profile = profiles.get_profile("cust-0002")
    assert profile is not None
    assert profile.consent["sms"] is False


def test_all_valid_is_200() -> None:
    items = json.loads(event("ingest_touchpoints.json")["body"])["touchpoints"][:3]
    status, _, body = call(http_event(json.dumps(items)))  # a bare array is accepted too
    assert status == 200
    assert body["stored"] == 3


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ('{"touchpoints": [', 400, "not valid JSON"),
        ("[]", 422, "1 to 500"),
        ('{"touchpoints": {}}', 422, "JSON array"),
        ('"hello"', 422, "JSON array"),
        ("[1, null, []]", 422, "every touchpoint"),
    ],
)
def test_client_errors_are_problem_json(body: str, status: int, needle: str) -> None:
    code, headers, problem = call(http_event(body))
    assert code == status
    assert headers["content-type"] == PROBLEM
    assert needle in problem["detail"]
    assert problem["status"] == status


def test_all_rejected_names_item_and_field() -> None:
    items = [{"event_id": "x", "customer_id": "c", "channel": "email", "event_type": "sent"}, 5]
    code, _, problem = call(http_event(json.dumps(items)))
    assert code == 422
    assert {"field": "0.occurred_at", "reason": "Field required"} in problem["errors"]
    assert any(e["field"] == "1.(item)" for e in problem["errors"])


def test_over_500_items_is_422() -> None:
    item = json.loads(event("ingest_touchpoints.json")["body"])["touchpoints"][0]
    code, _, problem = call(http_event(json.dumps([item] * 501)))
    assert code == 422
    assert "501" in problem["detail"]


def test_oversized_body_is_413() -> None:
    code, headers, problem = call(http_event("[" + " " * MAX_BODY_BYTES + "]"))
    assert code == 413
    assert headers["content-type"] == PROBLEM
    assert str(MAX_BODY_BYTES) in problem["detail"]


def throttled(**kw: Any) -> Any:
    raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "TransactWriteItems")


def test_store_outage_is_503_not_500(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dynamodb, "_sleep", lambda _s: None)
    ddb = aws.client("dynamodb")
    monkeypatch.setattr(ddb, "transact_write_items", throttled)
    code, _, problem = call(event("ingest_touchpoints.json"))
    assert code == 503
    assert "retry" in problem["detail"]


def test_profile_put_get_and_erase() -> None:
    code, _, put = call(event("ingest_profile_put.json"))
    assert code == 200
    assert put["timezone"] == "Europe/Paris"

    get = http_event(None, method="GET", path="/v1/customers/cust-0001/profile")
    code, _, body = call(get)
    assert code == 200
    assert body == put

    call(event("ingest_touchpoints.json"))
    code, _, erased = call(event("ingest_customer_delete.json"))
    assert code == 200
    assert erased == {"customer_id": "cust-0001", "deleted_items": 7}  # 6 touchpoints + the profile
    assert touchpoints.query_touchpoints("cust-0001") == []
    assert call(get)[0] == 404
    assert touchpoints.query_touchpoints("cust-0002") != []  # other customers untouched


def test_profile_validation_errors_are_422() -> None:
    ev = event("ingest_profile_put.json")
    ev["body"] = json.dumps({"timezone": "Mars/Olympus", "consent": {"fax": True}})
    code, headers, problem = call(ev)
    assert code == 422
    assert headers["content-type"] == PROBLEM
    fields = {e["field"] for e in problem["errors"]}
    assert {"body.timezone", "body.consent"} <= fields


def test_bad_customer_id_in_path_is_422() -> None:
    code, _, problem = call(http_event(None, method="GET", path="/v1/customers/bad%20id/profile"))
    assert code == 422
    assert problem["errors"][0]["field"] == "path.customer_id"


def test_table_name_comes_from_settings() -> None:
    call(event("ingest_profile_put.json"))
    names = aws.client("dynamodb").list_tables()["TableNames"]
    assert get_settings().table_name in names
