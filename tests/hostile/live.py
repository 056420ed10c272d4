"""A live `nbc serve` (embedded local AWS, an API key, loopback only) driven from outside, as an attacker would.

Nothing of the project is imported here: the server runs as a subprocess through its console script, and the
hostile suite (tests/hostile/) and bench/hostile.py talk to it over HTTP only. The one look inside is the
aggregate read back from the embedded store (`aggregate_counts`), to check that nothing was lost or counted twice.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "hostile-suite-key"  # a test value, not a secret
KEY = {"x-api-key": API_KEY}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nbc_command() -> list[str]:
    """The `nbc` console script of the environment running us (the locked .venv under `uv run`)."""
    script = Path(sys.executable).with_name("nbc")
    if script.exists():
        return [str(script)]
    found = shutil.which("nbc")
    if found:
        return [found]
    return [sys.executable, "-m", "uv", "run", "--frozen", "nbc"]


@dataclass
class LiveServer:
    """`nbc serve` on 127.0.0.1 with NBC_API_KEY set; its output goes to a file that tests can read from an offset."""

    base: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    _offset: int = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_since_mark(self) -> str:
        """What the server wrote since the last call (or since start)."""
        text = self.log_path.read_bytes()
        new, self._offset = text[self._offset :], len(text)
        return new.decode(errors="replace")

    def store_endpoint(self) -> str | None:
        """The embedded local AWS endpoint, as the start banner states it ("table T at http://127.0.0.1:P")."""
        match = re.search(r"table (\S+) at (http://127\.0\.0\.1:\d+)", self.log())
        return match.group(2) if match else None

    def table_name(self) -> str | None:
        match = re.search(r"table (\S+) at http://", self.log())
        return match.group(1) if match else None


@contextmanager
def live_server(model_store: str | None = None, startup_timeout: float = 90.0) -> Iterator[LiveServer]:
    """Start `nbc serve` on a free loopback port, wait for /health, yield it, stop it with SIGINT (then SIGKILL)."""
    work = Path(tempfile.mkdtemp(prefix="nbc-hostile-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBC_")}
    env.update(
        NBC_API_KEY=API_KEY,
        NBC_MODEL_STORE=model_store or str(work / "models"),  # empty store: the heuristic serves
        PYTHONUNBUFFERED="1",
    )
    log_path = work / "serve.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            # --no-persist: every run starts from an empty table (never the fuzz data of a previous run)
            [*nbc_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-persist"],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(base=f"http://127.0.0.1:{port}", proc=proc, log_path=log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nbc serve exited with {proc.returncode}:\n{server.log()[-4000:]}")
            try:
                if httpx.get(f"{server.base}/health", headers=KEY, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nbc serve did not answer /health within {startup_timeout:.0f} s")
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------ concurrent load with duplicate event ids

CHANNELS = ("email", "push", "sms")
EVENT_TYPES = ("sent", "opened", "clicked")


@dataclass
class LoadResult:
    customers: list[str]
    events: dict[str, dict[str, Any]]  # event_id -> touchpoint
    statuses: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # event_id -> each answer
    http_errors: list[str] = field(default_factory=list)  # "METHOD path -> status body"
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # kind -> seconds
    decisions: Counter[str] = field(default_factory=Counter)  # customer -> decisions answered
    wall_seconds: float = 0.0


def concurrent_load(
    base: str,
    clients: int = 8,
    customers: int = 4,
    events_per_customer: int = 30,
    copies: int = 3,
    batch: int = 10,
    seed: int = 13,
) -> LoadResult:
    """`clients` threads ingest every touchpoint `copies` times between them (same event ids, same payloads, in
    different orders and batches, concurrently) and ask for recommendations between their batches."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    ids = [f"hl-{run}-c{i}" for i in range(customers)]
    now = datetime.now(UTC).replace(microsecond=0)
    events: dict[str, dict[str, Any]] = {}
    for cust in ids:
        for i in range(events_per_customer):
            # Within the last two days: no event is old enough to leave the aggregate's memory of seen ids.
            at = now - timedelta(minutes=rng.randrange(60, 48 * 60))
            event_id = f"{cust}-e{i}"
            events[event_id] = {
                "event_id": event_id,
                "customer_id": cust,
                "channel": rng.choice(CHANNELS),
                "event_type": rng.choice(EVENT_TYPES),
                "occurred_at": at.isoformat().replace("+00:00", "Z"),
            }
    result = LoadResult(customers=ids, events=events)
    # Each event goes to `copies` distinct clients; each client shuffles its share and sends it in batches.
    shares: list[list[dict[str, Any]]] = [[] for _ in range(clients)]
    for tp in events.values():
        for c in rng.sample(range(clients), copies):
            shares[c].append(tp)
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(index: int) -> None:
        local = random.Random(seed * 1000 + index)
        share = shares[index]
        local.shuffle(share)
        with httpx.Client(base_url=base, headers=KEY, timeout=60) as http:
            start.wait()
            for b in range(0, len(share), batch):
                chunk = share[b : b + batch]
                t0 = time.perf_counter()
                resp = http.post("/v1/touchpoints", json=chunk)
                took = time.perf_counter() - t0
                with lock:
                    result.latencies["ingest"].append(took)
                    if resp.status_code != 200:
                        result.http_errors.append(f"POST /v1/touchpoints -> {resp.status_code} {resp.text[:300]}")
                    else:
                        for item in resp.json()["results"]:
                            result.statuses[item["event_id"]].append(item["status"])
                cust = local.choice(ids)
                t0 = time.perf_counter()
                resp = http.post("/v1/recommendations", json={"customer_id": cust, "k": 3})
                took = time.perf_counter() - t0
                with lock:
                    result.latencies["recommend"].append(took)
                    if resp.status_code != 200:
                        result.http_errors.append(f"POST /v1/recommendations -> {resp.status_code} {resp.text[:300]}")
                    elif resp.json().get("decision_id"):
                        result.decisions[cust] += 1

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.wall_seconds = time.perf_counter() - t0
    return result


def expected_counts(events: dict[str, dict[str, Any]], customer: str) -> Counter[tuple[str, str]]:
    return Counter((tp["channel"], tp["event_type"]) for tp in events.values() if tp["customer_id"] == customer)


def aggregate_counts(server: LiveServer, customer: str) -> Counter[tuple[str, str]] | None:
    """(channel, event_type) -> count in the customer's stored aggregate, read from the embedded store; None while
    there is no aggregate. Layout v1 of the AGG item (model/domain/aggregate.py): state.channels[c].counts is
    aligned with state.event_types."""
    import boto3

    endpoint, table = server.store_endpoint(), server.table_name()
    if not (endpoint and table):
        raise AssertionError("nbc serve's banner no longer names the table and endpoint: update tests/hostile/live.py")
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # moto takes any credentials
    )
    item = client.get_item(TableName=table, Key={"PK": {"S": f"C#{customer}"}, "SK": {"S": "AGG"}}).get("Item")
    if item is None:
        return None
    state = json.loads(item["state"]["S"])
    if "channels" not in state or "event_types" not in state:
        raise AssertionError(f"unknown aggregate layout {sorted(state)}: update tests/hostile/live.py")
    counts: Counter[tuple[str, str]] = Counter()
    for channel, per in state["channels"].items():
        for event_type, n in zip(state["event_types"], per["counts"], strict=True):
            if n:
                counts[(channel, event_type)] += int(n)
    return counts


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]
