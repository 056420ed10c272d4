"""Learning the order-value prior (model.domain.value) from the training period's conversions.

Only conversions the model may learn from count: before the first held-out send (temporal split), or of the
customers without held-out sends (customer split), so the evaluation's value estimates never saw the held-out
period. Both engines reduce the conversions to one row per customer (`customer_stats`, per partition on Dask)
and fit once on the union (`fit`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from model.domain.aggregate import CONVERTED
from model.domain.settings import get_settings
from model.domain.value import ValuePrior, fit_prior
from training.records import profiles_map


def categorical_attributes() -> list[str]:
    return [a.name for a in get_settings().profile_attributes if a.kind == "categorical"]


def learnable(
    sends: pl.DataFrame, part: np.ndarray, split: str, eval_start: float | None = None
) -> tuple[float, set[str]]:
    """(conversions before this instant, customers excluded): what the prior may learn from. `eval_start`: the
    first held-out send over every partition (the Dask engine's), else the first held-out send of `sends`."""
    held = part == "eval"
    if split == "temporal":
        if eval_start is not None:
            return eval_start, set()
        return (float(sends["send_ts"].to_numpy()[held].min()) if held.any() else float("inf")), set()
    return float("inf"), set(sends.filter(pl.Series(held))["customer_id"].unique().to_list())


def customer_stats(
    tp: pl.DataFrame, before: float, exclude: set[str], profiles: pa.Table | pl.DataFrame | None
) -> pl.DataFrame:
    """Per customer with a learnable conversion: count, sum and sum of squares of the values, and the level of
    each categorical profile attribute (null when unknown)."""
    conv = tp.filter((pl.col("ev") == CONVERTED) & (pl.col("value") > 0) & (pl.col("ts") < before))
    if exclude:
        conv = conv.filter(~pl.col("customer_id").is_in(list(exclude)))
    stats = conv.group_by("customer_id").agg(
        pl.len().alias("n"), pl.col("value").sum().alias("total"), (pl.col("value") ** 2).sum().alias("total_sq")
    )
    ids = stats["customer_id"].to_list()
    known = {}
    if profiles is not None:  # parse only the converting customers' profiles (the replay parses them all)
        df = profiles if isinstance(profiles, pl.DataFrame) else pl.from_arrow(profiles)
        assert isinstance(df, pl.DataFrame)
        known = profiles_map(df.filter(pl.col("customer_id").cast(pl.String).is_in(ids)))
    for name in categorical_attributes():
        levels = [known[c].attributes.get(name) if c in known else None for c in ids]
        col = [None if level is None else str(level) for level in levels]
        stats = stats.with_columns(pl.Series(name, col, dtype=pl.String))
    return stats


def fit(stats: pl.DataFrame | list[pl.DataFrame]) -> ValuePrior | None:
    """The prior from the per-customer statistics (one frame, or one per partition)."""
    frames = [f for f in (stats if isinstance(stats, list) else [stats]) if f.height]
    if not frames:
        return None
    df = pl.concat(frames, how="diagonal_relaxed")
    levels: dict[str, Any] = {a: df[a].to_list() for a in categorical_attributes() if a in df.columns}
    return fit_prior(df["n"].to_numpy(), df["total"].to_numpy(), df["total_sq"].to_numpy(), levels)
