"""What a source must hold to train, checked before and after the training set is built.

Every failure is a `SourceError` with one line that says what is missing and how to fix it (the CLI prints it
and exits with code 2), instead of an empty-array error deep in polars or LightGBM's
`Check failed: (num_data) > (0)`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from model.domain.catalogue import catalogue
from model.domain.schemas import EVENT_TYPES
from model.domain.settings import get_settings
from training.dataset import TrainingSet
from training.sources import SourceError, Sources

REQUIRED = ("event_id", "customer_id", "channel", "event_type", "occurred_at")
DAY = 86400.0
IMPORT = "import it with `nbc import SOURCE --out DIR --mapping FILE` (docs/own-history.md)"


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _epoch(df: pl.DataFrame, col: str) -> pl.Expr:
    """Epoch seconds of a timestamp column (ISO strings, or datetimes: naive ones are UTC), as the build reads it."""
    dtype = df.schema[col]
    expr = pl.col(col)
    if dtype == pl.String:
        expr = expr.str.to_datetime(time_zone="UTC", time_unit="us")
    elif isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        expr = expr.dt.replace_time_zone("UTC")
    return expr.dt.epoch("us").cast(pl.Float64) / 1e6


def check_source(src: Sources, *, window_days: float | None, as_of: float | None, objective: str) -> None:
    """Before the build: touchpoints with the project's columns, known channels, sends, complete windows."""
    tp = src.touchpoints
    if tp.num_rows == 0:
        raise SourceError(f"the source holds no touchpoints: check --source, or {IMPORT}")
    missing = [c for c in REQUIRED if c not in tp.column_names or tp[c].null_count == tp.num_rows]
    if missing:
        raise SourceError(f"the touchpoints have no {', '.join(missing)}: {IMPORT}, which maps your columns")
    df = pl.from_arrow(tp.select(["channel", "event_type", "occurred_at"]))
    assert isinstance(df, pl.DataFrame)
    known = df.filter(pl.col("channel").is_in(list(catalogue().names)) & pl.col("event_type").is_in(list(EVENT_TYPES)))
    if known.height == 0:
        seen = df["channel"].drop_nulls().unique().sort().head(8).to_list()
        raise SourceError(
            f"none of the {tp.num_rows:,} touchpoints has a known channel and event type (channels seen: "
            f"{', '.join(map(str, seen)) or 'none'}; known: {', '.join(catalogue().names)}): declare your channels "
            "in nbc.toml [channels] or map them with `nbc import --mapping` ([values.channel] / [channels])"
        )
    try:
        norm = known.select("event_type", _epoch(known, "occurred_at").alias("ts"))
    except (pl.exceptions.PolarsError, ValueError) as err:
        first = str(err).splitlines()[0][:160]
        raise SourceError(f"occurred_at cannot be read ({first}): {IMPORT}, which validates every row") from None
    sends = norm.filter(pl.col("event_type") == "sent")
    if sends.height == 0:
        raise SourceError(
            "no `sent` touchpoint: the model learns from sends; map your contact rows to event_type sent "
            "([values.event_type] or [[derive]] rules in the import mapping)"
        )
    window_days = float(window_days if window_days is not None else get_settings().attribution_window_days)
    window = window_days * DAY
    end = float(as_of) if as_of is not None else float(norm["ts"].max())  # type: ignore[arg-type]
    first_send = float(sends["ts"].min())  # type: ignore[arg-type]
    if first_send + window > end:
        raise SourceError(
            f"no send has a complete {window_days:g}-day attribution window by the end of the data "
            f"({_day(end)}; first send {_day(first_send)}): pass --as-of TIME, the end of the observation window "
            f"(at least {_day(first_send + window)}), or a shorter --window-days"
        )
    if objective in ("conversion", "value") and not (norm["event_type"] == "converted").any():
        raise SourceError(
            f"no conversion in the data: --objective {objective} has nothing to learn; map your outcome to "
            "event_type converted ([values.event_type] or [[derive]]), or train --objective click"
        )


def check_training_set(ts: TrainingSet, *, split: str) -> None:
    """After the build: rows to train on, positives among them, and held-out rows to evaluate on."""
    part = np.asarray(ts.split)
    train = part == "train"
    n = len(part)
    if not train.any():
        instants = ts.meta["send_ts"].n_unique()
        if split == "temporal" and instants == 1:
            raise SourceError(
                f"all {n:,} labelled sends are at one instant (a single campaign): a temporal split has no older "
                "sends to train on; use --split customer"
            )
        raise SourceError(
            f"no training rows: the temporal split held out or purged all {n:,} labelled sends; use --split "
            "customer, a shorter --window-days, or more history"
        )
    positives = int((ts.y[train] > 0).sum())
    if positives == 0:
        raise SourceError(
            f"none of the {int(train.sum()):,} training sends has a positive label for --objective "
            f"{ts.objective}: nothing to learn; check that outcomes are mapped (event_type converted/clicked) "
            "and fall within --window-days of a send"
        )
    if not (part == "eval").any():
        raise SourceError(
            f"no held-out sends to evaluate on ({n:,} labelled sends): use --split customer or more history"
        )
