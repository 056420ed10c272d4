"""`nbc simulate | train | evaluate | promote`: the offline pipeline's commands (gathered by nbc/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from model.domain.objective import OBJECTIVES
from model.domain.settings import get_settings
from nbc.progress import PlainProgress

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()


def _progress() -> Progress | PlainProgress:
    if not console.is_terminal:  # CI, container logs: plain lines, not a bar redrawn in place
        return PlainProgress(console)
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Output folder")],
    customers: Annotated[int, typer.Option(min=1, help="Number of customers")] = 20_000,
    days: Annotated[int, typer.Option(min=2, help="Days of history")] = 90,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same output)")] = 7,
    exploration: Annotated[float, typer.Option(min=0.0, max=1.0, help="Logging policy exploration")] = 0.3,
    organic: Annotated[
        bool, typer.Option("--organic/--no-organic", help="Customers also convert without any contact")
    ] = True,
    drift: Annotated[
        bool, typer.Option("--drift/--no-drift", help="Rates and channel/time preferences change over the period")
    ] = False,
) -> None:
    """Simulate customers with known ground truth, a logging policy (with no-contact decisions) and outcomes."""
    from training.simulate import SimConfig, write
    from training.simulate import simulate as run_simulation

    with _progress() as progress:
        task = progress.add_task("simulate", total=2)
        cfg = SimConfig(
            customers=customers, days=days, seed=seed, exploration=exploration, organic=organic, drift=drift
        )
        result = run_simulation(cfg)
        progress.advance(task)
        write(result, out)
        progress.advance(task)
    table = Table(title=f"Simulated into {out}")
    for col in ("file", "rows"):
        table.add_column(col)
    for name in ("touchpoints", "profiles", "decisions"):
        table.add_row(f"{name}.parquet", f"{result[name].num_rows:,}")
    table.add_row("truth.json", "ground truth for the oracle")
    console.print(table)


@app.command()
def train(
    source: Annotated[str, typer.Option(help="Folder/file, s3://export-prefix, or dynamodb://TABLE")],
    store: Annotated[str | None, typer.Option(help="Model store: folder or s3://bucket/prefix")] = None,
    engine: Annotated[str, typer.Option(help="local or dask")] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (engine dask; default: a local cluster)"),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Engine dask without --scheduler: worker processes of the local cluster")
    ] = 2,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Engine dask: customer-hash partitions (default 4 per worker)")
    ] = None,
    objective: Annotated[str, typer.Option(help=", ".join(OBJECTIVES))] = "conversion",
    split: Annotated[str, typer.Option(help="temporal or customer")] = "temporal",
    window_days: Annotated[float | None, typer.Option(help="Attribution window (default from settings)")] = None,
    simulated_truth: Annotated[Path | None, typer.Option(help="truth.json of a simulation (oracle values)")] = None,
    max_decisions: Annotated[int, typer.Option(min=1, help="Held-out decisions for policy evaluation")] = 5000,
    decisions: Annotated[Path | None, typer.Option(help="Decisions file (Parquet/NDJSON) to use")] = None,
    funnel: Annotated[
        bool,
        typer.Option(
            "--funnel/--no-funnel",
            help="Conversion objective: P(click) x P(conversion|click) in one booster (default), or one direct model",
        ),
    ] = True,
    labels: Annotated[
        str | None,
        typer.Option(
            help="attributed (default): last-click credit, with the click funnel when the data has clicks; window: "
            "the outcome within the window after each decision, the logged no-contact decisions as rows "
            "(incremental value, docs/decisions.md section 11)",
        ),
    ] = None,
    version: Annotated[str | None, typer.Option(help="Version name (default: timestamp)")] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="End of the observation window (ISO 8601): sends whose attribution window ends by then are "
            "labelled, not censored (default: the folder's quality.json as-of, else the last event)",
        ),
    ] = None,
) -> None:
    """Build the point-in-time training set, train LightGBM, evaluate, and publish a versioned model.

    Your own history: `nbc import` it first (docs/own-history.md). Channels beyond the catalogue and customer
    attributes are declared in nbc.toml (a channels table: name = cost; an attributes table: name = "numeric" or
    "categorical"; NBC_CONFIG names other files); a folder written by `nbc import` carries its own DIR/nbc.toml,
    read here.
    """
    from lightgbm.basic import LightGBMError
    from rich.markup import escape

    from model.domain.settings import use_config
    from nbc.commands.data import print_quality
    from training import pipeline
    from training.importer.quality import read as read_quality
    from training.importer.times import parse_as_of
    from training.sources import SourceError

    if objective not in OBJECTIVES:
        raise typer.BadParameter(f"objective must be one of {', '.join(OBJECTIVES)}", param_hint="--objective")
    if engine not in ("local", "dask"):
        raise typer.BadParameter("engine must be local or dask", param_hint="--engine")
    if split not in ("temporal", "customer"):
        raise typer.BadParameter("split must be temporal or customer", param_hint="--split")
    if labels not in (None, "window", "attributed"):
        raise typer.BadParameter("labels must be window or attributed", param_hint="--labels")
    if simulated_truth is None and Path(source, "truth.json").is_file():
        simulated_truth = Path(source, "truth.json")
    quality = read_quality(source) if Path(source).is_dir() else None
    if quality is not None:
        print_quality(quality, f"Data in {source} (quality.json)")
    if Path(source, "nbc.toml").is_file():
        use_config(Path(source, "nbc.toml"))  # the channels and attributes the imported data declares
    try:
        as_of_text = as_of or (quality or {}).get("as_of")
        end = parse_as_of(as_of_text).timestamp() if as_of_text else None
    except SourceError as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    opts = pipeline.Options(
        engine=engine,
        scheduler=scheduler,
        workers=workers,
        partitions=partitions,
        objective=objective,  # type: ignore[arg-type]
        split=split,  # type: ignore[arg-type]
        window_days=window_days,
        as_of=end,
        max_contexts=max_decisions,
        simulated_truth=str(simulated_truth) if simulated_truth else None,
        decisions=str(decisions) if decisions else None,
        funnel=funnel,
        labels=labels,  # type: ignore[arg-type]
        version=version,
    )
    store_uri = store or get_settings().model_store
    with _progress() as progress:
        tasks = {name: progress.add_task(name, total=1, start=False) for name in pipeline_steps()}

        def step(name: str, done: int, total: int) -> None:
            task = tasks[name]
            progress.start_task(task)
            progress.update(task, completed=done, total=max(total, 1))

        try:
            result = pipeline.run(source, store_uri, opts, step)
        except (ValueError, FileNotFoundError) as err:  # SourceError: one line that names the fix
            progress.stop()
            console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except LightGBMError as err:
            progress.stop()
            console.print(
                f"[red]error:[/red] too little data to train ({escape(str(err).splitlines()[0])}): "
                "import more history, or use --split customer / a shorter --window-days",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from None
    _summary(result.version, result.report, result.store.path_of(result.version, "report.html"))
    console.print(f"model: {result.report.get('training', {}).get('model', '-')}", highlight=False, soft_wrap=True)
    console.print(
        f"marketer's page: {result.store.path_of(result.version, 'marketing.html')}", highlight=False, soft_wrap=True
    )


def pipeline_steps() -> tuple[str, ...]:
    return ("load", "dataset", "train", "evaluate", "publish")


def policy_table(report: dict[str, Any], title: str) -> Table:
    """Every policy by every off-policy estimator, side by side: value, 95% interval, "ESS / matched"; the lead
    estimator in bold; the true value beside them on simulated data; the share of each headline valued by the reward
    model alone. Nulls print as n/a."""
    from training.report_text import cell, estimator_label, estimators_in, fmt, has_truth, lead, model_share_text, num

    ests = estimators_in(report)
    truth = has_truth(report)
    table = Table(title=title, box=box.SIMPLE_HEAD, show_lines=False, padding=(0, 1))
    table.add_column("policy", no_wrap=True)
    for e in ests:
        table.add_column(
            estimator_label(report, e), justify="right", no_wrap=True, style="bold" if e == lead(report) else None
        )
    if truth:
        table.add_column("true value", justify="right", no_wrap=True, min_width=10)
        table.add_column("% oracle", justify="right", no_wrap=True, min_width=8)
    table.add_column("by reward model", justify="right", no_wrap=True, min_width=15)
    policies = report.get("policies") or {}
    for name, res in policies.items():
        res = res or {}
        cells = ["\n".join(cell((res.get("estimates") or {}).get(e), compact=True)) for e in ests]
        if truth:
            share = num(res.get("share_of_oracle"))
            cells += [fmt(res.get("true_value")), "n/a" if share is None else f"{100 * share:.1f}%"]
        table.add_row(str(name), *cells, model_share_text(res))
    return table


def print_policy_value(report: dict[str, Any], title: str, out: Console | None = None) -> None:
    """The policy table and the plain notes on how far to trust it (propensities, lead, never-tried actions)."""
    from training.report_text import has_truth, ope_notes, reward_text

    out = out or Console(width=max(console.width, 184))  # eight estimators side by side need room, also piped
    out.print(policy_table(report, title))
    out.print(
        "Cells: value, [95% bootstrap interval], effective sample size/matched decisions, of the "
        + reward_text(report)
        + "; n/a = not computable."
        + (" True value: exact under the simulator's oracle (incremental)." if has_truth(report) else ""),
        highlight=False,
    )
    for note in ope_notes(report):
        out.print(f"- {note}", highlight=False)


def _summary(version: str, report: dict[str, Any], html_path: str) -> None:
    from training.report_text import fmt

    metrics = report.get("metrics") or {}
    print_policy_value(report, f"Model {version}: policy value on held-out decisions")
    console.print(
        f"AUC {fmt(metrics.get('auc'), '.4f')}  log loss {fmt(metrics.get('logloss'), '.4f')}  "
        f"ECE {fmt(metrics.get('ece'), '.4f')}   report: {html_path}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def promote(
    store: Annotated[str | None, typer.Option(help="Model store: folder or s3://bucket/prefix")] = None,
    version: Annotated[str | None, typer.Option(help="Challenger version (default: the newest)")] = None,
    source: Annotated[
        str | None,
        typer.Option(help="Logs to judge on (their newest period): default the challenger's training source"),
    ] = None,
    max_decisions: Annotated[int, typer.Option(min=1, help="Held-out decisions to score both models on")] = 5000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Evaluate and decide, change nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the gate's decision and numbers as JSON")] = False,
    force: Annotated[bool, typer.Option("--force", help="Skip the gate and promote (rollback)")] = False,
) -> None:
    """Move CURRENT to the challenger if, on the same held-out logged decisions, the 95% lower bound of its paired
    difference with the champion and with the logging policy is >= 0 (docs/ope.md). Exit 1 when refused."""
    from model.adapters.registry import ModelStore, StoreError
    from model.domain.settings import use_config
    from training.promote import PromotionRefusedError
    from training.promote import promote as run_promotion
    from training.sources import SourceError

    model_store = ModelStore.from_uri(store or get_settings().model_store)
    try:
        chosen = source
        if chosen is None and not force and model_store.versions():
            chosen = model_store.manifest(version or model_store.versions()[-1]).source
        if chosen and "://" not in chosen and Path(chosen, "nbc.toml").is_file():
            use_config(Path(chosen, "nbc.toml"))  # the channels and attributes the imported data declares
        result = run_promotion(
            model_store, version, source=source, force=force, dry_run=dry_run, max_decisions=max_decisions
        )
    except PromotionRefusedError as err:
        if as_json and err.gate is not None:
            typer.echo(json.dumps(err.gate.to_dict(), indent=2))
        else:
            console.print(f"[red]{err}[/red]", highlight=False)
        raise typer.Exit(1) from None
    except (StoreError, SourceError, FileNotFoundError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}", highlight=False)
        raise typer.Exit(2) from None
    refused = result.gate is not None and result.gate.decision != "promote"
    if as_json:
        payload: dict[str, Any] = (
            result.gate.to_dict() if result.gate is not None else {"decision": "promote" if not refused else "refuse"}
        )
        payload.update({"dry_run": dry_run, "forced": result.forced, "promoted": result.promoted})
        payload.setdefault("challenger", result.version)
        payload.setdefault("champion", result.previous)
        typer.echo(json.dumps(payload, indent=2))
    else:
        console.print(f"[{'yellow' if refused else 'green'}]{result.message}[/]", highlight=False)
    if refused:
        raise typer.Exit(1)


@app.command()
def models(
    store: Annotated[str | None, typer.Option(help="Model store: folder or s3://bucket/prefix")] = None,
) -> None:
    """List the versions in the model store and their held-out policy value."""
    from model.adapters.registry import ModelStore
    from training.report_text import fmt

    model_store = ModelStore.from_uri(store or get_settings().model_store)
    current = model_store.current()
    table = Table(title=f"Models in {model_store.uri}")
    for col in ("version", "current", "AUC", "log loss", "model DR", "model MDR", "model true value", "source"):
        table.add_column(col)
    for v in model_store.versions():
        m = model_store.manifest(v)
        table.add_row(
            v,
            "*" if v == current else "",
            fmt(m.metrics.get("auc"), ".4f"),
            fmt(m.metrics.get("logloss"), ".4f"),
            fmt(m.policy_value.get("model_dr")),
            fmt(m.policy_value.get("model_mdr")),
            fmt(m.policy_value.get("model_true_value"), missing="-"),
            m.source or "-",
        )
    console.print(table)


@app.command("evaluate")
def evaluate_cmd(
    version: Annotated[str | None, typer.Option(help="Version (default: CURRENT)")] = None,
    store: Annotated[str | None, typer.Option(help="Model store: folder or s3://bucket/prefix")] = None,
) -> None:
    """Print the stored evaluation report of a version."""
    from model.adapters.registry import ModelStore

    model_store = ModelStore.from_uri(store or get_settings().model_store)
    v = version or model_store.current()
    if v is None:
        console.print("[red]no CURRENT model; pass --version[/red]")
        raise typer.Exit(1)
    rep = json.loads(model_store.read(v, "report.json"))
    _summary(v, rep, model_store.path_of(v, "report.html"))
