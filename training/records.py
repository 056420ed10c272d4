"""Normalised inputs: touchpoints, logged decisions and profiles as the pipeline's polars frames.

Timestamps become epoch seconds (UTC), channels and event types their catalogue codes; touchpoints are
de-duplicated by event_id. What cannot be folded (an unknown channel or event type) is dropped here: imports
count such rows by reason before they reach this point (see `nbc import`).
"""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa

from model.domain.catalogue import catalogue
from model.domain.recommend_schemas import NONE_CHANNEL
from model.domain.schemas import EVENT_INDEX, Profile


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


def no_contact_decisions(table: pa.Table | pl.DataFrame | None) -> pl.DataFrame:
    """Logged "don't contact" decisions (channel "none": holdout and no-send), with customer and instant."""
    cols = {"decision_id": pl.String, "customer_id": pl.String, "decided_at": pl.Float64, "propensity": pl.Float64}
    if table is None or (isinstance(table, pa.Table) and table.num_rows == 0):
        return pl.DataFrame(schema={**cols, "policy": pl.String})
    df = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    if not {"channel", "customer_id", "decided_at"} <= set(df.columns):
        return pl.DataFrame(schema={**cols, "policy": pl.String})
    if "policy" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias("policy"))
    df = _as_utc(df.filter(pl.col("channel") == NONE_CHANNEL), "decided_at")
    return df.select(
        pl.col("decision_id").cast(pl.String),
        pl.col("customer_id").cast(pl.String),
        _epoch("decided_at").alias("decided_at"),
        pl.col("propensity").cast(pl.Float64),
        pl.col("policy").cast(pl.String),
    ).unique(subset="decision_id", keep="first")
