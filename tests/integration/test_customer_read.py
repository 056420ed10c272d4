"""GET /v1/customers/{id} through the ingest Lambda (Mangum), against moto's HTTP server: what is stored about a
customer, paginated, and the clear 4xx answers."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from functions.common.observability import logger, pseudonym
from functions.ingest.app import handler
from model.adapters import decision_log, erasure, profiles, states, touchpoints
from model.domain.schemas import Profile, Touchpoint
from tests.integration.lambda_env import LambdaContext, event, http_event

pytestmark = pytest.mark.usefixtures("local_endpoint")

NOW = datetime.now(UTC).replace(microsecond=0)


def call(ev: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = handler(ev, LambdaContext())
    body = resp["body"]
    if resp.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return resp["statusCode"], json.loads(body) if body else {}


def get(customer_id: str, **query: Any) -> tuple[int, dict[str, Any]]:
    ev = http_event(None, method="GET", path=f"/v1/customers/{customer_id}")
    ev["rawQueryString"] = urlencode(query)
    return call(ev)


def _touchpoints(customer_id: str, n: int) -> list[Touchpoint]:
    """n touchpoints an hour apart, the newest an hour ago: sends, then opens and a click."""
    kinds = ["sent", "opened", "clicked", "sent", "delivered"]
    return [
        Touchpoint(
            event_id=f"{customer_id}-e{i:02d}",
            customer_id=customer_id,
            channel="email" if i % 3 else "push",
            event_type=kinds[i % len(kinds)],
            occurred_at=NOW - timedelta(hours=n - i),
        )
        for i in range(n)
    ]


def _decisions(customer_id: str, n: int) -> list[str]:
    """n imported decisions a day apart, ids in reverse of time order (ids do not sort by time)."""
    rows = [
        {
            "decision_id": f"d-{n - i:02d}",
            "customer_id": customer_id,
            "decided_at": NOW - timedelta(days=n - i),
            "channel": "email",
            "propensity": 0.5,
            "policy": "model",
        }
        for i in range(n)
    ]
    decision_log.import_decisions(rows)
    return [str(r["decision_id"]) for r in reversed(rows)]  # newest first


def _walk(customer_id: str, which: str, limit: int) -> list[str]:
    """Every id of one list, following its cursor page by page."""
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(50):
        query: dict[str, Any] = {"limit": limit}
        if cursor:
            query[f"{which}_cursor"] = cursor
        status, body = get(customer_id, **query)
        assert status == 200, body
        page = body[which]
        assert len(page["items"]) <= limit
        ids += [item["event_id" if which == "touchpoints" else "decision_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("the cursor never ended")


def test_a_customer_with_profile_aggregate_decisions_and_touchpoints() -> None:
    status, _ = call(event("ingest_touchpoints.json"))
    assert status == 207
    profiles.put_profile("cust-0001", Profile(timezone="Europe/Paris", consent={"sms": False}))
    folded = ["esp-20261120-0001", "esp-20261120-0002", "esp-20261120-0003", "esp-20261120-0004"]
    states.fold_touchpoints("cust-0001", folded)  # what the aggregator does; two touchpoints still in flight
    decision_log.import_decisions(
        [{"decision_id": "dec-7f3a91", "customer_id": "cust-0001", "decided_at": "2026-11-20T08:59:00+00:00"}]
    )

    status, body = get("cust-0001")

    assert status == 200, body
    assert body["customer_id"] == "cust-0001"
    assert body["profile"]["timezone"] == "Europe/Paris"
    assert body["profile"]["consent"] == {"sms": False}
    agg = body["aggregate"]
    assert agg["version"] == 1
    assert agg["events_folded"] == 4
    assert agg["first_event_at"] == "2026-11-20T09:00:00Z"
    assert agg["last_event_at"] == "2026-11-20T11:42:03Z"
    assert agg["opted_out_channels"] == []
    (email,) = agg["channels"]
    assert email["channel"] == "email"
    assert email["events"] == {"sent": 1, "delivered": 1, "opened": 1, "clicked": 1}
    assert email["last_event_at"]["clicked"] == "2026-11-20T11:42:03Z"
    assert email["sends_last_7_days"] == 0  # the send is older than a week
    assert email["opted_out"] is False
    touchpoints = body["touchpoints"]["items"]
    assert [t["event_id"] for t in touchpoints] == [
        "shop-20261120-0006",
        "web-20261120-0005",
        "esp-20261120-0004",
        "esp-20261120-0003",
        "esp-20261120-0002",
        "esp-20261120-0001",
    ]  # newest first
    assert {t["event_id"] for t in touchpoints if t["folded"]} == set(folded)
    assert touchpoints[0]["value"] == 89.9
    assert touchpoints[0]["attributes"] == {"order_id": "A-100231", "items": 2}
    assert body["touchpoints"]["next_cursor"] is None
    (decision,) = body["decisions"]["items"]
    assert decision["decision_id"] == "dec-7f3a91"
    assert decision["policy"] == "logging"
    assert decision["propensity"] is None


def test_opted_out_channels_and_recent_sends() -> None:
    call(event("ingest_touchpoints.json"))
    recent = Touchpoint(event_id="sms-now", customer_id="cust-0002", channel="sms", event_type="sent", occurred_at=NOW)
    touchpoints.put_touchpoints([recent])
    states.fold_touchpoints("cust-0002", ["sms-20261121-0007", "sms-20261121-0008", "sms-now"])

    status, body = get("cust-0002")

    assert status == 200, body
    assert body["aggregate"]["opted_out_channels"] == ["sms"]
    (sms,) = body["aggregate"]["channels"]
    assert (sms["opted_out"], sms["sends_last_7_days"], sms["events"]) == (True, 1, {"sent": 2, "unsubscribed": 1})
    assert body["profile"]["consent"] == {"sms": False}  # the unsubscribe closed consent at ingest


def test_touchpoints_and_decisions_paginate_newest_first_without_gaps_or_repeats() -> None:
    tps = _touchpoints("c-pages", 11)
    touchpoints.put_touchpoints(tps)
    expected_decisions = _decisions("c-pages", 7)

    assert _walk("c-pages", "touchpoints", 3) == [tp.event_id for tp in reversed(tps)]
    assert _walk("c-pages", "decisions", 3) == expected_decisions
    assert _walk("c-pages", "touchpoints", 11) == [tp.event_id for tp in reversed(tps)]  # one full page, no empty one
    status, body = get("c-pages", limit=11)
    assert status == 200
    assert body["touchpoints"]["next_cursor"] is None
    assert body["aggregate"] is None  # nothing folded yet: the aggregator has not run
    assert body["profile"] is None


def test_a_cursor_is_a_position_only_it_never_reads_another_customer() -> None:
    touchpoints.put_touchpoints(_touchpoints("c-a", 6) + _touchpoints("c-b", 6))
    _, first = get("c-a", limit=2)
    cursor = first["touchpoints"]["next_cursor"]

    status, body = get("c-b", limit=10, touchpoints_cursor=cursor)

    assert status == 200, body
    ids = [t["event_id"] for t in body["touchpoints"]["items"]]
    assert ids
    assert all(i.startswith("c-b-") for i in ids)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 101}, "query.limit"),
        ({"limit": 0}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"touchpoints_cursor": "not-a-cursor"}, "query.touchpoints_cursor"),
        ({"decisions_cursor": "e30"}, "query.decisions_cursor"),  # base64 of {}
        ({"touchpoints_cursor": "a" * 600}, "query.touchpoints_cursor"),
        ({"touchpoints_cursor": "bad cursor!"}, "query.touchpoints_cursor"),
    ],
)
def test_bad_paging_is_a_clear_422(query: dict[str, Any], field: str) -> None:
    touchpoints.put_touchpoints(_touchpoints("c-q", 2))

    status, body = get("c-q", **query)

    assert status == 422, body
    assert body["status"] == 422
    assert [e["field"] for e in body["errors"]] == [field]


def test_a_cursor_of_the_other_list_is_refused() -> None:
    touchpoints.put_touchpoints(_touchpoints("c-x", 3))
    _decisions("c-x", 3)
    _, body = get("c-x", limit=1)

    status, wrong = get("c-x", touchpoints_cursor=body["decisions"]["next_cursor"])

    assert status == 422
    assert "touchpoints_cursor is not a cursor this API returned" in wrong["detail"]


def test_unknown_and_erased_customers_are_404() -> None:
    status, body = get("nobody-here")
    assert status == 404
    assert body["detail"] == "nothing is stored for this customer (unknown, or erased)"

    touchpoints.put_touchpoints(_touchpoints("c-gone", 3))
    assert get("c-gone")[0] == 200
    erasure.erase_customer("c-gone")
    assert get("c-gone")[0] == 404


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """What the shared powertools logger writes, formatted as in production."""
    out = io.StringIO()
    stream = logging.StreamHandler(out)
    stream.setFormatter(logger.registered_formatter)
    std = logging.getLogger(logger.name)
    std.addHandler(stream)
    yield out
    std.removeHandler(stream)


def test_the_customer_id_never_appears_in_clear_in_logs(log_output: io.StringIO) -> None:
    touchpoints.put_touchpoints(_touchpoints("c-secret-4711", 2))

    assert get("c-secret-4711")[0] == 200
    assert get("c-secret-4711", limit=500)[0] == 422

    text = log_output.getvalue()
    assert "customer read" in text
    assert pseudonym("c-secret-4711") in text
    assert "c-secret-4711" not in text
