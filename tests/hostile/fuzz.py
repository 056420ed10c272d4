"""schemathesis against a live `nbc serve`: run it (its CLI engine: every phase, every check), read its NDJSON
event stream back, and sort each failure into a known defect of issue 13 or an unknown one.

Server errors are sorted by replaying the failing request and reading what the server logged for it (the
exception names the defect); the other failures by schemathesis' check and the response.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.hostile.live import API_KEY, LiveServer

# Defects of issue 13 this suite can meet (the others need a broken store, a redelivered stream or a bad file).
KNOWN = {
    "D1": "tree scorer plan cache keyed without the groups' identity: ValueError cannot reshape -> 500",
    "D2": 'QuietHours accepts "21:00Z": naive vs aware time comparison -> 500 for that customer',
    "D5": "extreme UTC offsets (9999-12-31T23:59:59-14:00): OverflowError -> 500",
    "D6": "profile numbers out of DynamoDB's range (1e308, 1e-320) reach the write -> 500",
    "D9": "time budgets (D9, deliver item 5): a large batch (1,000 customers) outlasts the client's 10 s timeout",
    # Found by this suite; not among D1-D12 (reported to issue 13).
    "N1": "405 answers carry no Allow header (RFC 9110), on every route",
    "N2": "the OpenAPI schema does not state constraints the API enforces (channel names - issue 13's 'smaller' "
    "item -, IANA time zone names, date ranges, declared attribute names, messages only for requested channels): "
    "schema-valid requests get a reasoned 422",
    "N3": "lax coercion accepts schema-invalid values (e.g. quiet_hours.end = 0 is read as 00:00:00)",
}
# What the server logs when a known defect raises (the last lines of the traceback).
SIGNATURES = {
    "D1": ("cannot reshape",),
    "D2": ("can't compare offset-naive and offset-aware",),
    "D5": ("OverflowError",),
    "D6": ("Number overflow", "Number underflow", "magnitude larger than supported", "magnitude smaller than"),
}


@dataclass
class Failure:
    operation: str  # "POST /v1/recommendations"
    check: str  # schemathesis check name, or "network" for a transport error
    code: str  # ST101, ... ("" for errors)
    title: str
    message: str
    method: str
    url: str
    body: bytes | None
    media_type: str | None
    status: int | None
    response: str
    defect: str | None = None  # a key of KNOWN, or None: unknown
    evidence: str = ""

    def key(self) -> tuple[str, str, str, int | None]:
        return (self.operation, self.check, self.title, self.status)

    def curl(self) -> str:
        parts = [f"curl -X {self.method} -H 'x-api-key: $NBC_API_KEY'"]
        if self.body is not None:
            parts.append(f"-H 'content-type: {self.media_type or 'application/json'}'")
            parts.append("--data-binary " + json.dumps(self.body.decode(errors="replace")))
        parts.append(f"'{self.url}'")
        return " ".join(parts)

    def describe(self) -> str:
        return (
            f"[{self.defect or 'UNKNOWN'}] {self.operation}: {self.code} {self.title} ({self.check})\n"
            f"  {self.message.strip().splitlines()[0] if self.message.strip() else ''}\n"
            f"  response {self.status}: {self.response[:400]}\n"
            f"  evidence: {self.evidence[:400]}\n"
            f"  repro: {self.curl()[:1500]}"
        )


@dataclass
class Campaign:
    seed: int | None
    examples: int
    generated: int = 0
    operations_tested: int = 0
    operations_total: int = 0
    elapsed: float = 0.0
    exit_code: int = 0
    failures: list[Failure] = field(default_factory=list)  # one per distinct (operation, check, title, status)
    seconds: dict[str, float] = field(default_factory=dict)  # "phase operation" -> time spent
    output: str = ""

    def by_defect(self) -> Counter[str]:
        return Counter(f.defect or "UNKNOWN" for f in self.failures)

    def unknown(self) -> list[Failure]:
        return [f for f in self.failures if f.defect is None]

    def of(self, defect: str) -> list[Failure]:
        return [f for f in self.failures if f.defect == defect]


def run_schemathesis(
    server: LiveServer,
    examples: int,
    seed: int | None = 20261202,
    max_time: float | None = None,
    phases: str = "examples,coverage,fuzzing,stateful",
    request_timeout: float = 10.0,
) -> Campaign:
    """`st run URL/openapi.json -H x-api-key --checks all -n N` (continue on failure, no shrinking: each distinct
    failure once, within the budget), then classify what it found."""
    out = Path(tempfile.mkdtemp(prefix="nbc-st-"))
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server.base}/openapi.json",
        "-H",
        f"x-api-key: {API_KEY}",
        "--checks",
        "all",
        "--max-examples",
        str(examples),
        "--continue-on-failure",
        "--no-shrink",
        "--workers",
        "1",
        "--request-timeout",
        str(request_timeout),
        "--generation-database",
        "none",
        "--report",
        "ndjson,json",
        "--report-dir",
        str(out),
        "--no-color",
        "--phases",
        phases,
    ]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if max_time is not None:
        cmd += ["--max-time", str(int(max_time))]
    t0 = time.perf_counter()
    # Exit status 1 when it finds failures; the timeout only guards against a server that stopped answering.
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=(max_time or 600) + 300)
    campaign = Campaign(seed=seed, examples=examples, elapsed=time.perf_counter() - t0, exit_code=proc.returncode)
    campaign.output = proc.stdout[-20000:] + proc.stderr[-5000:]
    try:
        _read_reports(campaign, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    for failure in campaign.failures:
        classify(failure, server)
    return campaign


def _read_reports(campaign: Campaign, out: Path) -> None:
    reports = {p.suffix: p for p in out.iterdir()}
    if ".json" not in reports or ".ndjson" not in reports:
        raise RuntimeError(f"schemathesis wrote no report (exit {campaign.exit_code}):\n{campaign.output[-5000:]}")
    summary = json.loads(reports[".json"].read_text())
    campaign.generated = int(summary["test_cases"]["generated"])
    campaign.operations_tested = int(summary["operations"]["tested"])
    campaign.operations_total = int(summary["operations"]["selected"])
    if campaign.seed is None:
        campaign.seed = summary.get("seed")
    seen: dict[tuple[str, str, str, int | None], Failure] = {}
    for failure in _failures(reports[".ndjson"], campaign.seconds):
        seen.setdefault(failure.key(), failure)
    campaign.failures = list(seen.values())


def _decode(content: Any) -> bytes | None:
    if content is None:
        return None
    if isinstance(content, dict) and "$base64" in content:
        return base64.b64decode(content["$base64"])
    if isinstance(content, str):
        return content.encode()
    return json.dumps(content).encode()


def _failures(ndjson: Path, seconds: dict[str, float]) -> list[Failure]:
    found: list[Failure] = []
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        name, payload = next(iter(event.items()))
        if name == "NonFatalError":
            found.append(_from_error(payload))
            continue
        if name != "ScenarioFinished":
            continue
        recorder = payload.get("recorder") or {}
        label = recorder.get("label", "")
        where = f"{payload.get('phase')} {label}"
        seconds[where] = seconds.get(where, 0.0) + float(payload.get("elapsed_time") or 0.0)
        cases = recorder.get("cases", {})
        interactions = recorder.get("interactions", {})
        for case_id, checks in (recorder.get("checks") or {}).items():
            for check in checks:
                if check.get("status") != "failure":
                    continue
                info = (check.get("failure_info") or {}).get("failure") or {}
                case = (cases.get(case_id) or {}).get("value") or {}
                inter = interactions.get(case_id) or {}
                request, response = inter.get("request") or {}, inter.get("response") or {}
                found.append(
                    Failure(
                        operation=info.get("operation") or label,
                        check=check.get("name", ""),
                        code=info.get("code", ""),
                        title=info.get("title", ""),
                        message=info.get("message", ""),
                        method=request.get("method") or case.get("method", ""),
                        url=request.get("uri", ""),
                        body=_decode(request.get("body")),
                        media_type=case.get("media_type"),
                        status=response.get("status_code"),
                        response=(_decode(response.get("content")) or b"").decode(errors="replace"),
                    )
                )
    return found


def _from_error(payload: dict[str, Any]) -> Failure:
    """A transport error (timeout, connection refused) of one case: schemathesis reports it as an error."""
    text = json.dumps(payload)
    info = payload.get("info") or {}
    return Failure(
        operation=payload.get("label", ""),
        check="network",
        code="",
        title=str(info.get("title") or payload.get("title") or "error"),
        message=str(info.get("message") or info.get("extras") or text[:500]),
        method=payload.get("label", " ").split(" ", 1)[0],
        url="",
        body=None,
        media_type=None,
        status=None,
        response=text[:2000],
    )


def replay(failure: Failure, server: LiveServer) -> tuple[int | None, str]:
    """Send the failing request again; return its status and what the server logged meanwhile."""
    server.log_since_mark()
    headers = {"x-api-key": API_KEY}
    if failure.body is not None:
        headers["content-type"] = failure.media_type or "application/json"
    try:
        status: int | None = httpx.request(
            failure.method, failure.url, headers=headers, content=failure.body, timeout=30
        ).status_code
    except httpx.HTTPError as exc:
        status = None
        failure.evidence = f"replay: {exc!r}"
    time.sleep(0.2)
    return status, server.log_since_mark()


def classify(failure: Failure, server: LiveServer) -> None:
    if failure.check == "network":
        if "timed out" in (failure.message + failure.response).lower() or "timeout" in failure.title.lower():
            failure.defect, failure.evidence = "D9", "client timeout while the server was busy"
        return
    if failure.status is not None and failure.status >= 500 and failure.url:
        status, logged = replay(failure, server)
        failure.evidence = failure.evidence or f"replay -> {status}; " + _exception_line(logged)
        for defect, needles in SIGNATURES.items():
            if any(n in logged for n in needles):
                failure.defect = defect
                return
        return
    if failure.check == "unsupported_method" and failure.status == 405 and "Allow" in failure.message:
        failure.defect = "N1"
    elif failure.check == "positive_data_acceptance" and failure.status == 422:
        # The API said which constraint it enforces that the schema does not state (a field and a reason).
        reasons = _reasons(failure.response)
        if reasons and all(reasons):
            failure.defect = "N2"
        failure.evidence = "; ".join(reasons)[:600]
    elif failure.check == "negative_data_rejection" and failure.status is not None and failure.status < 300:
        failure.defect = "N3"
        failure.evidence = failure.message[:600]


def _reasons(problem: str) -> list[str]:
    """The per-field reasons of a problem+json answer (empty when it has none)."""
    try:
        errors = json.loads(problem).get("errors") or []
    except (ValueError, AttributeError):
        return []
    return [str(e.get("reason", "")) for e in errors if isinstance(e, dict)]


def _exception_line(logged: str) -> str:
    lines = [ln for ln in logged.splitlines() if ln and not ln.startswith((" ", "{", "Traceback"))]
    return lines[-1] if lines else logged[-300:]
