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


def choose_split(
    sends: pl.DataFrame, split: Split, eval_fraction: float, window_days: float, valid_fraction: float
) -> np.ndarray:
    """Per send: "train", "valid", "eval" or "purged" (a training send whose label window overlaps eval)."""
    ts = sends["send_ts"].to_numpy()
    out = np.full(len(ts), "train", dtype=object)
    if len(ts) == 0:
        return out
    if split == "temporal":
        # The newest share of SENDS (not of the time span): with a growing or drifting log, a share of the span
        # can hold a handful of rows. Training sends whose window reaches into it are purged (no leak).
        eval_start = float(np.quantile(ts, 1.0 - eval_fraction))
        out[ts >= eval_start] = "eval"
        out[(ts < eval_start) & (ts + window_days * DAY > eval_start)] = "purged"
        train_ts = ts[out == "train"]
        if len(train_ts):
            valid_start = float(np.quantile(train_ts, 1.0 - valid_fraction))
            out[(out == "train") & (ts >= valid_start)] = "valid"
    else:
        share = hash_share(sends["customer_id"])
        out[share < eval_fraction] = "eval"
        out[(share >= eval_fraction) & (share < eval_fraction + valid_fraction)] = "valid"
    return out
