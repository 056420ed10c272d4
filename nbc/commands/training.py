"""`nbc simulate | train | evaluate | promote`: the offline pipeline's commands (gathered by nbc/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

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
) -> None:
    """Simulate customers with known ground truth, a logging policy and its outcomes."""
    from training.simulate import SimConfig, write
    from training.simulate import simulate as run_simulation

    with _progress() as progress:
        task = progress.add_task("simulate", total=2)
        result = run_simulation(SimConfig(customers=customers, days=days, seed=seed, exploration=exploration))
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
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address (engine dask)")] = None,
    objective: Annotated[str, typer.Option(help="click, visit, conversion or value")] = "conversion",
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
    from training.importer.core import parse_as_of
    from training.importer.quality import read as read_quality
    from training.sources import SourceError

    if objective not in ("click", "visit", "conversion", "value"):
        raise typer.BadParameter("objective must be click, visit, conversion or value", param_hint="--objective")
    if split not in ("temporal", "customer"):
        raise typer.BadParameter("split must be temporal or customer", param_hint="--split")
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
        objective=objective,  # type: ignore[arg-type]
        split=split,  # type: ignore[arg-type]
        window_days=window_days,
        as_of=end,
        max_contexts=max_decisions,
        simulated_truth=str(simulated_truth) if simulated_truth else None,
        decisions=str(decisions) if decisions else None,
        funnel=funnel,
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


def pipeline_steps() -> tuple[str, ...]:
    return ("load", "dataset", "train", "evaluate", "publish")


def _summary(version: str, report: dict[str, object], html_path: str) -> None:
    metrics = report.get("metrics", {})
    assert isinstance(metrics, dict)
    table = Table(title=f"Model {version}")
    table.add_column("policy")
    for col in ("SNIPS", "95% CI", "true value", "% of oracle"):
        table.add_column(col, justify="right")
    policies = report.get("policies", {})
    assert isinstance(policies, dict)
    for name, res in policies.items():
        ci = res.get("snips_ci", [float("nan")] * 2)
        share = res.get("share_of_oracle")
        table.add_row(
            name,
            f"{res.get('snips', float('nan')):.3f}",
            f"[{ci[0]:.3f}, {ci[1]:.3f}]",
            f"{res['true_value']:.3f}" if "true_value" in res else "-",
            f"{100 * share:.1f}%" if share is not None else "-",
        )
    console.print(table)
    console.print(
        f"AUC {metrics.get('auc', float('nan')):.4f}  log loss {metrics.get('logloss', float('nan')):.4f}  "
        f"ECE {metrics.get('ece', float('nan')):.4f}   report: {html_path}"
    )


@app.command()
def promote(
    store: Annotated[str | None, typer.Option(help="Model store: folder or s3://bucket/prefix")] = None,
    version: Annotated[str | None, typer.Option(help="Challenger version (default: the newest)")] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the challenger is worse")] = False,
) -> None:
    """Move CURRENT to the challenger if its held-out policy value is not worse than the champion's."""
    from model.adapters.registry import ModelStore, StoreError
    from training.promote import PromotionRefusedError
    from training.promote import promote as run_promotion

    model_store = ModelStore.from_uri(store or get_settings().model_store)
    try:
        result = run_promotion(model_store, version, force=force)
    except (PromotionRefusedError, StoreError) as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(1) from None
    console.print(f"[green]{result.message}[/green]")


@app.command()
def models(
    store: Annotated[str | None, typer.Option(help="Model store: folder or s3://bucket/prefix")] = None,
) -> None:
    """List the versions in the model store and their held-out policy value."""
    from model.adapters.registry import ModelStore

    model_store = ModelStore.from_uri(store or get_settings().model_store)
    current = model_store.current()
    table = Table(title=f"Models in {model_store.uri}")
    for col in ("version", "current", "auc", "model SNIPS", "model true value"):
        table.add_column(col)
    for v in model_store.versions():
        m = model_store.manifest(v)
        table.add_row(
            v,
            "*" if v == current else "",
            f"{m.metrics.get('auc', float('nan')):.4f}",
            f"{m.policy_value.get('model_snips', float('nan')):.3f}",
            f"{m.policy_value['model_true_value']:.3f}" if "model_true_value" in m.policy_value else "-",
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
