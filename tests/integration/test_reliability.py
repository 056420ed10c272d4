"""Reliability and privacy of the HTTP API (issue 13): store trouble is a 503 with Retry-After on every route (D4),
fast (a frozen store answers within 3 s) and within a total deadline; blocking calls never hold the event loop
(D9); the batch endpoint serves 1,000 customers in time; local auth mirrors the cloud (D11); pseudonyms are keyed
and ids never reach the logs (D12); the SQS consumer takes the HTTP wrapper and fails only what is invalid."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from functions.common import http as common_http
from functions.common.observability import forget_lambda_context, logger, pseudonym, reset_pseudonym_key
from model.adapters import aws, dynamodb, profiles, states, touchpoints
from model.adapters.model_service import get_predictor
from model.domain.schemas import Profile
from model.domain.settings import get_settings
from nbc.local.aws import LOCAL_READ_TIMEOUT, free_port
from nbc.local.events import LambdaContext, event
from nbc.server import build_app, running

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER = "cust-omega-4711"  # cannot occur by chance in log output
NOW = "2026-11-23T08:12:45+00:00"
TOUCHPOINT = {
    "event_id": "e-rel-1",
    "customer_id": CUSTOMER,
    "channel": "email",
    "event_type": "sent",
    "occurred_at": "2026-11-20T09:00:00Z",
}
PROFILE = {"timezone": "Europe/Paris", "consent": {"email": True}, "attributes": {"segment": "vip"}}
# Every route that reads or writes the store: (method, path, json body).
STORE_ROUTES = [
    ("POST", "/v1/touchpoints", [TOUCHPOINT]),
    ("PUT", f"/v1/customers/{CUSTOMER}/profile", PROFILE),
    ("GET", f"/v1/customers/{CUSTOMER}/profile", None),
    ("DELETE", f"/v1/customers/{CUSTOMER}", None),
    ("POST", "/v1/recommendations", {"customer_id": CUSTOMER, "now": NOW}),
    ("POST", "/v1/recommendations:batch", {"requests": [{"customer_id": f"c-{i}", "now": NOW} for i in range(120)]}),
]
ROUTE_IDS = [f"{m} {p.replace(CUSTOMER, '{id}')}" for m, p, _ in STORE_ROUTES]


@pytest.fixture(autouse=True)
def _quiet_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NBC_EXPLORATION_RATE", "0")
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0")
    get_settings.cache_clear()
    get_predictor.cache_clear()
    yield
    get_predictor.cache_clear()


@pytest.fixture
def app() -> FastAPI:
    return build_app()


def request(client: TestClient | httpx.Client, method: str, path: str, body: Any, **kw: Any) -> httpx.Response:
    return client.request(method, path, json=body, **kw) if body is not None else client.request(method, path, **kw)


def point_store_at(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.setenv("NBC_AWS_ENDPOINT_URL", endpoint)
    monkeypatch.delenv("NBC_AWS_READ_TIMEOUT", raising=False)  # the cloud's budget: connect 1 s, read 2 s
    get_settings.cache_clear()
    aws.reset_clients()
    aws.client("dynamodb")  # a warm process: the client exists (creating one is not the store's answer time)


@pytest.fixture
def frozen_endpoint() -> Iterator[str]:
    """A 'store' on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    server.close()


def assert_unavailable(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert int(resp.headers["retry-after"]) >= 1
    assert resp.json()["status"] == 503


# --- D4: one mapping of store failures to 503 + Retry-After -------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), STORE_ROUTES, ids=ROUTE_IDS)
def test_missing_table_is_503_with_retry_after_on_every_route(
    local_endpoint: str, app: FastAPI, method: str, path: str, body: Any
) -> None:
    aws.client("dynamodb").delete_table(TableName=get_settings().table_name)  # ResourceNotFoundException
    with TestClient(app, raise_server_exceptions=False) as client:
        assert_unavailable(request(client, method, path, body))


@pytest.mark.parametrize(("method", "path", "body"), STORE_ROUTES, ids=ROUTE_IDS)
def test_unreachable_store_is_503_with_retry_after_on_every_route(
    monkeypatch: pytest.MonkeyPatch, app: FastAPI, method: str, path: str, body: Any
) -> None:
    point_store_at(monkeypatch, f"http://127.0.0.1:{free_port()}")  # nothing listens: connection refused
    with TestClient(app, raise_server_exceptions=False) as client:
        started = time.monotonic()
        assert_unavailable(request(client, method, path, body))
        assert time.monotonic() - started < 3


def test_a_request_dynamodb_refuses_as_malformed_is_a_logged_500_not_a_503(
    local_endpoint: str, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    def refuse(*_a: Any, **_k: Any) -> None:
        raise ClientError({"Error": {"Code": "ValidationException", "Message": "bad number"}}, "PutItem")

    monkeypatch.setattr(profiles, "put_profile", refuse)
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.put(f"/v1/customers/{CUSTOMER}/profile", json=PROFILE)
    assert resp.status_code == 500


# --- time budgets: a frozen store, the deadline -------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), STORE_ROUTES, ids=ROUTE_IDS)
def test_frozen_store_answers_503_within_3_seconds(
    monkeypatch: pytest.MonkeyPatch, frozen_endpoint: str, app: FastAPI, method: str, path: str, body: Any
) -> None:
    point_store_at(monkeypatch, frozen_endpoint)
    with TestClient(app, raise_server_exceptions=False) as client:
        started = time.monotonic()
        resp = request(client, method, path, body)
        elapsed = time.monotonic() - started
    assert_unavailable(resp)
    assert elapsed < 3.0, f"{method} {path}: 503 after {elapsed:.2f} s"


def test_frozen_store_over_lambda_is_503_within_3_seconds(
    monkeypatch: pytest.MonkeyPatch, frozen_endpoint: str
) -> None:
    from functions.score.app import handler

    point_store_at(monkeypatch, frozen_endpoint)
    started = time.monotonic()
    resp = handler(event("score_recommendation.json"), LambdaContext())
    assert time.monotonic() - started < 3.0
    assert resp["statusCode"] == 503
    assert resp["headers"]["retry-after"] == "1"


def test_no_store_call_starts_after_the_deadline(local_endpoint: str) -> None:
    ddb = aws.client("dynamodb")
    with aws.deadline(0.0), pytest.raises(aws.DeadlineExceededError):
        ddb.describe_table(TableName=get_settings().table_name)
    with aws.deadline(5.0):
        assert ddb.describe_table(TableName=get_settings().table_name)["Table"]
    assert aws.remaining() is None  # the deadline ends with its block


def test_a_spent_deadline_is_503(local_endpoint: str, app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    real = states.get_states

    def slow(ids: Any) -> Any:
        time.sleep(0.6)
        return real(ids)

    monkeypatch.setattr(states, "get_states", slow)
    monkeypatch.setattr(common_http, "REQUEST_DEADLINE_SECONDS", 0.5)
    with TestClient(app, raise_server_exceptions=False) as client:
        # The state read starts in time and finishes late; the decision log's write is then refused.
        assert_unavailable(client.post("/v1/recommendations", json={"customer_id": CUSTOMER, "now": NOW}))


def test_boto3_budget_is_short_and_bounded() -> None:
    config = aws.config()
    assert config.connect_timeout <= 1
    assert config.read_timeout <= 2
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert common_http.REQUEST_DEADLINE_SECONDS < 29
    assert aws.client("dynamodb").meta.config.read_timeout == config.read_timeout


# --- D9: blocking calls never hold the event loop -----------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "patched", "method", "path", "body"),
    [
        (states, "get_states", "POST", "/v1/recommendations", {"customer_id": CUSTOMER, "now": NOW}),
        (touchpoints, "put_touchpoints", "POST", "/v1/touchpoints", [TOUCHPOINT]),
        (profiles, "get_profile", "GET", f"/v1/customers/{CUSTOMER}/profile", None),
    ],
    ids=["recommend", "touchpoints", "profile"],
)
def test_health_answers_while_a_slow_request_runs(
    local_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    patched: str,
    method: str,
    path: str,
    body: Any,
) -> None:
    real = getattr(module, patched)
    release = threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        release.wait(5)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, patched, slow)
    with running(build_app(), port=free_port()) as base, httpx.Client(base_url=base, timeout=10) as http:
        outcome: list[int] = []
        slow_request = threading.Thread(target=lambda: outcome.append(request(http, method, path, body).status_code))
        slow_request.start()
        time.sleep(0.3)
        started = time.monotonic()
        health = http.get("/health", timeout=2)
        elapsed = time.monotonic() - started
        still_running = slow_request.is_alive()
        release.set()
        slow_request.join(10)
    assert health.status_code == 200
    assert elapsed < 1.0
    assert still_running, "the slow request should still have been running"
    assert outcome
    assert outcome[0] < 500


def test_batch_of_1000_customers_stays_within_the_deadline(
    local_endpoint: str, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert get_settings().aws_read_timeout == float(LOCAL_READ_TIMEOUT)  # as `nbc serve` with its embedded store
    profiles.put_profile("c-0", Profile.model_validate(PROFILE))
    body = {"requests": [{"customer_id": f"c-{i}", "now": NOW} for i in range(1000)]}
    with TestClient(app, raise_server_exceptions=False) as client:
        started = time.monotonic()
        resp = client.post("/v1/recommendations:batch", json=body)
        elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.text[:500]
    results = resp.json()["results"]
    assert [r["customer_id"] for r in results] == [f"c-{i}" for i in range(1000)]
    print(f"\nbatch of 1,000 customers against the local store: {elapsed:.2f} s")
    assert elapsed < common_http.REQUEST_DEADLINE_SECONDS
    # Every decision is logged, whatever the thread that wrote it.
    logged = dynamodb.batch_get(
        [{"PK": {"S": f"C#c-{i}"}, "SK": {"S": f"DEC#{r['decision_id']}"}} for i, r in enumerate(results)],
        projection="PK",
    )
    assert len(logged) == 1000


# --- D11: local auth mirrors the cloud ----------------------------------------------------------------------


def test_api_key_covers_the_documentation_and_leaves_health_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_API_KEY", "k-test")
    get_settings.cache_clear()
    with TestClient(build_app(), raise_server_exceptions=False) as client:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"x-api-key": "nope"}).status_code == 401, path
            assert client.get(path, headers={"x-api-key": "k-test"}).status_code == 200, path
        assert client.get("/health").status_code == 200
        assert client.get("/v1/model").status_code == 401
    spec = build_app().openapi()
    assert "/openapi.json" not in spec["paths"]
    assert "/docs" not in spec["paths"]


def test_the_open_routes_are_those_of_the_cloud() -> None:
    template = (ROOT / "template.yaml").read_text(encoding="utf-8")
    assert template.count("Authorizer: NONE") == 1  # the JWT authorizer covers every route but one
    open_path = template.split("Authorizer: NONE")[0].rsplit("Path:", 1)[1].split("\n")[0].strip()
    assert {open_path} == common_http.OPEN_ROUTES == {"/health"}


# --- D12: keyed pseudonyms, no ids in logs ------------------------------------------------------------------


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """What the shared powertools logger writes, formatted as in production."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logger.registered_formatter)
    std = logging.getLogger(logger.name)
    std.addHandler(handler)
    yield out
    std.removeHandler(handler)


def test_pseudonyms_are_keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_PSEUDONYM_KEY", "k" * 32)
    get_settings.cache_clear()
    reset_pseudonym_key()
    try:
        first = pseudonym("c-1")
        assert first == pseudonym("c-1")
        assert len(first) == 16
        for unkeyed in (hashlib.sha256(b"c-1").hexdigest()[:12], hashlib.sha256(b"c-1").hexdigest()[:16]):
            assert not unkeyed.startswith(first[:12])
        monkeypatch.setenv("NBC_PSEUDONYM_KEY", "another-key-of-32-bytes-at-least")
        get_settings.cache_clear()
        reset_pseudonym_key()
        assert pseudonym("c-1") != first
    finally:
        reset_pseudonym_key()


def test_without_a_key_pseudonyms_use_a_random_key_and_warn_once(
    monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO
) -> None:
    monkeypatch.delenv("NBC_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("NBC_PSEUDONYM_KEY_PARAMETER", raising=False)
    get_settings.cache_clear()
    reset_pseudonym_key()
    try:
        tags = {pseudonym("c-1") for _ in range(3)}
        assert len(tags) == 1
        assert log_output.getvalue().count("no pseudonym key configured") == 1
        reset_pseudonym_key()  # another process: another key
        assert pseudonym("c-1") not in tags
    finally:
        reset_pseudonym_key()


def test_pseudonym_key_from_an_ssm_secure_string(local_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    aws.client("ssm").put_parameter(Name="/nbc/pseudonym-key", Value="s" * 40, Type="SecureString", Overwrite=True)
    monkeypatch.delenv("NBC_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("NBC_PSEUDONYM_KEY_PARAMETER", "/nbc/pseudonym-key")
    get_settings.cache_clear()
    reset_pseudonym_key()
    try:
        from_ssm = pseudonym("c-1")
        monkeypatch.setenv("NBC_PSEUDONYM_KEY", "s" * 40)
        get_settings.cache_clear()
        reset_pseudonym_key()
        assert pseudonym("c-1") == from_ssm  # the parameter's value is the key
        monkeypatch.setenv("NBC_PSEUDONYM_KEY", "t" * 40)
        get_settings.cache_clear()
        reset_pseudonym_key()
        assert pseudonym("c-1") != from_ssm
    finally:
        reset_pseudonym_key()


def test_customer_ids_never_reach_the_logs(
    local_endpoint: str, app: FastAPI, monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO
) -> None:
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/v1/touchpoints", json=[TOUCHPOINT]).status_code == 200
        assert client.put(f"/v1/customers/{CUSTOMER}/profile", json=PROFILE).status_code == 200
        assert client.post("/v1/recommendations", json={"customer_id": CUSTOMER, "now": NOW}).status_code == 200

        def boom(customer_id: str) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(profiles, "get_profile", boom)
        assert client.get(f"/v1/customers/{CUSTOMER}/profile").status_code == 500
        assert client.delete(f"/v1/customers/{CUSTOMER}").status_code == 200
    out = log_output.getvalue()
    assert "unhandled error" in out
    assert '"route":"/v1/customers/{customer_id}/profile"' in out.replace(" ", "")
    assert pseudonym(CUSTOMER) in out  # the logs do name the customer, by its pseudonym
    assert CUSTOMER not in out


# --- local logs: no Lambda context of another handler -------------------------------------------------------


def test_http_log_lines_do_not_carry_a_previous_handlers_lambda_context(
    local_endpoint: str, app: FastAPI, log_output: io.StringIO
) -> None:
    from functions.aggregator.app import handler as aggregator

    stream = event("aggregator_stream.json")
    stream["Records"] = stream["Records"][:1]
    stream["Records"][0]["dynamodb"]["Keys"]["SK"] = {"S": "PROFILE"}  # not a touchpoint: nothing to fold
    stream["Records"][0]["dynamodb"]["NewImage"]["SK"] = {"S": "PROFILE"}
    try:
        aggregator(stream, LambdaContext(function_name="nbc-aggregator"))
        assert "function_name" in logger.get_current_keys()  # what powertools leaves behind
    finally:
        forget_lambda_context()
    with TestClient(app) as client:
        assert client.put(f"/v1/customers/{CUSTOMER}/profile", json=PROFILE).status_code == 200
    lines = [json.loads(line) for line in log_output.getvalue().splitlines() if line.startswith("{")]
    profile_lines = [line for line in lines if line.get("message") == "profile set"]
    assert profile_lines
    for line in profile_lines:
        assert "function_name" not in line
        assert "function_request_id" not in line


# --- SQS consumer: the HTTP wrapper, and bad items fail alone -----------------------------------------------


def sqs_event(*bodies: Any) -> dict[str, Any]:
    ev = event("ingest_queue_sqs.json")
    template = ev["Records"][0]
    ev["Records"] = [{**template, "messageId": f"m-{i}", "body": json.dumps(b)} for i, b in enumerate(bodies)]
    return ev


def test_sqs_accepts_the_touchpoints_wrapper(local_endpoint: str) -> None:
    from functions.ingest_queue.app import handler

    wrapped = {"touchpoints": [TOUCHPOINT, {**TOUCHPOINT, "event_id": "e-rel-2"}]}
    resp = handler(sqs_event(wrapped, {"touchpoints": "nope"}), LambdaContext())
    assert [f["itemIdentifier"] for f in resp["batchItemFailures"]] == ["m-1"]
    assert {t.event_id for t in touchpoints.query_touchpoints(CUSTOMER)} == {"e-rel-1", "e-rel-2"}


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00+14:00"])
def test_sqs_extreme_offset_fails_only_its_message_and_the_valid_items_are_stored(
    local_endpoint: str, stamp: str
) -> None:
    from functions.ingest_queue.app import handler

    bad = {**TOUCHPOINT, "event_id": "e-rel-bad", "occurred_at": stamp}
    other = {**TOUCHPOINT, "event_id": "e-rel-3"}
    resp = handler(sqs_event([TOUCHPOINT, bad], other), LambdaContext())
    assert [f["itemIdentifier"] for f in resp["batchItemFailures"]] == ["m-0"]
    assert {t.event_id for t in touchpoints.query_touchpoints(CUSTOMER)} == {"e-rel-1", "e-rel-3"}


# --- D2, D5, D6 and the smaller items over HTTP: 422, never 500 ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"quiet_hours": {"start": "21:00Z", "end": "08:00"}}, "no 'Z' or offset"),
        ({"attributes": {"tenure_days": 1e308}}, "out of range"),
        ({"attributes": {"tenure_days": 1e-320}}, "out of range"),
        ({"attributes": {"tenure_days": True}}, "JSON number"),
        ({"attributes": {"segment": "platinum"}}, "must be one of"),
        ({"timezone": "localtime"}, "unknown IANA time zone"),
    ],
)
def test_bad_profiles_are_422(local_endpoint: str, app: FastAPI, body: dict[str, Any], needle: str) -> None:
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.put(f"/v1/customers/{CUSTOMER}/profile", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert needle in resp.text


def test_bad_touchpoints_and_ids_are_422(local_endpoint: str, app: FastAPI) -> None:
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.post("/v1/touchpoints", json=[{**TOUCHPOINT, "occurred_at": "9999-12-31T23:59:59-14:00"}])
        assert resp.status_code == 422
        assert "out of range" in resp.text
        for bad in (" c-1", "c-1 "):
            assert client.post("/v1/touchpoints", json=[{**TOUCHPOINT, "customer_id": bad}]).status_code == 422
            assert client.post("/v1/recommendations", json={"customer_id": bad}).status_code == 422
        for bad in ("%2E", "..%2E", "%20c-1"):
            assert client.get(f"/v1/customers/{bad}/profile").status_code == 422, bad
        assert client.post("/v1/recommendations", json={"customer_id": "c-1", "k": True}).status_code == 422


def test_openapi_lists_the_channel_names(app: FastAPI) -> None:
    names = list(get_settings().channels)
    spec = app.openapi()
    rec = spec["components"]["schemas"]["RecommendationRequest"]["properties"]
    assert rec["channels"]["anyOf"][0]["items"]["enum"] == names
    body = spec["paths"]["/v1/touchpoints"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"][0]["items"]["properties"]["channel"]["enum"] == names


def test_a_batch_that_outlasts_the_deadline_stops_at_it(
    local_endpoint: str, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functions.score.app as score

    real = score.decide

    def slow(*args: Any) -> Any:
        time.sleep(0.05)
        return real(*args)

    monkeypatch.setattr(score, "decide", slow)
    monkeypatch.setattr(common_http, "REQUEST_DEADLINE_SECONDS", 1.0)
    body = {"requests": [{"customer_id": f"c-{i}", "now": NOW} for i in range(200)]}  # 10 s of decisions
    with TestClient(app, raise_server_exceptions=False) as client:
        started = time.monotonic()
        resp = client.post("/v1/recommendations:batch", json=body)
        elapsed = time.monotonic() - started
    assert_unavailable(resp)
    assert elapsed < 2.0


def test_the_template_hands_the_pseudonym_key_parameter_to_the_functions_that_log_customers() -> None:
    template = (ROOT / "template.yaml").read_text(encoding="utf-8")
    assert 'NBC_PSEUDONYM_KEY_PARAMETER: !Sub "/${PseudonymKeyParameter}"' in template
    assert "  PseudonymKeyParameter:\n    Type: String" in template
    # ingest, aggregator, scoring, audience scoring: each may read that one key
    assert template.count("Sid: ReadPseudonymKey") == 4
    assert template.count("parameter/${PseudonymKeyParameter}") == 4


def test_a_profile_stored_before_the_stricter_rules_still_serves(local_endpoint: str, app: FastAPI) -> None:
    # Written by an earlier version: quiet hours with a zone suffix (D2) and a non-IANA time zone.
    aws.client("dynamodb").put_item(
        TableName=get_settings().table_name,
        Item={
            "PK": {"S": f"C#{CUSTOMER}"},
            "SK": {"S": "PROFILE"},
            "type": {"S": "PROFILE"},
            "timezone": {"S": "localtime"},
            "consent": {"M": {"email": {"BOOL": True}}},
            "quiet_hours": {"M": {"start": {"S": "21:00:00Z"}, "end": {"S": "08:00:00"}}},
        },
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        got = client.get(f"/v1/customers/{CUSTOMER}/profile")
        assert got.status_code == 200, got.text
        assert got.json()["consent"] == {"email": True}  # what is still valid is kept
        assert got.json()["timezone"] == "UTC"
        assert got.json()["quiet_hours"] is None
        rec = client.post("/v1/recommendations", json={"customer_id": CUSTOMER, "now": NOW})
        assert rec.status_code == 200, rec.text
