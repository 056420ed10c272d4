"""`nbc demo`: the main job end to end on this machine, with no AWS account.

simulate customers -> ingest them through the ingest Lambda handler -> the stream drives the aggregator
handler -> build the training set from the table -> train -> evaluate -> promote -> start the API ->
ask it for recommendations -> print what the model is worth against the baselines and the oracle -> save the
table as the local store (`nbc serve` restores it: the demo's model and customers, live) -> print a walkthrough.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from unittest.mock import patch

import httpx
import pyarrow as pa
import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from model.adapters import aws
from model.domain.policy import holdout_bucket
from model.domain.schemas import Profile
from model.domain.settings import Settings, get_settings
from nbc.local import snapshot
from nbc.local.aws import StreamPump, free_port, local_aws
from nbc.local.events import LambdaContext, http_event

console = Console(width=max(Console().width, 140))  # the tables need room, also when piped
BATCH = 500  # touchpoints per ingest request (the API's maximum)
EXPORT_BUCKET = "nbc-demo-exports"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    for batch in table.to_batches(max_chunksize=BATCH):
        yield from batch.to_pylist()


def _touchpoint_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if v is not None}
    out["occurred_at"] = row["occurred_at"].isoformat()
    if isinstance(out.get("attributes"), str):
        out["attributes"] = json.loads(out["attributes"])
    return out


def _profile_json(row: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"timezone": row["timezone"]}
    for key in ("consent", "quiet_hours", "attributes"):
        value = row.get(key)
        if value:
            body[key] = json.loads(value) if isinstance(value, str) else value
    return body


def ingest(sim: dict[str, Any], progress: Progress) -> dict[str, int]:
    """Everything goes through the ingest Lambda handler, as API Gateway would deliver it."""
    from functions.ingest.app import handler

    counts = {"stored": 0, "duplicate": 0, "rejected": 0}
    # A backfill sends each customer's history in order, as a producer replaying its log would.
    tps: pa.Table = sim["touchpoints"].sort_by([("customer_id", "ascending"), ("occurred_at", "ascending")])
    task = progress.add_task("ingest touchpoints (HTTP)", total=tps.num_rows)
    batch: list[dict[str, Any]] = []
    context = LambdaContext(function_name="nbc-ingest")

    def flush() -> None:
        response = handler(http_event("POST", "/v1/touchpoints", batch), context)
        if response["statusCode"] >= 300:
            raise RuntimeError(f"ingest failed: {response['statusCode']} {response['body'][:300]}")
        for item in json.loads(response["body"])["results"]:
            counts[item["status"]] += 1
        progress.advance(task, len(batch))
        batch.clear()

    for row in _rows(tps):
        batch.append(_touchpoint_json(row))
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()

    profiles: pa.Table = sim["profiles"]
    task = progress.add_task("set profiles (HTTP)", total=profiles.num_rows)
    for row in _rows(profiles):
        path = f"/v1/customers/{row['customer_id']}/profile"
        response = handler(http_event("PUT", path, _profile_json(row)), context)
        if response["statusCode"] >= 300:
            raise RuntimeError(f"profile failed: {response['statusCode']} {response['body'][:300]}")
        progress.advance(task)

    return counts


def import_logged_decisions(sim: dict[str, Any], progress: Progress) -> None:
    """The logging policy's decisions, with their propensities, in the decision log the API writes to."""
    from model.adapters.decision_log import import_decisions

    decisions: pa.Table = sim["decisions"]
    task = progress.add_task("import logged decisions", total=decisions.num_rows)
    for part in decisions.to_batches(max_chunksize=5000):
        import_decisions(part.to_pylist())
        progress.advance(task, part.num_rows)


def aggregate(progress: Progress) -> int:
    """Drain the table's stream into the aggregator handler (what the event source mapping does in AWS)."""
    from functions.aggregator.app import handler

    task = progress.add_task("aggregate (stream handler)", total=None)
    pump = StreamPump(lambda event, _ctx: handler(event, LambdaContext(function_name="nbc-aggregator")), 1000)
    delivered = pump.drain()
    progress.update(task, total=delivered, completed=delivered)
    return delivered


@contextmanager
def api_server() -> Iterator[str]:
    """The whole HTTP API (nbc serve's app) on a free 127.0.0.1 port, in a thread."""
    from model.adapters.model_service import get_predictor
    from nbc.server import build_app

    get_predictor.cache_clear()  # the model store the demo promoted into, whatever this process served before
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the local API did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _recommendation_table(answers: list[dict[str, Any]]) -> Table:
    table = Table(title="Recommendations from POST /v1/recommendations")
    for col in ("customer", "policy", "channel", "send at (local)", "message", "p_convert", "EV", "why"):
        table.add_column(col)
    for ans in answers:
        recs = ans["recommendations"] or [{"channel": "none"}]
        first = recs[0]
        why = [r.get("text") or r["description"] for r in first.get("reasons", [])[:2]]
        reasons = "; ".join(why) or first.get("why") or "-"  # a "none" answer says why instead
        local = str(first.get("send_at_local") or "-")[:16].replace("T", " ")
        table.add_row(
            ans["customer_id"],
            ans["policy"] + (" (cold start)" if ans.get("cold_start") else ""),
            first["channel"],
            local,
            str(first.get("message_id") or "-"),
            f"{first['p_convert']:.3f}" if first.get("p_convert") is not None else "-",
            f"{first['expected_value']:.2f}" if first.get("expected_value") is not None else "-",
            reasons,
        )
    return table


OPT_OUTS = {"unsubscribed", "complained"}


def walkthrough_candidates(sim: dict[str, Any], limit: int = 12) -> list[str]:
    """Customers that show the model's policy: outside the holdout, warm (>= 3 touchpoints), with >= 2 channels
    open to them (consent, no opt-out), in id order (the simulator's ids are deterministic for a seed)."""
    settings = get_settings()
    tps: pa.Table = sim["touchpoints"]
    events: dict[str, int] = {}
    closed: dict[str, set[str]] = {}
    for row in tps.select(["customer_id", "channel", "event_type"]).to_pylist():
        events[row["customer_id"]] = events.get(row["customer_id"], 0) + 1
        if row["event_type"] in OPT_OUTS:
            closed.setdefault(row["customer_id"], set()).add(row["channel"])
    out = []
    for row in sorted(_rows(sim["profiles"]), key=lambda r: str(r["customer_id"])):
        cid = str(row["customer_id"])
        if holdout_bucket(cid) < settings.holdout_share or events.get(cid, 0) < 3:
            continue
        profile = Profile.model_validate(_profile_json(row))
        open_channels = [c for c in settings.channels if profile.has_consent(c) and c not in closed.get(cid, set())]
        if len(open_channels) >= 2:
            out.append(cid)
            if len(out) == limit:
                break
    return out


def _walkthrough(customer: str, answer: dict[str, Any] | None, state: Path | None, store: Path) -> str:
    """The commands to try next, for one demo customer (printed at the end of the demo)."""
    key = ' -H "x-api-key: $NBC_API_KEY"' if get_settings().api_key else ""
    default_store = Path(Settings.model_fields["model_store"].default).resolve()
    serve = "make serve" if store == default_store else f"NBC_MODEL_STORE={store} uv run nbc serve"
    first = (answer or {}).get("recommendations") or [{}]
    channel = first[0].get("channel") if first[0].get("channel") not in (None, "none") else "email"
    decision = (answer or {}).get("decision_id") or "<decision_id of the answer>"
    where = f"restores {state}" if state else "serves the demo's model"
    return "\n".join(
        [
            f"Try it live (`make serve` = `uv run nbc serve`, {where}):",
            f"  {serve}",
            f"  curl -s localhost:8080/v1/model{key}",
            f"  curl -s localhost:8080/v1/recommendations{key} -H 'content-type: application/json' "
            f'-d \'{{"customer_id":"{customer}","k":3}}\'',
            "  # then report the send it led to, quoting the recommendation's decision_id (the feedback loop):",
            f"  curl -s localhost:8080/v1/touchpoints{key} -H 'content-type: application/json' -d '[{{"
            f'"event_id":"try-1","customer_id":"{customer}","channel":"{channel}",'
            f'"event_type":"sent","occurred_at":"{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}",'
            f'"decision_id":"{decision}"}}]\'',
            f"  (customer {customer} is outside the holdout, has history and at least two open channels: "
            "README, 'Use it locally', explains the answer)",
        ]
    )


@contextmanager
def _demo_environment(store_dir: Path) -> Iterator[None]:
    """The demo's settings, for its run only: the caller's environment (and settings) come back after it, so a
    later command or test in the same process keeps its own."""
    defaults = {
        # One demo process, so one pseudonym key for its logs (a deployment reads it from SSM; docs/operations.md).
        "NBC_PSEUDONYM_KEY": secrets.token_hex(16),
        # A batch job against the embedded moto (one Python process, one GIL, on a shared machine): a large call can
        # take seconds, so the demo is patient; the API's short budgets are for serving, not for a local batch.
        "NBC_AWS_READ_TIMEOUT": "60",
        # The handlers' JSON logs and CloudWatch metric lines would drown the tables (no CloudWatch here anyway).
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    values = {k: v for k, v in defaults.items() if k not in os.environ} | {"NBC_MODEL_STORE": str(store_dir)}
    with patch.dict(os.environ, values):
        get_settings.cache_clear()
        try:
            yield
        finally:
            get_settings.cache_clear()


def run(
    customers: int,
    days: int,
    seed: int,
    workdir: Path,
    store: str | None = None,
    state: Path | None = None,
) -> dict[str, Any]:
    """The demo; its environment settings hold for the run only (`_demo_environment`)."""
    # The model store `nbc serve` reads (the default .nbc/models), and the local store's file beside it: the
    # demo's table is saved there at the end, so the server restores the demo's customers.
    store_dir = Path(store or get_settings().model_store).resolve()
    with _demo_environment(store_dir):
        return _run(customers, days, seed, workdir, store_dir, state)


def _run(customers: int, days: int, seed: int, workdir: Path, store_dir: Path, state: Path | None) -> dict[str, Any]:
    from nbc.commands.training import pipeline_steps, print_policy_value
    from training import pipeline
    from training.promote import PromotionRefusedError, promote
    from training.report_text import fmt
    from training.simulate import SimConfig, simulate, write
    from training.sources import export_table

    workdir.mkdir(parents=True, exist_ok=True)
    state = state or snapshot.default_path()
    started = time.perf_counter()
    with local_aws(separate_process=True) as endpoint:  # moto works on the second core
        table_name = get_settings().table_name
        console.print(f"[bold]Local AWS[/bold] (moto) on {endpoint}: table {table_name}, model store {store_dir}")
        with _progress() as progress:
            task = progress.add_task("simulate customers", total=1)
            sim = simulate(SimConfig(customers=customers, days=days, seed=seed))
            write(sim, workdir / "sim")
            progress.advance(task)
            counts = ingest(sim, progress)
            aggregate(progress)
            import_logged_decisions(sim, progress)  # after the stream drain: the aggregator ignores them anyway

            # As the scheduled retraining does in AWS: export the table to S3, train from the export.
            task = progress.add_task("export table to S3", total=1)
            aws.client("s3").create_bucket(Bucket=EXPORT_BUCKET)
            export = export_table(EXPORT_BUCKET, f"exports/{int(time.time())}")
            progress.advance(task)

            steps = {name: progress.add_task(name, total=1, start=False) for name in pipeline_steps()}

            def step(name: str, done: int, total: int) -> None:
                progress.start_task(steps[name])
                progress.update(steps[name], completed=done, total=max(total, 1))

            opts = pipeline.Options(simulated_truth=str(workdir / "sim" / "truth.json"))
            result = pipeline.run(export, str(store_dir), opts, step)
            task = progress.add_task("compile + promote (gate)", total=1)
            try:  # the paired gate, on the held-out period of the export it trained on
                promoted = promote(result.store, result.version).message
            except PromotionRefusedError as refused:
                if result.store.current() is None:  # the API needs a model: promote it anyway, and say so
                    promote(result.store, result.version, force=True)
                    promoted = f"{refused}\nThe demo promotes it anyway (--force) so that the API has a model to serve."
                else:  # a later run's model may lose to the champion
                    promoted = str(refused)
            progress.advance(task)

        candidates = walkthrough_candidates(sim)
        first_ids = [str(c) for c in sim["profiles"].column("customer_id").to_pylist()[:5]]
        sample = list(dict.fromkeys(first_ids[:4] + candidates))[:5]  # a holdout customer may be among the first
        answers = []
        headers = {"x-api-key": key.get_secret_value()} if (key := get_settings().api_key) else {}
        with api_server() as url:
            for customer in sample:
                body = {"customer_id": customer, "k": 3}
                reply = httpx.post(f"{url}/v1/recommendations", json=body, headers=headers, timeout=30)
                reply.raise_for_status()
                answers.append(reply.json())
        by_id = {a["customer_id"]: a for a in answers}
        # The walkthrough's customer: the first candidate the model answered (not an exploration draw).
        featured = next((c for c in candidates if by_id.get(c, {}).get("policy") == "model"), None)
        featured = featured or (candidates[0] if candidates else sample[0])
        saved = snapshot.save(state) if state is not None else 0
    elapsed = time.perf_counter() - started

    console.print(
        f"Ingested {counts['stored']:,} touchpoints ({counts['duplicate']:,} duplicates, "
        f"{counts['rejected']:,} rejected) for {customers:,} customers over {days} days."
    )
    print_policy_value(result.report, "Policy value on the held-out period (net value per decision)")
    metrics = result.report.get("metrics", {})
    console.print(f"AUC {fmt(metrics.get('auc'))}, log loss {fmt(metrics.get('logloss'), '.4f')}", highlight=False)
    console.print(f"Promotion: {promoted}")
    console.print(_recommendation_table(answers))
    console.print(f"HTML report (data team): {result.store.path_of(result.version, 'report.html')}")
    console.print(f"HTML report (marketers): {result.store.path_of(result.version, 'marketing.html')}")
    if state is not None:
        console.print(f"Local store: {saved:,} customers saved to {state} (`nbc serve` restores them)")
    console.print(f"Done in {elapsed:.0f} s.")
    walkthrough = _walkthrough(featured, by_id.get(featured), state, store_dir)
    console.print(walkthrough, highlight=False, soft_wrap=True, markup=False)
    return {
        "report": result.report,
        "answers": answers,
        "seconds": elapsed,
        "counts": counts,
        "featured": featured,
        "state": state,
        "version": result.store.current(),
    }


def demo(
    customers: Annotated[int, typer.Option(min=50, help="Simulated customers")] = 200,
    days: Annotated[int, typer.Option(min=14, help="Days of history")] = 45,
    seed: Annotated[int, typer.Option(help="Random seed")] = 7,
    workdir: Annotated[Path, typer.Option(help="Where the simulation goes")] = Path(".nbc/demo"),
    store: Annotated[
        str | None, typer.Option(help="Model store to promote into [default: NBC_MODEL_STORE, .nbc/models]")
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(help="Where the table is saved for `nbc serve` [default: local/table.jsonl.gz beside the store]"),
    ] = None,
) -> None:
    """Run the whole product locally: simulate, ingest, train, evaluate, promote, serve, recommend; then leave the
    model and the customers for `nbc serve`."""
    run(customers, days, seed, workdir, store, state)
