"""The training set built on Dask: the same per-customer code as `dataset.build`, run per partition.

The source arrives partitioned by customer hash (training/sources.py: `read_partitioned`), so every partition
holds whole customers and the replay, labels and contexts of one partition need no other. What does need every
partition is computed first, from small per-partition summaries: the end of the log, the message levels (send
counts summed), the temporal split's cut-offs (exact distributed quantiles of the send times,
training/dask_quantile.py) and the hash cut that samples at most N held-out decisions. Each partition's
`TrainingSet` then stays on its worker (persisted); the driver keeps only counts and statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from model.domain.features import FeatureLayout
from model.domain.recommend_schemas import NONE_CHANNEL
from model.domain.settings import get_settings
from model.domain.value import ValuePrior
from training import dataset, sources, value_prior
from training.dask_cluster import compute, delayed
from training.dask_quantile import order_statistic, quantile
from training.labels import OBJECTIVE_EVENT
from training.records import normalise_touchpoints
from training.split import Split, choose_split, hash_share, trains_before

SPLITS = ("train", "valid", "eval")


@dataclass
class DistributedSet:
    """A training set whose rows stay on the workers: one persisted `TrainingSet` per partition."""

    parts: list[Any]  # Delayed -> dataset.TrainingSet, one per non-empty partition, persisted on the cluster
    rows: list[dict[str, int]]  # per part: rows per split
    layout: FeatureLayout
    levels: dict[str, list[str]]
    objective: str
    window_days: float
    labels: dataset.Labels
    period: tuple[datetime, datetime]
    training_window: tuple[datetime, datetime]
    partitions: int
    stats: dict[str, float] = field(default_factory=dict)
    value_prior: ValuePrior | None = None  # the order-value prior (training/value_prior.py)

    @property
    def names(self) -> list[str]:
        return list(self.layout.names)

    @property
    def no_contact(self) -> bool:
        return NONE_CHANNEL in self.levels.get("channel", [])

    def count(self, split: str) -> int:
        return sum(r[split] for r in self.rows)


# --- per-partition steps (run on the workers) --------------------------------------------------------------


def _normalised(frame: Any) -> pl.DataFrame:
    return normalise_touchpoints(sources.partition_table(frame))


def _table(frame: Any | None) -> Any:
    return sources.partition_table(frame) if frame is not None else None


def _ts_range(tp: pl.DataFrame) -> tuple[float, float]:
    if tp.height == 0:
        return np.inf, -np.inf
    return float(tp["ts"].min()), float(tp["ts"].max())  # type: ignore[arg-type]


def _sends(tp: pl.DataFrame, decisions: Any | None, window: float, labels: dataset.Labels, end: float) -> Any:
    if tp.height == 0:
        return None, 0, 0
    labelled, quiet = dataset.label_sends(tp, _table(decisions), window, labels)
    return dataset.censor(labelled, window, end), labelled.height, quiet


def _message_counts(prepared: Any) -> pl.DataFrame:
    sends = prepared[0]
    if sends is None:
        return pl.DataFrame(schema={"message_id": pl.String, "len": pl.UInt32})
    return dataset.message_counts(sends)


def _send_times(prepared: Any) -> np.ndarray:
    return np.zeros(0) if prepared[0] is None else prepared[0]["send_ts"].to_numpy()


def _train_times(prepared: Any, eval_start: float, window: float) -> np.ndarray:
    ts = _send_times(prepared)
    return np.asarray(ts[trains_before(ts, eval_start, window)])


def _split(
    prepared: Any,
    split: Split,
    cutoffs: tuple[float, float | None] | None,
    window: float,
    eval_fraction: float,
    valid_fraction: float,
) -> np.ndarray:
    sends = prepared[0]
    if sends is None:
        return np.zeros(0, dtype=object)
    return choose_split(sends, split, eval_fraction, window, valid_fraction, cutoffs)


def _quiet(prepared: Any) -> int:
    return int(prepared[2])


def _eval_shares(prepared: Any, part: np.ndarray) -> np.ndarray:
    sends = prepared[0]
    if sends is None:
        return np.zeros(0)
    ids = sends.filter(pl.Series(part == "eval"))["decision_id"].unique()
    return hash_share(ids)


def _assemble(
    tp: pl.DataFrame, prepared: Any, part: np.ndarray, profiles: Any | None, settings: dict[str, Any]
) -> dataset.TrainingSet | None:
    sends, n_labelled, quiet = prepared
    if sends is None or sends.height == 0 or not (part != "purged").any():
        return None
    return dataset.assemble(
        tp,
        sends,
        part,
        _table(profiles),
        counts={"sends": n_labelled, "no_contact_rows": quiet},
        workers=1,  # a Dask worker is the unit of parallelism (and may not fork)
        **settings,
    )


def _first_held_out(prepared: Any, part: np.ndarray) -> float:
    sends = prepared[0]
    held = part == "eval"
    return float(sends["send_ts"].to_numpy()[held].min()) if sends is not None and held.any() else float("inf")


def _value_stats(
    tp: pl.DataFrame, prepared: Any, part: np.ndarray, profiles: Any | None, split: Split, eval_start: float | None
) -> pl.DataFrame:
    """The partition's per-customer conversion statistics for the order-value prior (training/value_prior.py)."""
    sends = prepared[0]
    if sends is None:
        return pl.DataFrame()
    before, exclude = value_prior.learnable(sends, part, split, eval_start)
    return value_prior.customer_stats(tp, before, exclude, _table(profiles))


def _summary(ts: dataset.TrainingSet | None) -> dict[str, Any]:
    if ts is None:
        return {"rows": dict.fromkeys((*SPLITS, "train_positives"), 0), "stats": {}, "fit": (np.inf, -np.inf)}
    fit = ts.meta["send_ts"].to_numpy()[np.isin(ts.split, ["train", "valid"])]
    train = ts.split == "train"
    return {
        "rows": {s: int((ts.split == s).sum()) for s in SPLITS} | {"train_positives": int((ts.y[train] > 0).sum())},
        "stats": ts.stats,
        "fit": (float(fit.min()), float(fit.max())) if len(fit) else (np.inf, -np.inf),
    }


# --- the build -----------------------------------------------------------------------------------------------


def build(
    client: Any,
    src: sources.PartitionedSources,
    *,
    objective: dataset.Objective = "conversion",
    window_days: float | None = None,
    split: Split = "temporal",
    eval_fraction: float = 0.2,
    valid_fraction: float = 0.15,
    max_contexts: int = 5000,
    as_of: float | None = None,
    labels: dataset.Labels | None = None,
) -> DistributedSet:
    """The training set of `dataset.build`, partition by partition on the cluster behind `client`."""
    if objective not in OBJECTIVE_EVENT:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVE_EVENT)}")
    if labels is None or objective in ("click", "visit"):
        labels = "attributed"
    window = float(window_days if window_days is not None else get_settings().attribution_window_days)
    layout = dataset.layout_from_settings()

    def frames(frame: Any | None) -> list[Any]:
        return list(frame.to_delayed()) if frame is not None else [None] * src.partitions

    tps = client.persist([delayed(_normalised)(f) for f in frames(src.touchpoints)])
    ranges = compute(*[delayed(_ts_range)(t) for t in tps])
    first = min(r[0] for r in ranges)
    if not np.isfinite(first):
        raise ValueError("no usable touchpoints (known channels and event types) in the source")
    end = float(as_of if as_of is not None else max(r[1] for r in ranges))
    decisions, profiles = frames(src.decisions), frames(src.profiles)
    prepared = client.persist([delayed(_sends)(t, d, window, labels, end) for t, d in zip(tps, decisions, strict=True)])

    counts = [c for c in compute(*[delayed(_message_counts)(p) for p in prepared]) if c.height]
    summed = pl.concat(counts).group_by("message_id").agg(pl.col("len").sum()) if counts else None
    levels = dataset.feature_levels(layout, dataset.top_messages(summed) if summed is not None else [])
    times = [delayed(_send_times)(p) for p in prepared]
    n_sends = sum(compute(*[delayed(len)(t) for t in times]))
    if n_sends == 0:
        raise ValueError("no send has a complete attribution window: the log is too short or too recent")
    quiet_rows = sum(compute(*[delayed(_quiet)(p) for p in prepared]))
    if quiet_rows:
        levels["channel"] = [*levels["channel"], NONE_CHANNEL]

    cutoffs: tuple[float, float | None] | None = None
    if split == "temporal":
        eval_start = quantile(times, 1.0 - eval_fraction)
        train_times = [delayed(_train_times)(p, eval_start, window) for p in prepared]
        n_train = sum(compute(*[delayed(len)(t) for t in train_times]))
        cutoffs = (eval_start, quantile(train_times, 1.0 - valid_fraction) if n_train else None)
    # the customer split needs no cut-off: a customer's hash share decides, in whichever partition
    parts_split = [delayed(_split)(p, split, cutoffs, window, eval_fraction, valid_fraction) for p in prepared]
    parts_split = client.persist(parts_split)

    shares = [delayed(_eval_shares)(p, s) for p, s in zip(prepared, parts_split, strict=True)]
    n_eval = sum(compute(*[delayed(len)(s) for s in shares]))
    context_share = order_statistic(shares, max_contexts - 1) if n_eval > max_contexts else None

    # The order-value prior: one row per converting customer from each partition, fitted once here; the temporal
    # split's cut is the first held-out send over every partition, as the local build's.
    first_held = min(compute(*[delayed(_first_held_out)(p, s) for p, s in zip(prepared, parts_split, strict=True)]))
    value_stats = [
        delayed(_value_stats)(t, p, s, f, split, first_held if split == "temporal" else None)
        for t, p, s, f in zip(tps, prepared, parts_split, profiles, strict=True)
    ]
    prior = value_prior.fit(list(compute(*value_stats)))
    settings = {
        "prior": prior,
        "objective": objective,
        "labels": labels,
        "window": window,
        "levels": levels,
        "layout": layout,
        "max_contexts": max_contexts,
        "period": (first, end),
        "context_share": context_share,
    }
    built = [
        delayed(_assemble)(t, p, s, f, settings)
        for t, p, s, f in zip(tps, prepared, parts_split, profiles, strict=True)
    ]
    built = client.persist(built)
    summaries = compute(*[delayed(_summary)(b) for b in built])
    keep = [i for i, s in enumerate(summaries) if sum(s["rows"].values())]
    stats: dict[str, float] = {}
    for s in summaries:
        for key, value in s["stats"].items():
            stats[key] = stats.get(key, 0.0) + float(value)
    fit_lo = min((s["fit"][0] for s in summaries), default=np.inf)
    fit_hi = max((s["fit"][1] for s in summaries), default=-np.inf)
    period = (datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(end, UTC))
    return DistributedSet(
        parts=[built[i] for i in keep],
        rows=[summaries[i]["rows"] for i in keep],
        layout=layout,
        levels=levels,
        objective=objective,
        window_days=window,
        labels=labels,
        period=period,
        training_window=(datetime.fromtimestamp(fit_lo, UTC), datetime.fromtimestamp(fit_hi, UTC))
        if np.isfinite(fit_lo)
        else period,
        partitions=src.partitions,
        stats=stats,
        value_prior=prior,
    )
