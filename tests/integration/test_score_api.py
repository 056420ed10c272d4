"""The scoring Lambda driven with the events/ files through Mangum against moto's HTTP server; bad input
and model failures never give a 500 (hypothesis on raw bodies, schemathesis on the published schema)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.common.http import PROBLEM
from functions.score.app import app, handler
from model.adapters import aws, profiles, states
from model.adapters.model_service import get_predictor
from model.adapters.registry import ModelStore
from model.adapters.table import customer_pk
from model.domain.aggregate import EVENT_INDEX, FoldEvent
from model.domain.catalogue import catalogue
from model.domain.schemas import Profile
from model.domain.settings import get_settings
from tests.integration.lambda_env import LambdaContext, event

pytestmark = pytest.mark.usefixtures("local_endpoint")
NOW = datetime(2026, 11, 23, 8, 12, 45, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _deterministic_policy(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("NBC_EXPLORATION_RATE", "0")
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0")
    monkeypatch.setenv("NBC_MODEL_REFRESH_SECONDS", "0")
    get_settings.cache_clear()
    get_predictor.cache_clear()
    yield
    get_predictor.cache_clear()


@pytest.fixture(scope="module")
def booster() -> Any:
    pytest.importorskip("lightgbm")
    from tests.scoring_helpers import layout, train

    return train(layout(), trees=30, leaves=15, seed=9)


def compiled_model(booster: Any, version: str = "v1") -> ModelStore:
    from tests.scoring_helpers import publish
    from training.compile import compile_version

    ms = ModelStore.from_uri(get_settings().model_store)
    publish(ms, booster, version)
    compile_version(ms, version)
    ms.set_current(version)
    return ms


def call(ev: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
    resp = handler(ev, LambdaContext())
    body = resp["body"]
    if resp.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return resp["statusCode"], resp["headers"], json.loads(body) if body else {}


def post(path: str, body: Any) -> tuple[int, dict[str, Any], Any]:
    ev = event("score_recommendation.json")
    ev["rawPath"] = ev["requestContext"]["http"]["path"] = path
    ev["routeKey"] = ev["requestContext"]["routeKey"] = f"POST {path}"
    ev["body"] = body if isinstance(body, str) else json.dumps(body)
    ev["headers"]["content-length"] = str(len(ev["body"]))
    return call(ev)


def seed_customer(customer_id: str = "cust-0001") -> None:
    profiles.put_profile(
        customer_id,
        Profile(timezone="Europe/Paris", consent={"email": True, "sms": True}, attributes={"segment": "vip"}),
    )
    cat = catalogue()
    start = NOW - timedelta(days=10)
    events = [
        FoldEvent(f"e{i}", cat.code("email"), EVENT_INDEX[t], (start + timedelta(hours=i)).timestamp(), 0.0)
        for i, t in enumerate(["sent", "opened", "clicked", "sent", "opened", "converted"])
    ]
    states.apply_to_aggregate(customer_id, events)


def stored_decision(customer_id: str, decision_id: str) -> dict[str, Any]:
    item = aws.client("dynamodb").get_item(
        TableName=get_settings().table_name,
        Key={"PK": {"S": customer_pk(customer_id)}, "SK": {"S": f"DEC#{decision_id}"}},
    )
    return dict(item.get("Item", {}))


def test_recommendation_event_with_compiled_model_is_logged(booster: Any) -> None:
    compiled_model(booster)
    seed_customer()
    status, _, body = call(event("score_recommendation.json"))
    assert status == 200, body
    assert body["policy"] == "model"
    assert body["model_version"] == "v1"
    recs = body["recommendations"]
    assert 1 <= len(recs) <= 3
    for rec in recs:
        assert rec["channel"] in {"email", "sms", "push"}
        assert rec["send_at_local"].endswith(("+01:00", "+02:00"))
        local_hour = datetime.fromisoformat(rec["send_at_local"]).hour
        assert 8 <= local_hour < 21  # default quiet hours 21:00-08:00 in Paris
        assert rec["reasons"]
    assert any(e["label"] == "quiet_hours: 21:00-08:00" for e in body["rule_trace"]["excluded"])
    item = stored_decision("cust-0001", body["decision_id"])
    assert item["policy"]["S"] == "model"
    assert float(item["propensity"]["N"]) == pytest.approx(body["propensity"])
    assert item["channel"]["S"] == recs[0]["channel"]
    assert int(item["expires_at"]["N"]) > NOW.timestamp()


def test_batch_event_logs_every_decision(booster: Any) -> None:
    compiled_model(booster)
    seed_customer()
    status, _, body = call(event("score_batch.json"))
    assert status == 200, body
    results = body["results"]
    assert [r["customer_id"] for r in results] == ["cust-0001", "cust-0002", "cust-new-9999"]
    assert (results[2]["policy"], results[2]["cold_start"]) == ("model", True)  # unknown customer: not an error
    assert results[0]["cold_start"] is False
    assert {r["channel"] for r in results[1]["recommendations"]} <= {"email", "push", "none"}
    for r in results:
        assert stored_decision(r["customer_id"], r["decision_id"])["decision_id"]["S"] == r["decision_id"]


def test_model_event_and_health(booster: Any) -> None:
    status, _, body = call(event("score_model.json"))
    assert status == 200
    assert body["kind"] == "heuristic"
    assert body["model_version"] is None
    assert "no CURRENT" in body["last_error"]
    compiled_model(booster)
    status, _, body = call(event("score_model.json"))
    assert (status, body["kind"], body["model_version"]) == (200, "compiled", "v1")
    assert body["features"][0] == "sent_total"


def test_missing_model_falls_back_never_500() -> None:
    status, _, body = call(event("score_recommendation.json"))
    assert status == 200
    assert body["policy"] == "fallback"
    assert body["model_version"] is None


def test_corrupt_model_keeps_last_good_then_heuristic(booster: Any) -> None:
    ms = compiled_model(booster, "v1")
    assert post("/v1/recommendations", {"customer_id": "c1", "now": NOW.isoformat()})[2]["model_version"] == "v1"
    # A new CURRENT whose compiled file is garbage: the last good model stays in service.
    from tests.scoring_helpers import layout, manifest_for

    ms.publish("v2", {"model.npz": b"garbage"}, manifest_for(layout(), "v2", {"compiled": "model.npz"}))
    ms.set_current("v2")
    status, _, body = post("/v1/recommendations", {"customer_id": "c1", "now": NOW.isoformat()})
    assert (status, body["model_version"]) == (200, "v1")
    info = call(event("score_model.json"))[2]
    assert info["model_version"] == "v1"
    assert "v2" in info["last_error"]
    # A fresh container (cold start) with only the corrupt CURRENT: heuristic, flagged fallback.
    get_predictor.cache_clear()
    status, _, body = post("/v1/recommendations", {"customer_id": "c1", "now": NOW.isoformat()})
    assert (status, body["policy"], body["model_version"]) == (200, "fallback", None)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"customer_id": "c1", "channels": ["carrier_pigeon"]}, 422, "unknown channel 'carrier_pigeon'"),
        ({"customer_id": "c1", "channels": []}, 422, "at least 1"),
        ({"customer_id": "c1", "horizon_hours": 0}, 422, "greater than or equal to 1"),
        ({"customer_id": "c1", "horizon_hours": 169}, 422, "less than or equal to 168"),
        ({"customer_id": "c1", "k": 21}, 422, "less than or equal to 20"),
        ({"customer_id": "c1", "now": "2026-11-23T08:00:00"}, 422, "timezone"),
        ({"customer_id": "c1", "channels": ["email"], "messages": {"sms": ["m"]}}, 422, "not requested: sms"),
        ({"customer_id": "c1", "messages": {"email": []}}, 422, "at least 1"),
        ({"customer_id": ""}, 422, "at least 1"),
        ("{not json", 400, "not valid JSON"),
    ],
)
def test_bad_requests_are_4xx_problems(body: Any, status: int, needle: str) -> None:
    got, headers, problem = post("/v1/recommendations", body)
    assert got == status
    assert headers["content-type"].startswith(PROBLEM)
    assert needle in json.dumps(problem)


def test_oversized_batch_is_a_4xx_problem() -> None:
    body = {"requests": [{"customer_id": f"c{i}"} for i in range(1001)]}
    status, headers, problem = post("/v1/recommendations:batch", body)
    assert status == 422
    assert headers["content-type"].startswith(PROBLEM)
    assert "at most 1000" in json.dumps(problem)
    assert post("/v1/recommendations:batch", {"requests": []})[0] == 422


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "customer_id": st.text(max_size=20) | JSON,
        "channels": st.lists(st.sampled_from([*get_settings().channels, "fax", ""]), max_size=10) | JSON,
        "messages": st.dictionaries(st.sampled_from(["email", "sms", "fax"]), st.lists(st.text(max_size=8))) | JSON,
        "horizon_hours": st.integers(-5, 200) | JSON,
        "k": st.integers(-2, 30) | JSON,
        "now": st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()) | st.text(max_size=30) | JSON,
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=FIELDS | JSON | st.binary(max_size=50).map(lambda b: b.decode("latin-1")))
def test_any_body_never_5xx(body: Any) -> None:
    for path in ("/v1/recommendations", "/v1/recommendations:batch"):
        payload = body if isinstance(body, str) else json.dumps(body)
        if path.endswith("batch") and isinstance(body, dict):
            payload = json.dumps({"requests": [body]})
        status, _, _ = post(path, payload)
        assert status < 500, (path, payload)


schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, (case.path, case.body, response.text)


def test_store_failure_is_503_not_500() -> None:
    aws.client("dynamodb").delete_table(TableName=get_settings().table_name)
    status, headers, body = call(event("score_recommendation.json"))
    assert status == 503
    assert headers["content-type"].startswith(PROBLEM)
    assert "retry" in body["detail"]
