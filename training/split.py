"""The split of sends into train / valid / eval (temporal by default, or by customer hash)."""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
import polars as pl

DAY = 86400.0
Split = Literal["temporal", "customer"]


def hash_share(ids: pl.Series) -> np.ndarray:
    """Stable share in [0, 1) per id (not Python's randomised hash)."""
    return np.array([int(hashlib.blake2b(s.encode(), digest_size=4).hexdigest(), 16) / 2**32 for s in ids.to_list()])


def trains_before(ts: np.ndarray, eval_start: float, window_days: float) -> np.ndarray:
    """Which sends are training sends (older than the evaluation period, label window closed before it)."""
    return np.asarray((ts < eval_start) & (ts + window_days * DAY <= eval_start))


def choose_split(
    sends: pl.DataFrame,
    split: Split,
    eval_fraction: float,
    window_days: float,
    valid_fraction: float,
    cutoffs: tuple[float, float | None] | None = None,
) -> np.ndarray:
    """Per send: "train", "valid", "eval" or "purged" (a training send whose label window overlaps eval).

    `cutoffs` (temporal split): the evaluation and validation start times when computed elsewhere (the Dask
    engine takes the quantiles over every partition's sends, then splits each partition with them)."""
    ts = sends["send_ts"].to_numpy()
    out = np.full(len(ts), "train", dtype=object)
    if len(ts) == 0:
        return out
    if split == "temporal":
        # The newest share of SENDS (not of the time span): with a growing or drifting log, a share of the span
        # can hold a handful of rows. Training sends whose window reaches into it are purged (no leak).
        eval_start = float(np.quantile(ts, 1.0 - eval_fraction)) if cutoffs is None else cutoffs[0]
        out[ts >= eval_start] = "eval"
        out[(ts < eval_start) & ~trains_before(ts, eval_start, window_days)] = "purged"
        train_ts = ts[out == "train"]
        valid_start = cutoffs[1] if cutoffs is not None else None
        if cutoffs is None and len(train_ts):
            valid_start = float(np.quantile(train_ts, 1.0 - valid_fraction))
        if valid_start is not None:
            out[(out == "train") & (ts >= valid_start)] = "valid"
    else:
        share = hash_share(sends["customer_id"])
        out[share < eval_fraction] = "eval"
        out[(share >= eval_fraction) & (share < eval_fraction + valid_fraction)] = "valid"
    return out
