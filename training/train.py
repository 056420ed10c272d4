"""LightGBM on the training set: single machine by default, or distributed on Dask (lightgbm.dask).

Both engines take the same `TrainingSet` (the same dataset code) and return a plain `lightgbm.Booster`, so
evaluation, the report and publication do not care where training ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from training.dataset import TrainingSet

DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 400,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "cat_smooth": 10.0,
    "max_cat_to_onehot": 16,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
}


def objective_params(objective: str) -> dict[str, Any]:
    if objective == "value":
        return {"objective": "tweedie", "tweedie_variance_power": 1.3, "metric": "tweedie"}
    return {"objective": "binary", "metric": "binary_logloss"}


@dataclass
class TrainResult:
    booster: lgb.Booster
    engine: str
    seconds: float
    best_iteration: int
    params: dict[str, Any] = field(default_factory=dict)
    model: str = "direct"  # what was trained, in words (the report shows it)


def _params(ts: TrainingSet, overrides: dict[str, Any] | None, threads: int) -> dict[str, Any]:
    return {**DEFAULT_PARAMS, **objective_params(ts.objective), "num_threads": threads, **(overrides or {})}


def refit_rounds(best: int, n_train: int, n_refit: int) -> int:
    """The early-stopped round count scaled to the refit's larger set (train + valid rows)."""
    return max(1, round(best * n_refit / max(1, n_train)))


def train_local(
    ts: TrainingSet,
    *,
    rounds: int = 1000,
    early_stopping: int = 50,
    threads: int = 2,
    params: dict[str, Any] | None = None,
    refit: bool = True,
) -> TrainResult:
    """Single-machine LightGBM with categorical features and early stopping on the validation part, then (with
    `refit`) a refit on train + valid at the early-stopped round count scaled to the larger set."""
    p = _params(ts, params, threads)
    x_tr, y_tr = ts.part("train")
    x_va, y_va = ts.part("valid")
    if len(y_tr) == 0:
        raise ValueError("the training part is empty: more history is needed")
    names, cats = ts.names, list(ts.layout.categorical)
    start = time.perf_counter()
    dtrain = lgb.Dataset(x_tr, y_tr, feature_name=names, categorical_feature=cats, free_raw_data=False)
    callbacks: list[Any] = []
    valid_sets = []
    if len(y_va):
        valid_sets = [lgb.Dataset(x_va, y_va, reference=dtrain, feature_name=names, categorical_feature=cats)]
        callbacks.append(lgb.early_stopping(early_stopping, verbose=False))
    booster = lgb.train(p, dtrain, num_boost_round=rounds, valid_sets=valid_sets, callbacks=callbacks)
    best = booster.best_iteration or booster.current_iteration()
    model = "direct"
    if booster.best_iteration and refit:
        # Early stopping chose the round count; the validation period is the newest training data (behaviour
        # drifts), so refit on train + valid with the rounds scaled to the larger set.
        scaled = refit_rounds(best, len(y_tr), len(y_tr) + len(y_va))
        both = lgb.Dataset(
            np.vstack([x_tr, x_va]), np.concatenate([y_tr, y_va]), feature_name=names, categorical_feature=cats
        )
        booster = lgb.train(p, both, num_boost_round=scaled)
        model, best = f"direct, refit on train + valid ({scaled} rounds)", scaled
    elif booster.best_iteration:
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    seconds = time.perf_counter() - start
    return TrainResult(booster=booster, engine="local", seconds=seconds, best_iteration=best, params=p, model=model)


def _fit(
    ts: TrainingSet, params: dict[str, Any], y: np.ndarray, train: np.ndarray, valid: np.ndarray, rounds: int, stop: int
) -> lgb.Booster:
    names, cats = ts.names, list(ts.layout.categorical)
    dtrain = lgb.Dataset(ts.X[train], y[train], feature_name=names, categorical_feature=cats, free_raw_data=False)
    callbacks: list[Any] = []
    valid_sets = []
    if valid.any():
        valid_sets = [lgb.Dataset(ts.X[valid], y[valid], reference=dtrain)]
        callbacks.append(lgb.early_stopping(stop, verbose=False))
    booster = lgb.train(params, dtrain, num_boost_round=rounds, valid_sets=valid_sets, callbacks=callbacks)
    if booster.best_iteration:
        # As train_local: the validation period is the newest data, so refit on train + valid at the early-stopped
        # round count scaled to the larger set (stopping there and never refitting leaves drift unlearned).
        both = train | valid
        scaled = refit_rounds(booster.best_iteration, int(train.sum()), int(both.sum()))
        refit = lgb.Dataset(ts.X[both], y[both], feature_name=names, categorical_feature=cats)
        booster = lgb.train(params, refit, num_boost_round=scaled)
    return booster


# Attributed counts in TrainingSet.meta, in funnel order. An open stage first, ("opens", "clicks"), was
# slower and not better on the simulator (bench/RESULTS.md).
FUNNEL_STAGES: tuple[str, ...] = ("clicks",)
# The single model distilled from the stages, fitted on their product (soft labels), on either engine.
STUDENT_PARAMS: dict[str, Any] = {"objective": "cross_entropy", "metric": "cross_entropy", "learning_rate": 0.1}
FUNNEL_MODEL = "funnel: P(click) x P(conversion | click)"
WINDOW_NO_FUNNEL = " (incremental: window outcomes with no-contact rows, no funnel)"
NO_CLICKS = "direct (the training sends have no clicks, so no funnel)"


def funnel_labels(ts: TrainingSet, stages: tuple[str, ...] = FUNNEL_STAGES) -> list[np.ndarray]:
    """0/1 label of reaching each stage, then the conversion label; a later stage implies the earlier ones.

    (A click without a logged open, e.g. on a channel without open tracking, counts as having reached the
    open stage, so the product of the stage models is still P(conversion).)
    """
    reached = [ts.y > 0]
    for name in reversed(stages):
        reached.insert(0, reached[0] | (ts.meta[name].to_numpy() > 0))
    return [r.astype(np.float64) for r in reached]


def has_clicks(ts: TrainingSet, stages: tuple[str, ...] = FUNNEL_STAGES) -> bool:
    """Whether the funnel's first stage has something to learn: training sends that reached it without
    converting (data without clicks, e.g. a campaign response table, gives the direct model)."""
    train = ts.split == "train"
    reached = np.zeros(len(ts.y), dtype=bool)
    for name in stages:
        reached |= ts.meta[name].to_numpy() > 0
    return bool((reached & (ts.y <= 0) & train).any())


def train_funnel(
    ts: TrainingSet,
    *,
    rounds: int = 1000,
    early_stopping: int = 50,
    threads: int = 2,
    params: dict[str, Any] | None = None,
    stages: tuple[str, ...] = FUNNEL_STAGES,
) -> TrainResult:
    """Conversion model distilled from a funnel: P(click) x P(conversion | click) (stages: see FUNNEL_STAGES).

    Clicks (and opens) are many times more frequent than conversions, so the funnel's first stages learn the
    engagement effects (channel affinity, hour, day, message, fatigue) from far more positives; the last
    stage learns what converts once engaged. A single student model is then fitted (cross-entropy on the
    funnel's probabilities) so that scoring still loads one LightGBM model.
    """
    if ts.objective != "conversion":
        raise ValueError("the funnel model applies to the conversion objective only")
    if ts.labels == "window":
        # Window outcomes count conversions whatever caused them; a click stage would credit the contact.
        result = train_local(ts, rounds=rounds, early_stopping=early_stopping, threads=threads, params=params)
        result.model += WINDOW_NO_FUNNEL
        return result
    if not has_clicks(ts, stages):
        result = train_local(ts, rounds=rounds, early_stopping=early_stopping, threads=threads, params=params)
        result.model = NO_CLICKS
        return result
    p = _params(ts, params, threads)
    train, valid = ts.split == "train", ts.split == "valid"
    start = time.perf_counter()
    fit_rows = train | valid
    rows = ts.X[fit_rows]
    soft = np.zeros(len(ts.y))
    soft[fit_rows] = 1.0
    given = np.ones(len(ts.y), dtype=bool)
    for label in funnel_labels(ts, stages):
        stage = _fit(ts, p, label, train & given, valid & given, rounds, early_stopping)
        soft[fit_rows] *= predict(stage, rows)
        given &= label > 0
    student_params = {**p, **STUDENT_PARAMS}
    booster = _fit(ts, student_params, soft, train, valid, rounds, early_stopping)
    seconds = time.perf_counter() - start
    return TrainResult(booster, "local-funnel", seconds, booster.current_iteration(), student_params, FUNNEL_MODEL)


def train_dask(
    ts: TrainingSet,
    scheduler: str | Any,
    *,
    rounds: int = 1000,
    early_stopping: int = 50,
    chunk_rows: int | None = None,
    params: dict[str, Any] | None = None,
) -> TrainResult:
    """The same model on a Dask cluster (`scheduler`: an address, or a distributed.Client), from rows in memory.

    The rows go to the workers as dask arrays; each worker trains on its partitions and LightGBM's network
    layer syncs histograms. Early stopping watches the validation part, like the local engine.
    """
    import dask.array as da
    from distributed import Client

    client_cls: Any = Client
    from_array: Any = da.from_array
    client: Any = scheduler if isinstance(scheduler, Client) else client_cls(scheduler)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        x_tr, y_tr = ts.part("train")
        x_va, y_va = ts.part("valid")
        rows = chunk_rows or max(1000, -(-len(y_tr) // n_workers))
        vrows = max(1000, -(-len(y_va) // n_workers))
        train = (from_array(x_tr, chunks=(rows, x_tr.shape[1])), from_array(y_tr, chunks=(rows,)))
        valid = None
        if len(y_va):
            valid = (from_array(x_va, chunks=(vrows, x_va.shape[1])), from_array(y_va, chunks=(vrows,)))
        return fit_dask(
            client, train, valid, ts.names, list(ts.layout.categorical), ts.objective, rounds, early_stopping, params
        )
    finally:
        if client is not scheduler:
            client.close()


def fit_dask(
    client: Any,
    train: tuple[Any, Any],
    valid: tuple[Any, Any] | None,
    names: list[str],
    categorical: list[str],
    objective: str,
    rounds: int,
    early_stopping: int,
    params: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> TrainResult:
    """lightgbm.dask on rows that are already dask arrays (X, y) on the cluster; `valid` drives early stopping.
    `base`: the parameters `params` override (default DEFAULT_PARAMS)."""
    start_params = DEFAULT_PARAMS if base is None else base
    p = {**start_params, **objective_params(objective), "num_threads": 1, **(params or {})}
    kwargs: dict[str, Any] = {}
    fit_kwargs: dict[str, Any] = {"feature_name": names, "categorical_feature": categorical}
    if valid is not None:
        fit_kwargs["eval_X"] = (valid[0],)
        fit_kwargs["eval_y"] = (valid[1],)
        kwargs["early_stopping_round"] = early_stopping
    # binary: the classifier; tweedie, and cross_entropy on soft labels (the funnel's student): a regressor
    # keeping its objective (its booster still predicts probabilities)
    classifier = p.get("objective") == "binary"
    est_cls = lgb.DaskLGBMClassifier if classifier else lgb.DaskLGBMRegressor
    model_params = {k: v for k, v in p.items() if k not in ("num_threads", "metric")}
    if classifier:
        model_params.pop("objective", None)
    est = est_cls(client=client, n_estimators=rounds, **model_params, **kwargs)
    start = time.perf_counter()
    est.fit(train[0], train[1], **fit_kwargs)
    seconds = time.perf_counter() - start
    booster = est.booster_
    best = booster.best_iteration or booster.current_iteration()
    if booster.best_iteration:
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return TrainResult(booster=booster, engine="dask", seconds=seconds, best_iteration=best, params=p)


# A partition's own target instead of its `y`: (label per row, the rows it applies to), computed on the worker.
Target = tuple[np.ndarray, np.ndarray] | None


def _rows(
    ts: TrainingSet | None, splits: str | tuple[str, ...], width: int, target: Target = None
) -> tuple[np.ndarray, np.ndarray]:
    if ts is None:
        return np.zeros((0, width), dtype=np.float32), np.zeros(0)
    rows = np.isin(ts.split, [splits] if isinstance(splits, str) else list(splits))
    if target is None:
        return ts.X[rows], ts.y[rows]
    y, keep = target
    rows &= keep
    return ts.X[rows], y[rows]


def validation_loss(ts: TrainingSet | None, booster: lgb.Booster, target: Target = None) -> np.ndarray:
    """Summed validation loss of one partition's rows after each boosting round (log loss, also the
    cross-entropy of soft labels; Tweedie deviance for the value objective): the driver adds the partitions'
    curves and early-stops on the sum."""
    rounds = booster.current_iteration()
    if ts is None:
        return np.zeros(rounds)
    x, y = _rows(ts, "valid", ts.X.shape[1], target)
    raw = np.zeros(len(y))
    out = np.zeros(rounds)
    if len(y) == 0:
        return out
    for i in range(rounds):
        raw += np.asarray(booster.predict(x, raw_score=True, start_iteration=i, num_iteration=1, num_threads=1))
        if ts.objective == "value":
            rho = 1.3  # objective_params: tweedie_variance_power
            out[i] = float(np.sum(-y * np.exp((1 - rho) * raw) / (1 - rho) + np.exp((2 - rho) * raw) / (2 - rho)))
        else:
            p = np.clip(1.0 / (1.0 + np.exp(-raw)), 1e-12, 1 - 1e-12)
            out[i] = float(-np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return out


def _fit_parts(
    dset: Any,
    client: Any,
    targets: list[Any] | None,
    rounds: int,
    early_stopping: int,
    params: dict[str, Any] | None,
) -> TrainResult:
    """lightgbm.dask on every partition's train rows (`targets`: per part, a Delayed `Target`, else the
    partition's own labels), the booster cut at the round of lowest summed validation loss."""
    from training.dask_cluster import compute, delayed, stacked

    width = len(dset.names)
    parts = list(dset.parts)
    per_part: list[Any] = targets if targets is not None else [None] * len(parts)
    if targets is None:
        counted = [(r["train"], r["valid"]) for r in dset.rows]
    else:  # a later funnel stage keeps only the rows that reached the previous ones
        counted = list(compute(*[delayed(_counts)(p, t) for p, t in zip(parts, per_part, strict=True)]))
    train_rows, valid_rows = [c[0] for c in counted], sum(c[1] for c in counted)
    blocks = [
        (delayed(_rows, nout=2)(part, ("train",), width, target), n)
        for part, target, n in zip(parts, per_part, train_rows, strict=True)
        if n
    ]
    if not blocks:
        raise ValueError("the training part is empty: more history is needed")
    result = fit_dask(
        client,
        stacked(blocks, width),
        None,
        dset.names,
        list(dset.layout.categorical),
        dset.objective,
        rounds,
        early_stopping,
        params,
    )
    if valid_rows == 0:
        return result
    booster = client.scatter(result.booster, broadcast=True)
    curves = compute(*[delayed(validation_loss)(p, booster, t) for p, t in zip(parts, per_part, strict=True)])
    loss = np.sum(curves, axis=0)
    best = 0
    for i in range(1, len(loss)):
        if i - best > early_stopping:
            break
        if loss[i] < loss[best]:
            best = i
    # As train_local: refit on train + valid (the newest period) at the chosen round count scaled to the larger set.
    scaled = refit_rounds(best + 1, sum(train_rows), sum(train_rows) + valid_rows)
    both = [
        (delayed(_rows, nout=2)(part, ("train", "valid"), width, target), c[0] + c[1])
        for part, target, c in zip(parts, per_part, counted, strict=True)
        if c[0] + c[1]
    ]
    refit = fit_dask(
        client, stacked(both, width), None, dset.names, list(dset.layout.categorical), dset.objective, scaled, 0, params
    )
    refit.best_iteration, refit.seconds = scaled, result.seconds + refit.seconds
    return refit


def _counts(ts: TrainingSet | None, target: Target) -> tuple[int, int]:
    if ts is None or target is None:
        return 0, 0
    keep = target[1]
    return int((keep & (ts.split == "train")).sum()), int((keep & (ts.split == "valid")).sum())


def train_distributed(
    dset: Any,
    client: Any,
    *,
    rounds: int = 1000,
    early_stopping: int = 50,
    params: dict[str, Any] | None = None,
) -> TrainResult:
    """lightgbm.dask on a training set built on the cluster (training/dask_dataset.py: `DistributedSet`): each
    partition's rows become one block of the dask arrays where they already are, never gathered.

    Early stopping: lightgbm.dask judges a validation set per worker, and workers that stop at different rounds
    break its network (connection reset). So the rounds are trained in full, every partition returns its
    validation loss after each round, and the booster is cut at the round where the summed loss is lowest
    (when no better round followed within `early_stopping` rounds, as LightGBM's callback would stop)."""
    result = _fit_parts(dset, client, None, rounds, early_stopping, params)
    if dset.count("valid"):
        result.model = (
            "direct, early-stopped on the summed validation loss, refit on train + valid"
            f" ({result.best_iteration} rounds)"
        )
    return result


def _stage_target(ts: TrainingSet | None, stage: int, stages: tuple[str, ...]) -> Target:
    """Funnel stage `stage`'s label (`funnel_labels`) and its rows: those that reached the stages before."""
    if ts is None:
        return None
    labels = funnel_labels(ts, stages)
    given = np.ones(len(ts.y), dtype=bool)
    for label in labels[:stage]:
        given &= label > 0
    return labels[stage], given


def _soft_target(ts: TrainingSet | None, boosters: list[lgb.Booster]) -> Target:
    """The student's soft labels: the product of the stage models' predictions on the train + valid rows."""
    if ts is None:
        return None
    fit = (ts.split == "train") | (ts.split == "valid")
    soft = np.zeros(len(ts.y))
    soft[fit] = 1.0
    for booster in boosters:
        soft[fit] *= np.asarray(booster.predict(ts.X[fit], num_threads=1))
    return soft, fit


def _has_clicks(ts: TrainingSet | None, stages: tuple[str, ...]) -> bool:
    return ts is not None and has_clicks(ts, stages)


def train_distributed_funnel(
    dset: Any,
    client: Any,
    *,
    rounds: int = 1000,
    early_stopping: int = 50,
    params: dict[str, Any] | None = None,
    stages: tuple[str, ...] = FUNNEL_STAGES,
) -> TrainResult:
    """`train_funnel` on a training set built on the cluster: each stage, then the student, is fitted with
    lightgbm.dask on the partitions' rows and cut like `train_distributed`; the stage labels and the soft labels
    are computed per partition on the workers. Window labels and data without clicks give the direct model."""
    from training.dask_cluster import compute, delayed

    if dset.objective != "conversion":
        raise ValueError("the funnel model applies to the conversion objective only")
    if dset.labels == "window":
        result = train_distributed(dset, client, rounds=rounds, early_stopping=early_stopping, params=params)
        result.model += WINDOW_NO_FUNNEL
        return result
    if not any(compute(*[delayed(_has_clicks)(part, stages) for part in dset.parts])):
        result = train_distributed(dset, client, rounds=rounds, early_stopping=early_stopping, params=params)
        result.model = NO_CLICKS
        return result
    start = time.perf_counter()
    boosters: list[lgb.Booster] = []
    for stage in range(len(stages) + 1):
        targets = [delayed(_stage_target)(part, stage, stages) for part in dset.parts]
        boosters.append(_fit_parts(dset, client, targets, rounds, early_stopping, params).booster)
    shared = client.scatter([boosters], broadcast=True)[0]  # one object: the list of stage boosters
    soft = client.persist([delayed(_soft_target)(part, shared) for part in dset.parts])
    student = {**(params or {}), **STUDENT_PARAMS}
    result = _fit_parts(dset, client, soft, rounds, early_stopping, student)
    result.engine = "dask-funnel"
    result.seconds = time.perf_counter() - start
    result.model = (
        f"{FUNNEL_MODEL}, each model early-stopped on the summed validation loss and refit on train + valid"
        f" (student: {result.best_iteration} rounds)"
    )
    return result


def predict(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    return np.asarray(booster.predict(x, num_threads=2))
