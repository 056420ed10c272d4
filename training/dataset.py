"""The point-in-time training set: one row per outbound send, features from the state JUST BEFORE the send.

Columnar work (normalising, sorting, labelling, splitting) runs in polars; the only Python loop is the
replay, which applies the SAME `model.domain.aggregate.fold` the online aggregator uses, once per touchpoint, and
calls `model.domain.features` to turn the state into a row. Events that share the send's timestamp are folded only
after the row is taken, so a row never reflects anything at or after its send.

Labels (last-touch attribution): every click / visit / conversion is attributed to the customer's latest
send strictly before it, on any channel, if it falls within the attribution window after that send. The
label of a send is whether it got an attributed event of the objective's type (`value`: the attributed
conversion value). Sends whose window is not over by the end of the log are censored (dropped), not negative.

Split: temporal by default (train on the older sends, evaluate on the newest; the training sends whose
window reaches into the evaluation period are purged); `customer` puts a stable hash share of customers in
evaluation instead. Evaluation decisions that quote a logged `decision_id` also get their candidate grid
(channel x hourly slot x message) computed at decision time, for the off-policy and oracle evaluation.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from bisect import bisect_left
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pyarrow as pa

from model.domain.aggregate import CLICKED, CONVERTED, OPENED, SENT, VISITED, Aggregate, FoldEvent, fold
from model.domain.catalogue import catalogue
from model.domain.decide import conversion_value
from model.domain.features import (
    CHANNEL_FEATURES,
    FeatureLayout,
    channel_features,
    customer_features,
    local_time,
    message_features,
    row,
    slot_feature_rows,
)
from model.domain.schemas import EVENT_INDEX, Profile, QuietHours, default_quiet_hours
from model.domain.settings import get_settings

Objective = Literal["click", "visit", "conversion", "value"]
Split = Literal["temporal", "customer"]
OBJECTIVE_EVENT = {"click": "clicked", "visit": "visited", "conversion": "converted", "value": "converted"}
MARKER = -1  # a decision instant in the replay stream (not a touchpoint)
HORIZON_SLOTS = 24  # hourly candidate send slots after a decision
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


# --- normalising the inputs ------------------------------------------------------------------------------


def _epoch(col: str) -> pl.Expr:
    return pl.col(col).dt.epoch("us").cast(pl.Float64) / 1e6


def _as_utc(df: pl.DataFrame, col: str) -> pl.DataFrame:
    """A timestamp column (ISO strings or datetimes) as tz-aware UTC datetimes."""
    dtype = df.schema[col]
    if dtype == pl.String:
        df = df.with_columns(pl.col(col).str.to_datetime(time_zone="UTC", time_unit="us"))
    elif isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        df = df.with_columns(pl.col(col).dt.replace_time_zone("UTC"))
    elif isinstance(dtype, pl.Datetime):
        df = df.with_columns(pl.col(col).dt.convert_time_zone("UTC"))
    return df


def normalise_touchpoints(table: pa.Table | pl.DataFrame) -> pl.DataFrame:
    """Touchpoints with known channel/event type, codes, epoch seconds, de-duplicated by event_id."""
    df = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    for name in ("message_id", "decision_id"):
        if name not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.String).alias(name))
    if "value" not in df.columns:
        df = df.with_columns(pl.lit(0.0).alias("value"))
    df = _as_utc(df, "occurred_at")
    cat = catalogue()
    ch_map = pl.DataFrame({"channel": list(cat.names), "ch": list(range(len(cat)))}, schema_overrides={"ch": pl.Int32})
    ev_map = pl.DataFrame(
        {"event_type": list(EVENT_INDEX), "ev": list(EVENT_INDEX.values())}, schema_overrides={"ev": pl.Int32}
    )
    return (
        df.select(
            pl.col("event_id").cast(pl.String),
            pl.col("customer_id").cast(pl.String),
            pl.col("channel").cast(pl.String),
            pl.col("event_type").cast(pl.String),
            _epoch("occurred_at").alias("ts"),
            pl.col("message_id").cast(pl.String),
            pl.col("decision_id").cast(pl.String),
            pl.col("value").cast(pl.Float64).fill_null(0.0),
        )
        .join(ch_map, on="channel", how="inner")  # unknown channels / types cannot be folded: dropped
        .join(ev_map, on="event_type", how="inner")
        .unique(subset="event_id", keep="first", maintain_order=True)
    )


def normalise_decisions(table: pa.Table | pl.DataFrame | None) -> pl.DataFrame:
    cols = {
        "decision_id": pl.String,
        "decided_at": pl.Float64,
        "propensity": pl.Float64,
        "policy": pl.String,
        "send_at": pl.Float64,
    }
    if table is None or (isinstance(table, pa.Table) and table.num_rows == 0):
        return pl.DataFrame(schema=cols)
    df = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    if "policy" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias("policy"))
    for col in ("decided_at", "send_at"):
        if col not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias(col))
        df = _as_utc(df, col)
    return df.select(
        pl.col("decision_id").cast(pl.String),
        _epoch("decided_at").alias("decided_at"),
        pl.col("propensity").cast(pl.Float64),
        pl.col("policy").cast(pl.String),
        _epoch("send_at").alias("send_at"),
    ).unique(subset="decision_id", keep="first")


@dataclass(frozen=True)
class CustomerInfo:
    attributes: dict[str, str | float]
    zone: ZoneInfo
    quiet: QuietHours
    consent: tuple[bool, ...]  # per catalogue channel


def profiles_map(table: pa.Table | pl.DataFrame | None) -> dict[str, Profile]:
    """customer_id -> Profile, from rows of customer_id + Profile fields (JSON strings or structs)."""
    if table is None:
        return {}
    df = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    out: dict[str, Profile] = {}
    fields = [f for f in Profile.model_fields if f in df.columns]
    for rec in df.select(["customer_id", *fields]).iter_rows(named=True):
        doc = {}
        for f in fields:
            val = rec[f]
            if isinstance(val, str) and f != "timezone":
                val = json.loads(val)
            if val is not None:
                doc[f] = val
        try:
            out[str(rec["customer_id"])] = Profile.model_validate(doc)
        except ValueError:
            doc.pop("attributes", None)  # an attribute no longer declared: keep the rest of the profile
            out[str(rec["customer_id"])] = Profile.model_validate(doc)
    return out


def _info(profile: Profile | None, default_quiet: QuietHours) -> CustomerInfo:
    names = catalogue().names
    if profile is None:
        profile = Profile()
    return CustomerInfo(
        attributes=dict(profile.attributes),
        zone=profile.zone(),
        quiet=profile.quiet_hours or default_quiet,
        consent=tuple(profile.has_consent(n) for n in names),
    )


# --- labels and split ------------------------------------------------------------------------------------


def attribute(tp: pl.DataFrame, window_days: float) -> pl.DataFrame:
    """Per send: attributed opens, clicks, visits, conversions and conversion value (within the window).

    Opens, clicks and visits go to the customer's latest send strictly before them (last touch). A conversion
    goes to the send of the latest click or visit strictly before it (last click: the send that brought the
    customer to the shop) when that send is within the window, else to the latest send before it (last
    touch). Without the click rule, any send that happens between a click and the conversion it led to (a
    day later, say) would take the conversion: labels would then reward sending to customers who have just
    clicked, and earlier send hours, for no causal reason.
    """
    window = window_days * DAY
    sends = (
        tp.filter(pl.col("ev") == SENT)
        .select("customer_id", pl.col("event_id").alias("send_id"), pl.col("ts").alias("send_ts"))
        .sort("send_ts")
    )

    def last_send(events: pl.DataFrame) -> pl.DataFrame:
        return (
            events.sort("ts")
            .join_asof(
                sends,
                left_on="ts",
                right_on="send_ts",
                by="customer_id",
                strategy="backward",
                allow_exact_matches=False,  # an outcome at the very instant of a send is not caused by it
                check_sortedness=False,
            )
            .filter(pl.col("send_id").is_not_null() & (pl.col("ts") - pl.col("send_ts") <= window))
        )

    engaged = last_send(
        tp.filter(pl.col("ev").is_in([OPENED, CLICKED, VISITED])).select("customer_id", "ts", "ev", "value")
    )
    clicks = (
        engaged.filter(pl.col("ev").is_in([CLICKED, VISITED]))
        .select("customer_id", pl.col("ts").alias("click_ts"), pl.col("send_id").alias("click_send"), "send_ts")
        .rename({"send_ts": "click_send_ts"})
        .sort("click_ts")
    )
    conversions = (
        last_send(tp.filter(pl.col("ev") == CONVERTED).select("customer_id", "ts", "ev", "value"))
        .join_asof(
            clicks,
            left_on="ts",
            right_on="click_ts",
            by="customer_id",
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
        .with_columns(
            pl.when(pl.col("click_send").is_not_null() & (pl.col("ts") - pl.col("click_send_ts") <= window))
            .then(pl.col("click_send"))
            .otherwise(pl.col("send_id"))
            .alias("send_id")
        )
        .select(engaged.columns)
    )
    matched = pl.concat([engaged, conversions])
    return matched.group_by("send_id").agg(
        (pl.col("ev") == OPENED).sum().alias("opens"),
        (pl.col("ev") == CLICKED).sum().alias("clicks"),
        (pl.col("ev") == VISITED).sum().alias("visits"),
        (pl.col("ev") == CONVERTED).sum().alias("conversions"),
        pl.when(pl.col("ev") == CONVERTED).then(pl.col("value")).otherwise(0.0).sum().alias("conv_value"),
    )


def _hash_share(ids: pl.Series) -> np.ndarray:
    """Stable share in [0, 1) per id (not Python's randomised hash)."""
    return np.array([int(hashlib.blake2b(s.encode(), digest_size=4).hexdigest(), 16) / 2**32 for s in ids.to_list()])


@dataclass
class Contexts:
    """Held-out decisions with their candidate grid, in feature groups (broadcast when scored)."""

    decision_id: list[str]
    customer_id: list[str]
    decided_at: np.ndarray  # [D]
    propensity: np.ndarray  # [D]
    logged_channel: np.ndarray  # [D] catalogue index
    logged_slot: np.ndarray  # [D] index into the slot grid, -1 if outside it
    logged_message: np.ndarray  # [D] index into the message levels, -1 if not a level
    reward: np.ndarray  # [D] attributed conversion value - channel cost of the logged send
    converted: np.ndarray  # [D] 0/1
    cust: np.ndarray  # [D, S, Fc] customer features at each slot's instant
    chan: np.ndarray  # [D, S, C, Fch] channel features at each slot's instant
    slot: np.ndarray  # [D, S, Fs]
    slot_ts: np.ndarray  # [D, S]
    slot_ok: np.ndarray  # [D, S] outside quiet hours
    allowed: np.ndarray  # [D, C] consent and not opted out
    ch_sends_7d: np.ndarray  # [D, C, S] sends on the channel in the 7 days before the slot
    engaged: np.ndarray  # [D, C] engagement counts per channel
    last_engaged: np.ndarray  # [D, C] last engagement per channel (epoch s, 0 = never)
    value_hat: np.ndarray  # [D] the customer's average order value so far (default when none)
    local_hour: np.ndarray  # [D, S]
    local_dow: np.ndarray  # [D, S]

    def __len__(self) -> int:
        return len(self.decision_id)


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

    @property
    def names(self) -> list[str]:
        return list(self.layout.names)

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        mask = self.split == name
        return self.X[mask], self.y[mask]


def _choose_split(
    sends: pl.DataFrame, split: Split, eval_fraction: float, window_days: float, valid_fraction: float
) -> np.ndarray:
    ts = sends["send_ts"].to_numpy()
    out = np.full(len(ts), "train", dtype=object)
    if len(ts) == 0:
        return out
    if split == "temporal":
        lo, hi = float(ts.min()), float(ts.max())
        eval_start = hi - eval_fraction * (hi - lo)
        out[ts >= eval_start] = "eval"
        out[(ts < eval_start) & (ts + window_days * DAY > eval_start)] = "purged"
        train_ts = ts[out == "train"]
        if len(train_ts):
            valid_start = float(np.quantile(train_ts, 1.0 - valid_fraction))
            out[(out == "train") & (ts >= valid_start)] = "valid"
    else:
        share = _hash_share(sends["customer_id"])
        out[share < eval_fraction] = "eval"
        out[(share >= eval_fraction) & (share < eval_fraction + valid_fraction)] = "valid"
    return out


# --- the replay ------------------------------------------------------------------------------------------


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
) -> TrainingSet:
    """Build the training set (see the module docstring for the rules)."""
    if objective not in OBJECTIVE_EVENT:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVE_EVENT)}")
    settings = get_settings()
    window = float(window_days if window_days is not None else settings.attribution_window_days)
    layout = layout_from_settings()
    cat = catalogue()
    costs = np.array([settings.channel_costs.get(n, 0.0) for n in cat.names])

    tp = normalise_touchpoints(touchpoints)
    if tp.height == 0:
        raise ValueError("no usable touchpoints (known channels and event types) in the source")
    end = float(as_of if as_of is not None else tp["ts"].max())  # type: ignore[arg-type]
    labels = attribute(tp, window)
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
        .join(labels, on="send_id", how="left")
        .with_columns(
            pl.col("opens", "clicks", "visits", "conversions").fill_null(0), pl.col("conv_value").fill_null(0.0)
        )
        .join(dec, on="decision_id", how="left")
        # A send without a logged decision is evaluated as if decided one hour before its send hour (its
        # propensity is unknown, so it counts for the oracle's exact values but not for IPS/SNIPS).
        .with_columns(
            pl.col("decision_id").fill_null(pl.col("send_id")),
            pl.col("decided_at").fill_null((pl.col("send_ts") / 3600).floor() * 3600 - 3600),
            pl.col("send_at").fill_null((pl.col("send_ts") / 3600).floor() * 3600),
        )
    )
    n_sends = sends.height
    sends = sends.filter(pl.col("send_ts") + window * DAY <= end)  # censoring: no full window yet
    censored = n_sends - sends.height
    if sends.height == 0:
        raise ValueError("no send has a complete attribution window: the log is too short or too recent")
    sends = sends.sort("customer_id", "send_ts", "send_id")
    if message_levels is None:
        top = (
            sends.filter(pl.col("message_id").is_not_null())
            .group_by("message_id")
            .len()
            .sort(["len", "message_id"], descending=[True, False])
            .head(MAX_MESSAGES)
        )
        message_levels = top["message_id"].to_list()
    levels = feature_levels(layout, message_levels)
    part = _choose_split(sends, split, eval_fraction, window, valid_fraction)
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
    if eval_dec.height > max_contexts:
        share = _hash_share(eval_dec["decision_id"])
        eval_dec = eval_dec.with_columns(pl.Series("_h", share)).sort("_h").head(max_contexts).drop("_h")
    eval_dec = eval_dec.sort("customer_id", "decided_at")

    # One stream per customer: decision markers (rank 0), sends (1), other events (2), by time.
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
            eval_dec.select(
                "customer_id",
                pl.col("decided_at").alias("ts"),
                pl.col("decision_id").alias("event_id"),
                "ch",
                pl.lit(MARKER, dtype=pl.Int32).alias("ev"),
                pl.lit(0.0).alias("value"),
                pl.lit(0).alias("rank"),
            ),
        ],
        how="vertical_relaxed",
    ).sort("customer_id", "ts", "rank", "event_id")
    stream = stream.join(
        sends.select(pl.col("send_id").alias("event_id"), "row", "message_id"), on="event_id", how="left"
    )
    stream = stream.join(
        eval_dec.with_row_index("ctx").select(pl.col("decision_id").alias("event_id"), "ctx"),
        on="event_id",
        how="left",
    ).sort("customer_id", "ts", "rank", "event_id")

    profiles_by_id = profiles_map(profiles)
    default_quiet = default_quiet_hours()
    n_rows = sends.height
    matrix = np.full((n_rows, len(layout.names)), np.nan, dtype=np.float32)
    builder = _ContextBuilder(eval_dec, layout, levels, costs, settings.default_conversion_value)
    _replay(stream, matrix, builder, profiles_by_id, default_quiet, layout, levels["message"], progress, workers)

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
    meta = meta.with_columns(pl.Series("reward", meta["conv_value"].to_numpy() - costs[meta["ch"].to_numpy()]))
    first, last = float(tp["ts"].min()), end  # type: ignore[arg-type]
    return TrainingSet(
        layout=layout,
        levels=levels,
        objective=objective,
        window_days=window,
        X=matrix,
        y=y,
        meta=meta,
        split=part.astype(str),
        contexts=builder.finish() if len(builder.ids) else None,
        period=(datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC)),
        stats={
            "touchpoints": float(tp.height),
            "sends": float(n_sends),
            "censored": float(censored),
            "rows": float(n_rows),
            "positives": float((y > 0).sum()),
            "eval_decisions": float(len(builder.ids)),
        },
    )


_JOB: dict[str, Any] = {}  # what forked replay workers read (inherited copy-on-write, never pickled)
PARALLEL_MIN_EVENTS = 200_000


def _replay(
    stream: pl.DataFrame,
    matrix: np.ndarray,
    builder: _ContextBuilder,
    profiles: dict[str, Profile],
    default_quiet: QuietHours,
    layout: FeatureLayout,
    messages: list[str],
    progress: Progress | None,
    workers: int | None = None,
) -> None:
    """Fold every touchpoint once; take each send's row (and each decision's grid) before same-instant events.

    Customers are independent, so the stream is cut at customer boundaries into one range per worker
    process (fork: the workers inherit the columns and touch no polars state).
    """
    cols = [stream[c].to_list() for c in ("customer_id", "ts", "event_id", "ch", "ev", "value", "row", "message_id")]
    cols.append(stream["ctx"].to_list())
    total = len(cols[0])
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if total >= PARALLEL_MIN_EVENTS else 1
    args = (profiles, default_quiet, layout, messages)
    if workers <= 1 or "fork" not in mp.get_all_start_methods():

        def put(out: int, values: list[float]) -> None:
            matrix[out] = values

        _replay_range(cols, 0, total, put, builder, *args, progress=progress, total=total)
        if progress is not None:
            progress(total, total)
        return
    bounds = [0]
    for k in range(1, workers):
        i = max(bounds[-1], k * total // workers)
        while 0 < i < total and cols[0][i] == cols[0][i - 1]:
            i += 1
        bounds.append(i)
    bounds.append(total)
    _JOB.update(cols=cols, builder=builder, args=args)
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            ranges = list(pairwise(bounds))
            futures = [pool.submit(_replay_part, lo, hi) for lo, hi in ranges]
            for (_, hi), future in zip(ranges, futures, strict=True):
                index, values, ids, parts = future.result()
                if len(index):
                    matrix[index] = values
                builder.merge(ids, parts)
                if progress is not None:
                    progress(hi, total)
    finally:
        _JOB.clear()


def _replay_part(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, list[int], dict[str, list[Any]]]:
    """One worker's customers: rows and decision grids, returned to the parent."""
    cols, builder, args = _JOB["cols"], _JOB["builder"].fresh(), _JOB["args"]
    index: list[int] = []
    values: list[list[float]] = []

    def put(out: int, row_values: list[float]) -> None:
        index.append(out)
        values.append(row_values)

    _replay_range(cols, lo, hi, put, builder, *args)
    width = len(args[2].names)
    return np.array(index, np.int64), np.array(values, np.float32).reshape(-1, width), builder.ids, builder.parts


def _replay_range(
    cols: list[list[Any]],
    lo: int,
    hi: int,
    put: Callable[[int, list[float]], None],
    builder: _ContextBuilder,
    profiles: dict[str, Profile],
    default_quiet: QuietHours,
    layout: FeatureLayout,
    messages: list[str],
    progress: Progress | None = None,
    total: int = 0,
) -> None:
    n_ch = len(catalogue())
    cur: str | None = None
    agg = Aggregate(n_ch)
    pending: list[FoldEvent] = []
    prev = 0.0
    info = _info(None, default_quiet)
    step = max(1, (hi - lo) // 200)
    rows = zip(*(c[lo:hi] for c in cols), strict=True)
    for i, (cid, ts, eid, ch, ev, value, out, msg, ctx) in enumerate(rows, start=lo):
        if cid != cur:
            cur, agg, pending, prev = cid, Aggregate(n_ch), [], ts
            info = _info(profiles.get(cid), default_quiet)
        elif ts != prev:
            for pe in pending:
                fold(agg, pe)
            pending.clear()
            prev = ts
        if ev == MARKER:
            builder.add(ctx, agg, info, ts)
            continue
        if out is not None:
            put(out, row(agg, info.attributes, layout, ch, ts, info.zone, msg, messages))
        pending.append(FoldEvent(eid, ch, ev, ts, value))
        if progress is not None and i % step == 0:
            progress(i, total)


class _ContextBuilder:
    """Collects the candidate-grid feature groups of each evaluated decision during the replay."""

    def __init__(
        self,
        eval_dec: pl.DataFrame,
        layout: FeatureLayout,
        levels: dict[str, list[str]],
        costs: np.ndarray,
        default_value: float,
    ) -> None:
        self.dec = eval_dec
        self.layout = layout
        self.messages = levels["message"]
        self.costs = costs
        self.default_value = default_value
        self.settings = get_settings().model_copy(update={"default_conversion_value": default_value})
        self.n_ch = len(catalogue())
        self.ids: list[int] = []
        self.parts: dict[str, list[Any]] = {
            k: []
            for k in (
                "cust",
                "chan",
                "slot",
                "slot_ts",
                "slot_ok",
                "allowed",
                "ch_sends_7d",
                "engaged",
                "last_engaged",
                "value_hat",
                "local_hour",
                "local_dow",
            )
        }

    def fresh(self) -> _ContextBuilder:
        """An empty builder with the same configuration (for a replay worker)."""
        return _ContextBuilder(self.dec, self.layout, {"message": self.messages}, self.costs, self.default_value)

    def merge(self, ids: list[int], parts: dict[str, list[Any]]) -> None:
        self.ids.extend(ids)
        for key, val in parts.items():
            self.parts[key].extend(val)

    def add(self, ctx: int, agg: Aggregate, info: CustomerInfo, now: float) -> None:
        p = self.parts
        self.ids.append(ctx)
        first = (int(now // 3600) + 1) * 3600.0
        slots = [first + 3600.0 * s for s in range(HORIZON_SLOTS)]
        locals_ = [local_time(t, info.zone) for t in slots]
        ok = [not info.quiet.contains(lt.time()) for lt in locals_]
        # Customer and channel features are taken at each slot's instant, exactly as a training row is taken
        # at its send (recency and rolling windows move with time); slots in quiet hours are never scored.
        n_c, n_ch = len(self.layout.customer), len(CHANNEL_FEATURES)
        cust, chan = np.zeros((len(slots), n_c), np.float32), np.zeros((len(slots), self.n_ch, n_ch), np.float32)
        for j, t in enumerate(slots):
            if ok[j]:
                cust[j] = customer_features(agg, info.attributes, self.layout, t)
                chan[j] = [channel_features(agg, c, t) for c in range(self.n_ch)]
        p["cust"].append(cust)
        p["chan"].append(chan)
        p["slot"].append(slot_feature_rows(agg, slots, info.zone))
        p["slot_ts"].append(slots)
        p["slot_ok"].append(ok)
        p["local_hour"].append([lt.hour for lt in locals_])
        p["local_dow"].append([lt.weekday() for lt in locals_])
        p["allowed"].append([info.consent[c] and not agg.opted_out(c) for c in range(self.n_ch)])
        week = 7 * DAY
        p["ch_sends_7d"].append(
            [[bisect_left(sends, t) - bisect_left(sends, t - week) for t in slots] for sends in agg.recent_sends]
        )
        p["engaged"].append([r[OPENED] + r[CLICKED] + r[VISITED] + r[CONVERTED] for r in agg.counts])
        p["last_engaged"].append([max(r[OPENED], r[CLICKED], r[VISITED], r[CONVERTED]) for r in agg.last])
        p["value_hat"].append(conversion_value(agg, self.settings))  # the estimate scoring ranks by

    def finish(self) -> Contexts:
        order = np.array(self.ids)
        dec = self.dec[order.tolist()]
        p = {k: np.asarray(v) for k, v in self.parts.items()}
        slot_ts = p["slot_ts"]
        send_at = dec["send_at"].fill_null(-1.0).to_numpy()
        hit = slot_ts == (np.floor(send_at / 3600) * 3600)[:, None]
        logged_slot = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
        msg_index = {m: i for i, m in enumerate(self.messages)}
        ch = dec["ch"].to_numpy()
        return Contexts(
            decision_id=dec["decision_id"].to_list(),
            customer_id=dec["customer_id"].to_list(),
            decided_at=dec["decided_at"].to_numpy(),
            propensity=dec["propensity"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
            logged_channel=ch,
            logged_slot=logged_slot,
            logged_message=np.array([msg_index.get(m, -1) if m is not None else -1 for m in dec["message_id"]]),
            reward=dec["conv_value"].to_numpy() - self.costs[ch],
            converted=(dec["conversions"].to_numpy() > 0).astype(np.float64),
            cust=p["cust"].astype(np.float32),
            chan=p["chan"].astype(np.float32),
            slot=p["slot"].astype(np.float32),
            slot_ts=slot_ts,
            slot_ok=p["slot_ok"].astype(bool),
            allowed=p["allowed"].astype(bool),
            ch_sends_7d=p["ch_sends_7d"].astype(np.int16),
            engaged=p["engaged"].astype(np.float64),
            last_engaged=p["last_engaged"].astype(np.float64),
            value_hat=p["value_hat"].astype(np.float64),
            local_hour=p["local_hour"].astype(np.int64),
            local_dow=p["local_dow"].astype(np.int64),
        )


def candidate_matrix(ctx: Contexts, i: int, messages: list[str], layout: FeatureLayout) -> np.ndarray:
    """All candidate rows of decision i in feature order, [C, S, M, F]: the four groups broadcast."""
    ids: list[str | None] = list(messages) or [None]
    msg = np.array([message_features(mid, messages) for mid in ids], dtype=np.float32)
    s, c, m = ctx.chan.shape[1], ctx.chan.shape[2], len(msg)
    out = np.concatenate(
        [
            np.broadcast_to(ctx.cust[i][None, :, None, :], (c, s, m, ctx.cust.shape[2])),
            np.broadcast_to(ctx.chan[i].transpose(1, 0, 2)[:, :, None, :], (c, s, m, ctx.chan.shape[3])),
            np.broadcast_to(ctx.slot[i][None, :, None, :], (c, s, m, ctx.slot.shape[2])),
            np.broadcast_to(msg[None, None, :, :], (c, s, m, msg.shape[1])),
        ],
        axis=3,
    )
    if out.shape[3] != len(layout.names):
        raise ValueError(f"candidate rows have {out.shape[3]} features, the layout {len(layout.names)}")
    return out
