"""The retraining job end to end: source -> point-in-time dataset -> LightGBM -> evaluation -> model store.

`run()` is what `nbc train` (and the scheduled retraining, and the demo) call; each step reports through an
optional `Steps` callback so the CLI can draw progress bars without this module knowing about rich.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from model.adapters.registry import Manifest, ModelStore, new_version, schema_hash
from model.domain.catalogue import catalogue
from model.domain.manifest import Unsupported
from model.domain.settings import get_settings
from training import checks, dataset, evaluate, marketer_report, marketing, report, sources, train
from training.sim_truth import Oracle

Step = Callable[[str, int, int], None]  # (step name, done, total)


@dataclass
class Options:
    engine: str = "local"
    scheduler: str | None = None
    workers: int = 2  # --engine dask without a scheduler: a local cluster of this many processes
    partitions: int | None = None  # --engine dask: customer-hash partitions (default 4 per worker)
    objective: dataset.Objective = "conversion"
    split: dataset.Split = "temporal"
    window_days: float | None = None
    as_of: float | None = None  # end of the observation window (epoch s); default: the last event
    eval_fraction: float = 0.2
    max_contexts: int = 5000
    rounds: int = 1000
    early_stopping: int = 50
    simulated_truth: str | None = None
    decisions: str | None = None  # a decisions file to use instead of the source's own
    # Conversion objective on the local engine: P(click) x P(conversion | click), distilled into one booster
    # (the default: it picks better channels and send times on the simulator, see bench/RESULTS.md);
    # False trains one direct conversion model.
    funnel: bool = True
    # "attributed" (default): last-click credit; "window": outcomes within the window after each decision and the
    # logged no-contact decisions as rows, so the model learns incremental value (docs/decisions.md section 11).
    labels: dataset.Labels | None = None
    version: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    version: str
    manifest: Manifest
    report: dict[str, Any]
    timings: dict[str, float]
    store: ModelStore


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 (git from PATH, fixed arguments)
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return metadata.version("nbc")
    except metadata.PackageNotFoundError:
        return "unknown"


def _json_safe(value: Any) -> Any:
    """NaN / infinity -> null (strict JSON), numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def source_uri(source: str | sources.Sources) -> str | None:
    """The training source as the manifest records it (the promotion gate's default held-out source): an absolute
    path for a local file or folder, the URI otherwise; None for data handed over in memory."""
    if not isinstance(source, str):
        return None
    if "://" in source or source.startswith(("table:", "ddb:")):
        return source
    return str(Path(source).resolve())


def _window(ts: dataset.TrainingSet) -> tuple[datetime, datetime]:
    sel = np.isin(ts.split, ["train", "valid"])
    send_ts = ts.meta["send_ts"].to_numpy()[sel]
    if len(send_ts) == 0:
        return ts.period
    return datetime.fromtimestamp(float(send_ts.min()), UTC), datetime.fromtimestamp(float(send_ts.max()), UTC)


def run(source: str | sources.Sources, store_uri: str, opts: Options, step: Step | None = None) -> Result:
    def tick(name: str, done: int, total: int) -> None:
        if step is not None:
            step(name, done, total)

    timings: dict[str, float] = {}
    if opts.engine == "dask":
        from training import dask_pipeline  # dask and a cluster only when asked for

        dset, result, rep = dask_pipeline.run_stages(source, opts, tick, timings)
        return _publish(source, store_uri, opts, dset, result, rep, timings, tick)
    t0 = time.perf_counter()
    tick("load", 0, 1)
    src = source if isinstance(source, sources.Sources) else sources.load(source)
    if opts.decisions:
        src = sources.Sources(src.touchpoints, src.profiles, sources.read_decisions(opts.decisions))
    checks.check_source(src, window_days=opts.window_days, as_of=opts.as_of, objective=opts.objective)
    tick("load", 1, 1)
    timings["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ts = dataset.build(
        src.touchpoints,
        src.profiles,
        src.decisions,
        objective=opts.objective,
        window_days=opts.window_days,
        split=opts.split,
        eval_fraction=opts.eval_fraction,
        max_contexts=opts.max_contexts,
        as_of=opts.as_of,
        progress=lambda done, total: tick("dataset", done, total),
        labels=opts.labels,
    )
    checks.check_training_set(ts, split=opts.split)
    timings["dataset"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tick("train", 0, 1)
    if opts.engine == "local" and opts.funnel and ts.objective == "conversion":
        result = train.train_funnel(ts, rounds=opts.rounds, early_stopping=opts.early_stopping, params=opts.params)
    elif opts.engine == "local":
        result = train.train_local(ts, rounds=opts.rounds, early_stopping=opts.early_stopping, params=opts.params)
    else:
        raise ValueError(f"unknown engine {opts.engine!r}: local or dask")
    tick("train", 1, 1)
    timings["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tick("evaluate", 0, 1)
    oracle = Oracle.load(opts.simulated_truth) if opts.simulated_truth else None
    rep = evaluate.evaluate(result.booster, ts, oracle)
    if rep.get("marketing"):
        rep["marketing"]["uplift"] = marketing.uplift(src, ts.window_days, opts.as_of, oracle, ts.objective)
    rep["training"] = {
        "engine": result.engine,
        "model": result.model,
        "seconds": result.seconds,
        "best_iteration": result.best_iteration,
        "rows_train": int((ts.split == "train").sum()),
        "rows_valid": int((ts.split == "valid").sum()),
        "rows_eval": int((ts.split == "eval").sum()),
    }
    rep["engine"] = {"dataset": "local", "train": "local", "evaluate": "local", "partitions": 1, "workers": 1}
    tick("evaluate", 1, 1)
    timings["evaluate"] = time.perf_counter() - t0
    return _publish(source, store_uri, opts, ts, result, rep, timings, tick)


def _unsupported(ts: dataset.TrainingSet | Any, rep: dict[str, Any]) -> Unsupported:
    """Channels and messages no training send tried (serving gives them the prior): from the training set, or
    for the Dask engine's distributed set from its report."""
    if isinstance(ts, dataset.TrainingSet):
        return Unsupported(**evaluate.unsupported(ts))
    return Unsupported(**(rep.get("ope", {}).get("unsupported") or {}))


def _publish(
    source: str | sources.Sources,
    store_uri: str,
    opts: Options,
    ts: dataset.TrainingSet | Any,  # or dask_dataset.DistributedSet (layout, levels, objective, window)
    result: train.TrainResult,
    rep: dict[str, Any],
    timings: dict[str, float],
    tick: Step,
) -> Result:
    """The model, its report and manifest into the store (whichever engine built and trained it)."""
    t0 = time.perf_counter()
    tick("publish", 0, 1)
    version = opts.version or new_version()
    layout = ts.layout
    features, categorical = list(layout.names), list(layout.categorical)
    files: dict[str, bytes] = {"model.txt": result.booster.model_to_string().encode()}
    files.update(report.plots(rep))
    rep["version"] = version
    files["report.json"] = json.dumps(_json_safe(rep), indent=2, allow_nan=False).encode()
    files["report.html"] = report.render_html(rep, title=f"Model {version}").encode()
    files["marketing.html"] = marketer_report.render_html(rep, title=f"What model {version} will do").encode()
    # Finite numbers only: a value model has no log loss (NaN), which the manifest's JSON would store as null.
    metrics = {k: float(v) for k, v in rep["metrics"].items() if isinstance(v, int | float) and np.isfinite(v)}
    manifest = Manifest(
        version=version,
        created_at=datetime.now(UTC),
        training_window=getattr(ts, "training_window", None) or _window(ts),
        features=features,
        categorical=categorical,
        schema_hash=schema_hash(features, categorical, ts.levels),
        levels=ts.levels,
        channels=list(catalogue().names),
        objective=ts.objective,
        unsupported=_unsupported(ts, rep),
        value_prior=ts.value_prior,
        attribution_window_days=ts.window_days,
        metrics=metrics,
        policy_value=evaluate.policy_value_summary(rep),
        code_version=code_version(),
        source=source_uri(source),
        config_hash=get_settings().config_hash(),
        files={
            "lightgbm": "model.txt",
            "report_json": "report.json",
            "report_html": "report.html",
            "marketing_html": "marketing.html",
            **{p[:-4]: p for p in report.PLOTS},
        },
    )
    store = ModelStore.from_uri(store_uri)
    store.publish(version, files, manifest)
    tick("publish", 1, 1)
    timings["publish"] = time.perf_counter() - t0
    return Result(version, manifest, rep, timings, store)
