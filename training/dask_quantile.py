"""Exact quantiles and order statistics of values spread over Dask partitions, without gathering them.

Each pass asks every partition for a histogram of its values inside the interval that holds the wanted rank,
then narrows the interval to the bin that holds it; once few values (or few distinct values) are left, the
partitions send those, with their counts. The result equals numpy's on the concatenated values (np.quantile's
default linear interpolation), so the Dask engine cuts the temporal split exactly where the local engine does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from training.dask_cluster import compute, delayed

BINS = 1024
GATHER = 50_000  # values left in the interval (over all partitions) below which they are sent as they are
MAX_PASSES = 8


def _stats(values: np.ndarray) -> tuple[int, float, float]:
    if len(values) == 0:
        return 0, math.inf, -math.inf
    return len(values), float(values.min()), float(values.max())


def _histogram(values: np.ndarray, lo: float, hi: float, edges: np.ndarray) -> tuple[int, np.ndarray]:
    """Values below `lo`, and counts per bin of [lo, hi) (bins half-open, as `edges`)."""
    inside = values[(values >= lo) & (values < hi)]
    bins = np.clip(np.searchsorted(edges, inside, side="right") - 1, 0, len(edges) - 2)
    return int((values < lo).sum()), np.bincount(bins, minlength=len(edges) - 1)


def _inside(values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    return np.unique(values[(values >= lo) & (values < hi)], return_counts=True)


def order_statistic(parts: list[Any], rank: int) -> float:
    """The value of 0-based `rank` in the sorted union of the partitions' 1-D arrays (`parts`: Delayed)."""
    stats = compute(*[delayed(_stats)(p) for p in parts])
    n = sum(s[0] for s in stats)
    if not 0 <= rank < n:
        raise ValueError(f"rank {rank} outside 0..{n - 1}")
    lo = min(s[1] for s in stats)
    hi = float(np.nextafter(max(s[2] for s in stats), math.inf))  # half-open [lo, hi) holds every value
    for _ in range(MAX_PASSES):
        edges = np.linspace(lo, hi, BINS + 1)
        edges[-1] = hi
        found = compute(*[delayed(_histogram)(p, lo, hi, edges) for p in parts])
        below = sum(f[0] for f in found)
        counts = np.sum([f[1] for f in found], axis=0)
        cum = below + np.cumsum(counts)
        k = int(np.searchsorted(cum, rank, side="right"))
        lo, hi = float(edges[k]), float(edges[k + 1])
        if counts[k] <= GATHER or hi <= float(np.nextafter(lo, math.inf)):
            break
    below = sum(compute(*[delayed(_histogram)(p, lo, hi, np.array([lo, hi]))[0] for p in parts]))
    pieces = compute(*[delayed(_inside)(p, lo, hi) for p in parts])
    values = np.concatenate([v for v, _ in pieces]) if pieces else np.zeros(0)
    counts = np.concatenate([c for _, c in pieces]) if pieces else np.zeros(0, dtype=np.int64)
    order = np.argsort(values, kind="stable")
    cum = below + np.cumsum(counts[order])
    return float(values[order][int(np.searchsorted(cum, rank, side="right"))])


def quantile(parts: list[Any], q: float) -> float:
    """np.quantile(concatenated values, q) (linear interpolation) over the partitions' arrays."""
    n = sum(compute(*[delayed(len)(p) for p in parts]))
    if n == 0:
        raise ValueError("no values")
    h = (n - 1) * q
    lo_rank = math.floor(h)
    low = order_statistic(parts, lo_rank)
    if h == lo_rank or lo_rank + 1 >= n:
        return low
    high = order_statistic(parts, lo_rank + 1)
    return float(low + (h - lo_rank) * (high - low))
