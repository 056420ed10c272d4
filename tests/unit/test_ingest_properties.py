"""Any payload POSTed to /v1/touchpoints, however broken, gets a 2xx or a 4xx that names the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.ingest.app import app

pytestmark = pytest.mark.usefixtures("mocked_aws")

GOOD = {
    "event_id": "e-1",
    "customer_id": "c-1",
    "channel": "email",
    "event_type": "opened",
    "occurred_at": "2026-11-20T10:00:00+01:00",
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
# touchpoint-shaped items with some fields replaced by anything, some dropped, some added
items = (
    st.builds(
        lambda drop, replace, extra: {
            **{k: v for k, v in GOOD.items() if k not in drop},
            **replace,
            **extra,
        },
        st.sets(st.sampled_from(sorted(GOOD))),
        st.dictionaries(st.sampled_from([*GOOD, "value", "attributes", "campaign_id"]), json_values, max_size=3),
        st.dictionaries(st.text(max_size=8), json_values, max_size=2),
    )
    | json_values
)
bodies = (
    st.lists(items, min_size=0, max_size=8).map(json.dumps)
    | st.lists(items, min_size=1, max_size=5).map(lambda xs: json.dumps({"touchpoints": xs}))
    | json_values.map(json.dumps)
    | st.text(max_size=60)
)

client = TestClient(app, raise_server_exceptions=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_any_payload_is_2xx_or_4xx_and_names_fields(body: str) -> None:
    resp = client.post("/v1/touchpoints", content=body.encode(), headers={"content-type": "application/json"})
    assert resp.status_code < 500, resp.text
    data: dict[str, Any] = resp.json()
    if resp.status_code in (200, 207):
        for result in data["results"]:
            if result["status"] == "rejected":
                assert result["errors"]
                assert all(e["field"] and e["reason"] for e in result["errors"])
        assert (resp.status_code == 207) == (data["rejected"] > 0)
    else:
        assert resp.headers["content-type"] == "application/problem+json"
        assert data["status"] == resp.status_code
        assert data["detail"]
        if resp.status_code == 422:
            assert data["errors"]
            assert all(e["field"] for e in data["errors"])


def test_a_valid_item_among_broken_ones_is_stored() -> None:
    body = json.dumps([GOOD, {**GOOD, "event_id": "e-2", "channel": 7}, "junk"])
    resp = client.post("/v1/touchpoints", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 207
    data = resp.json()
    assert [r["status"] for r in data["results"]] == ["stored", "rejected", "rejected"]
    assert data["results"][1]["errors"][0]["field"] == "channel"
    assert data["results"][2]["errors"][0]["field"] == "(item)"


def test_openapi_documents_the_request_body() -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/touchpoints"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    array = body["oneOf"][0]
    assert array["maxItems"] == 500
    assert array["items"]["properties"]["event_type"]["enum"][0] == "sent"
    assert "$ref" not in json.dumps(array)


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_non_finite_numbers_are_rejected_per_item(literal: str) -> None:
    good = json.dumps({**GOOD, "event_id": "ok"})
    for field in ('"value": ', '"attributes": {"x": '):
        item = json.dumps(GOOD)[:-1] + ", " + field + literal + ("}" if "attributes" in field else "") + "}"
        resp = client.post("/v1/touchpoints", content=f"[{good}, {item}]", headers={"content-type": "application/json"})
        assert resp.status_code == 207, resp.text
        assert resp.json()["results"][1]["status"] == "rejected"
