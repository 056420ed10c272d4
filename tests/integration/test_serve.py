"""`nbc serve`: the whole HTTP API in a real process, against the embedded local AWS; and the published schema."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from nbc.local.aws import free_port

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "local-test-key"  # a test value, not a secret
CUSTOMER = "cust-zeta-serve"  # cannot occur by chance in logs (unlike "c-1" inside a uuid)


@pytest.fixture
def server() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {**os.environ, "NBC_API_KEY": API_KEY, "PYTHONUNBUFFERED": "1"}
    env.pop("NBC_AWS_ENDPOINT_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbc.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"nbc serve exited early:\n{proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(f"{base}/health", headers={"x-api-key": API_KEY}, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("nbc serve did not answer /health within 60 s")
            time.sleep(0.2)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_serve_ingests_profiles_and_recommends_with_an_api_key(
    server: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    base, proc = server
    key = {"x-api-key": API_KEY}
    with httpx.Client(base_url=base, timeout=30) as http:
        # Auth: without the header, or with a wrong one, nothing is served (problem+json 401).
        for headers in ({}, {"x-api-key": "wrong"}):
            denied = http.post("/v1/recommendations", json={"customer_id": CUSTOMER}, headers=headers)
            assert denied.status_code == 401
            assert denied.headers["content-type"].startswith("application/problem+json")
        # As in the cloud: /health is open, the documentation is behind the key like every other route (D11).
        assert http.get("/health").status_code == 200
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert http.get(path).status_code == 401, path
            assert http.get(path, headers={"x-api-key": "wrong"}).status_code == 401, path
            assert http.get(path, headers=key).status_code == 200, path
        assert http.get("/openapi.json", headers=key).json()["paths"]

        touchpoints = [
            {
                "event_id": f"e-{i}",
                "customer_id": CUSTOMER,
                "channel": "email",
                "event_type": event_type,
                "occurred_at": f"2026-11-0{i + 1}T09:00:00+00:00",
            }
            for i, event_type in enumerate(["sent", "opened", "clicked"])
        ]
        stored = http.post("/v1/touchpoints", json=touchpoints, headers=key)
        assert stored.status_code == 200, stored.text
        assert [r["status"] for r in stored.json()["results"]] == ["stored"] * 3
        again = http.post("/v1/touchpoints", json=touchpoints[:1], headers=key)
        assert [r["status"] for r in again.json()["results"]] == ["duplicate"]

        time.sleep(1.0)  # the stream pump hands the new touchpoints to the aggregator handler meanwhile
        profile = {"timezone": "Europe/Paris", "consent": {"email": True, "sms": False}}
        put = http.put(f"/v1/customers/{CUSTOMER}/profile", json=profile, headers=key)
        assert put.status_code == 200, put.text
        got = http.get(f"/v1/customers/{CUSTOMER}/profile", headers=key)
        assert got.status_code == 200
        assert got.json()["timezone"] == "Europe/Paris"

        # No model in the (fresh) store: the answer still comes, flagged as such, never a 500.
        rec = http.post("/v1/recommendations", json={"customer_id": CUSTOMER}, headers=key)
        assert rec.status_code == 200, rec.text
        body = rec.json()
        assert body["decision_id"]
        assert body["policy"] in {"model", "explore", "holdout", "cold_start", "fallback"}
        assert all(r["channel"] != "sms" for r in body["recommendations"])  # no consent, never chosen

        bad = http.post("/v1/recommendations", json={"customer_id": CUSTOMER, "channels": ["pigeon"]}, headers=key)
        assert 400 <= bad.status_code < 500
        assert bad.headers["content-type"].startswith("application/problem+json")

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    output = proc.stdout.read() if proc.stdout else ""
    assert "Traceback" not in output, output[-3000:]
    assert CUSTOMER not in output  # customer ids never in clear text in the logs
    # The local store lives beside this test's own model store: nothing of the developer's .nbc/ is restored,
    # and what the server received is saved there at stop.
    saved = tmp_path / "local" / "table.jsonl.gz"
    assert f"no local store at {saved} yet" in output
    assert f"1 customer saved to {saved}" in output
    assert saved.exists()
    # The HTTP API's log lines do not carry the Lambda context the aggregator's handler set in this process.
    http_lines = [line for line in output.splitlines() if '"profile set"' in line]
    assert http_lines, output[-3000:]
    assert not [line for line in http_lines if "nbc-aggregator" in line or "function_name" in line]


def test_committed_openapi_schema_is_the_generated_one(tmp_path: Path) -> None:
    from nbc.commands.serve import app
    from nbc.server import openapi_document

    out = tmp_path / "openapi.json"
    result = CliRunner().invoke(app, ["openapi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    generated = json.loads(out.read_text())
    assert generated == openapi_document()
    paths = generated["paths"]
    for path in ("/v1/touchpoints", "/v1/customers/{customer_id}/profile", "/v1/recommendations", "/health"):
        assert path in paths, path
    committed = ROOT / "docs" / "openapi.json"
    assert committed.read_text() == out.read_text(), "docs/openapi.json is stale: run `make openapi`"
