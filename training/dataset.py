"""The point-in-time training set: one row per outbound send, features from the state JUST BEFORE the send.

This module assembles the stages: normalised inputs (training/records.py), labels (training/labels.py), the
split (training/split.py), the replay of the online fold (training/replay.py) and the evaluation contexts
(training/ope/contexts.py). Columnar work runs in polars; the only Python loop is the replay.

Labels (training/labels.py): an open / click / visit goes to the send whose decision it quotes, else to the
customer's latest send strictly before it, on any channel, if it falls within the attribution window after that
send; a conversion to the send of the latest click before it, else the latest send (last touch). The
label of a send is whether it got an attributed event of the objective's type (`value`: the attributed
conversion value). Sends whose window is not over by the end of the log are censored (dropped), not negative.

Split: temporal by default (train on the older sends, evaluate on the newest; the training sends whose
window reaches into the evaluation period are purged); `customer` puts a stable hash share of customers in
evaluation instead. Evaluation decisions that quote a logged `decision_id` also get their candidate grid
(channel x hourly slot x message) computed at decision time, for the off-policy and oracle evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

from model.domain.aggregate import SENT
from model.domain.catalogue import catalogue
from model.domain.features import FeatureLayout
from model.domain.objective import Objective, realised_value
from model.domain.recommend_schemas import NONE_CHANNEL
from model.domain.settings import get_settings
from model.domain.value import ValuePrior
from training import value_prior
from training.labels import OBJECTIVE_EVENT, attribute, window_outcomes
from training.ope.contexts import ContextBuilder, Contexts
from training.records import no_contact_decisions, normalise_decisions, normalise_touchpoints, profiles_map
from training.replay import MARKER, NO_CONTACT, ROW, replay
from training.split import Split, choose_split, hash_share

Labels = Literal["window", "attributed"]
__all__ = ["Contexts", "Labels", "Objective", "Split", "TrainingSet", "build", "feature_levels", "layout_from_settings"]
MAX_MESSAGES = 50
DAY = 86400.0
Progress = Callable[[int, int], None]


def layout_from_settings() -> FeatureLayout:
    return FeatureLayout(tuple(get_settings().profile_attributes))


def feature_levels(layout: FeatureLayout, messages: list[str]) -> dict[str, list[str]]:
    """Levels of every categorical feature, keyed by feature name (what the manifest records)."""
    levels: dict[str, list[str]] = {"channel": list(catalogue().names), "message": list(messages)}
    for spec in layout.attributes:
        if spec.kind == "categorical":
            levels[f"attr_{spec.name}"] = list(spec.levels)
    return levels


@dataclass
class TrainingSet:
    layout: FeatureLayout
    levels: dict[str, list[str]]
    objective: str
    window_days: float
    X: np.ndarray  # [n, F] float32, columns = layout.names
    y: np.ndarray  # [n] label (0/1, or value for the value objective)
    meta: pl.DataFrame  # per row: send_id, customer_id, send_ts, ch, message_id, decision_id, propensity, ...
    split: np.ndarray  # [n] "train" / "valid" / "eval"
    contexts: Contexts | None
    period: tuple[datetime, datetime]
    stats: dict[str, float] = field(default_factory=dict)
    labels: Labels = "attributed"  # "window": outcome within the window after each decision (incremental)
    value_prior: ValuePrior | None = None  # the order-value prior learned from the training period

    @property
    def no_contact(self) -> bool:
        """Whether the model learns the "don't contact" action too (logged no-send decisions were rows)."""
        return NONE_CHANNEL in self.levels.get("channel", [])

    @property
    def names(self) -> list[str]:
        return list(self.layout.names)

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        mask = self.split == name
        return self.X[mask], self.y[mask]


def build(
    touchpoints: pa.Table | pl.DataFrame,
    profiles: pa.Table | pl.DataFrame | None = None,
    decisions: pa.Table | pl.DataFrame | None = None,
    *,
    objective: Objective = "conversion",
    window_days: float | None = None,
    split: Split = "temporal",
    eval_fraction: float = 0.2,
    valid_fraction: float = 0.15,
    max_contexts: int = 5000,
    as_of: float | None = None,
    message_levels: list[str] | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    labels: Labels | None = None,
) -> TrainingSet:
    """Build the training set (see the module docstring for the rules).

    `labels`: "attributed" (the default; always for click and visit, whose outcomes only a contact causes)
    labels a send with what last-click attribution credits it; "window" labels every row with the customer's
    outcome within the window after the decision and adds the logged "don't contact" decisions as rows of the
    action none, so the model learns incremental value (measured weaker on the simulator so far: see
    docs/decisions.md section 11 and bench/RESULTS.md).
    """
    if objective not in OBJECTIVE_EVENT:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVE_EVENT)}")
    if labels is None or objective in ("click", "visit"):
        labels = "attributed"
    settings = get_settings()
    window = float(window_days if window_days is not None else settings.attribution_window_days)
    layout = layout_from_settings()

    tp = normalise_touchpoints(touchpoints)
    if tp.height == 0:
        raise ValueError("no usable touchpoints (known channels and event types) in the source")
    end = float(as_of if as_of is not None else tp["ts"].max())  # type: ignore[arg-type]
    labelled, quiet_rows = label_sends(tp, decisions, window, labels)
    sends = censor(labelled, window, end)
    if sends.height == 0:
        raise ValueError("no send has a complete attribution window: the log is too short or too recent")
    if message_levels is None:
        message_levels = top_messages(message_counts(sends))
    levels = feature_levels(layout, message_levels)
    if quiet_rows:
        levels["channel"] = [*levels["channel"], NONE_CHANNEL]  # the model also learns p(outcome | x, none)
    part = choose_split(sends, split, eval_fraction, window, valid_fraction)
    before, exclude = value_prior.learnable(sends, part, split)
    prior = value_prior.fit(value_prior.customer_stats(tp, before, exclude, profiles))
    return assemble(
        tp,
        sends,
        part,
        profiles,
        objective=objective,
        labels=labels,
        window=window,
        levels=levels,
        layout=layout,
        max_contexts=max_contexts,
        period=(float(tp["ts"].min()), end),  # type: ignore[arg-type]
        counts={"sends": labelled.height, "no_contact_rows": quiet_rows},
        progress=progress,
        workers=workers,
        prior=prior,
    )


def label_sends(
    tp: pl.DataFrame, decisions: pa.Table | pl.DataFrame | None, window: float, labels: Labels
) -> tuple[pl.DataFrame, int]:
    """Every send (and, with window labels, every logged "don't contact" decision) with its logged decision and
    outcome counts, before censoring; and how many "don't contact" rows there are. Works on any set of whole
    customers (the Dask engine calls it per partition)."""
    n_ch = len(catalogue())
    credited = attribute(tp, window)
    dec = normalise_decisions(decisions)
    sends = (
        tp.filter(pl.col("ev") == SENT)
        .select(
            pl.col("event_id").alias("send_id"),
            "customer_id",
            pl.col("ts").alias("send_ts"),
            "ch",
            "channel",
            "message_id",
            "decision_id",
        )
        .join(credited, on="send_id", how="left")
        .with_columns(
            pl.col("opens", "clicks", "visits", "conversions").fill_null(0), pl.col("conv_value").fill_null(0.0)
        )
        .join(dec, on="decision_id", how="left")
        # A send without a logged decision is evaluated as if decided half an hour before its send hour (its
        # propensity is unknown, so it counts for the oracle's exact values but not for IPS/SNIPS).
        .with_columns(
            pl.col("decision_id").fill_null(pl.col("send_id")),
            pl.col("decided_at").fill_null((pl.col("send_ts") / 3600).floor() * 3600 - 1800),
            pl.col("send_at").fill_null((pl.col("send_ts") / 3600).floor() * 3600),
        )
    )
    quiet = no_contact_decisions(decisions) if labels == "window" else no_contact_decisions(None)
    if quiet.height:
        # Logged "don't contact" decisions (holdout, no-send) are rows too: the action "none", code n_ch.
        sends = pl.concat(
            [
                sends,
                quiet.select(
                    pl.col("decision_id").alias("send_id"),
                    "customer_id",
                    pl.col("decided_at").alias("send_ts"),
                    pl.lit(n_ch, dtype=pl.Int32).alias("ch"),
                    pl.lit(NONE_CHANNEL).alias("channel"),
                    pl.lit(None, dtype=pl.String).alias("message_id"),
                    "decision_id",
                    pl.lit(0).alias("opens"),
                    pl.lit(0).alias("clicks"),
                    pl.lit(0).alias("visits"),
                    pl.lit(0).alias("conversions"),
                    pl.lit(0.0).alias("conv_value"),
                    "decided_at",
                    "propensity",
                    "policy",
                    pl.lit(None, dtype=pl.Float64).alias("send_at"),
                ),
            ],
            how="diagonal_relaxed",
        )
    if labels == "window":
        # Conversions and value within the window after the DECISION, whatever their attribution, for sends
        # and "don't contact" rows alike (see training/labels.py: window_outcomes).
        sends = sends.with_row_index("row_id")
        outcome = window_outcomes(
            sends.select("row_id", "customer_id", pl.col("decided_at").alias("start")), tp, window
        )
        sends = (
            sends.drop("conversions", "conv_value")
            .join(outcome, on="row_id", how="left")
            .with_columns(pl.col("conversions").fill_null(0), pl.col("conv_value").fill_null(0.0))
            .drop("row_id")
        )
    return sends, quiet.height


def censor(sends: pl.DataFrame, window: float, end: float) -> pl.DataFrame:
    """The sends whose attribution window is over by `end` (the others are censored, not negative), sorted."""
    return sends.filter(pl.col("send_ts") + window * DAY <= end).sort("customer_id", "send_ts", "send_id")


def message_counts(sends: pl.DataFrame) -> pl.DataFrame:
    """Sends per message id (summed over partitions by the Dask engine)."""
    return sends.filter(pl.col("message_id").is_not_null()).group_by("message_id").len()


def top_messages(counts: pl.DataFrame) -> list[str]:
    """The message levels: the MAX_MESSAGES most sent messages (ties by id)."""
    top = counts.sort(["len", "message_id"], descending=[True, False]).head(MAX_MESSAGES)
    return [str(m) for m in top["message_id"].to_list()]


def _markers(frame: pl.DataFrame, at: pl.Expr, id_col: str, kind: int, *extra: str | pl.Expr) -> pl.DataFrame:
    """Replay-stream entries that are not touchpoints (never folded): decision markers and training rows, taken
    at instant `at` before anything at that instant is folded (rank 0)."""
    return frame.select(
        "customer_id",
        at.alias("ts"),
        pl.col(id_col).alias("event_id"),
        "ch",
        pl.lit(kind, dtype=pl.Int32).alias("ev"),
        pl.lit(0.0).alias("value"),
        pl.lit(0).alias("rank"),
        *extra,
    )


def assemble(
    tp: pl.DataFrame,
    sends: pl.DataFrame,
    part: np.ndarray,
    profiles: pa.Table | pl.DataFrame | None,
    *,
    objective: Objective,
    labels: Labels,
    window: float,
    levels: dict[str, list[str]],
    layout: FeatureLayout,
    max_contexts: int,
    period: tuple[float, float],
    counts: dict[str, int],
    progress: Progress | None = None,
    workers: int | None = None,
    context_share: float | None = None,
    prior: ValuePrior | None = None,
) -> TrainingSet:
    """Rows, labels and evaluation contexts of censored, split sends (whole customers: the Dask engine calls it
    per partition). Held-out decisions: at most `max_contexts`, those with the smallest id hash share; with
    `context_share`, those whose share is at most that (the global cut the Dask engine computes). `prior`: the
    order-value prior (training/value_prior.py) the contexts' value estimates use, as serving does."""
    settings = get_settings()
    costs = np.array([settings.cost_of(n) for n in catalogue().names])
    n_ch = len(catalogue())
    keep = part != "purged"
    sends = sends.filter(pl.Series(keep))
    part = part[keep]
    sends = sends.with_columns(pl.Series("row", np.arange(sends.height), dtype=pl.Int64))

    ev_name = OBJECTIVE_EVENT[objective]
    count_col = {"clicked": "clicks", "visited": "visits", "converted": "conversions"}[ev_name]
    y = (
        sends["conv_value"].to_numpy().astype(np.float64)
        if objective == "value"
        else (sends[count_col].to_numpy() > 0).astype(np.float64)
    )

    # Held-out decisions to evaluate policies on: logged decision id + propensity, a sample of at most N.
    eval_dec = sends.filter(pl.Series(part == "eval"))
    eval_dec = eval_dec.unique(subset="decision_id", keep="first")
    if context_share is not None:
        eval_dec = eval_dec.filter(pl.Series(hash_share(eval_dec["decision_id"]) <= context_share))
    elif eval_dec.height > max_contexts:
        share = hash_share(eval_dec["decision_id"])
        eval_dec = eval_dec.with_columns(pl.Series("_h", share)).sort("_h").head(max_contexts).drop("_h")
    eval_dec = eval_dec.sort("customer_id", "decided_at")

    # One stream per customer, by time: decision markers, training rows and "don't contact" rows (rank 0: taken
    # before anything at their instant is folded), sends (1), other events (2). A send's row is taken at its
    # DECISION instant, as serving scores the logged action at request time: the customer's and channel's
    # history as of the decision, the action's slot (the grid's: the send's full UTC hour, which is :30 local in a
    # half-hour zone) and message (training-serving parity).
    stream = pl.concat(
        [
            tp.select(
                "customer_id",
                "ts",
                "event_id",
                "ch",
                "ev",
                "value",
                pl.when(pl.col("ev") == SENT).then(1).otherwise(2).alias("rank"),
            ),
            _markers(eval_dec, pl.col("decided_at"), "decision_id", MARKER),
            _markers(
                sends.filter(pl.col("ch") < n_ch),
                pl.min_horizontal("decided_at", "send_ts"),  # a decision logged after its send: the send
                "send_id",
                ROW,
                "row",
                "message_id",
                ((pl.col("send_ts") / 3600).floor() * 3600).alias("slot"),  # the grid's slot: the send's UTC hour
            ),
            _markers(sends.filter(pl.col("ch") == n_ch), pl.col("send_ts"), "send_id", NO_CONTACT, "row"),
        ],
        how="diagonal_relaxed",
    )
    stream = stream.join(
        eval_dec.with_row_index("ctx").select(pl.col("decision_id").alias("event_id"), "ctx"),
        on="event_id",
        how="left",
    ).sort("customer_id", "ts", "rank", "event_id")

    n_rows = sends.height
    matrix = np.full((n_rows, len(layout.names)), np.nan, dtype=np.float32)
    builder = ContextBuilder(eval_dec, layout, levels["message"], settings, prior)
    replay(stream, matrix, builder, profiles_map(profiles), layout, levels["message"], progress, workers)

    meta = sends.select(
        "send_id",
        "customer_id",
        "send_ts",
        "ch",
        "channel",
        "message_id",
        "decision_id",
        "propensity",
        "decided_at",
        "policy",
        "opens",
        "clicks",
        "conversions",
        "conv_value",
    )
    cost_of = np.append(costs, 0.0)  # the last code is "don't contact"
    # The reward in the objective's units (conversion value, or clicks / visits net of cost: model.domain.objective).
    outcome, paid = sends[count_col].to_numpy(), cost_of[sends["ch"].to_numpy()]
    reward = realised_value(outcome, sends["conv_value"].to_numpy(), objective, paid, settings)
    meta = meta.with_columns(pl.Series("reward", reward))
    first, last = period
    return TrainingSet(
        layout=layout,
        levels=levels,
        objective=objective,
        window_days=window,
        X=matrix,
        y=y,
        meta=meta,
        split=part.astype(str),
        contexts=builder.finish(costs, objective) if len(builder.ids) else None,
        period=(datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC)),
        stats={
            "touchpoints": float(tp.height),
            "sends": float(counts["sends"]),
            "censored": float(counts["sends"] - len(keep)),
            "rows": float(n_rows),
            "positives": float((y > 0).sum()),
            "eval_decisions": float(len(builder.ids)),
            "no_contact_rows": float(counts["no_contact_rows"]),
        },
        labels=labels,
        value_prior=prior,
    )
