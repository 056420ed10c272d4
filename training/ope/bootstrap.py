"""The results of off-policy estimators and their intervals: `Estimate` (value, 95% interval, diagnostics),
`Terms` (an estimator's per-decision numerators and denominators, whose ratio of sums is the estimate) and the
percentile bootstrap over decisions that every estimator and every paired difference share (pure numpy).

training/ope/estimators.py builds the `Terms` of each estimator; docs/ope.md explains the intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.integer[Any]]
Seed = int | np.random.Generator

N_BOOT = 500
LEVEL = 0.95
_BLOCK = 1 << 22  # cells of the [rows, n] resampling count matrix held at once (32 MB of float64)


# --- results ------------------------------------------------------------------------------------------------


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(frozen=True, slots=True)
class Estimate:
    """A policy value with its 95% interval and the diagnostics that say how far to trust it.

    value       the estimate (NaN when the estimator has no decision to use, e.g. no propensities)
    ci          percentile bootstrap interval over decisions, (lo, hi)
    ess         Kish effective sample size of the importance weights, (sum w)^2 / sum w^2 (DM: n)
    max_weight  largest importance weight used (DM: 1)
    matched     decisions with a positive weight (for a deterministic target: logged action == its choice)
    support     share of all logged decisions the estimator can use (a known, positive propensity)
    n           decisions used
    mean_weight mean importance weight over the decisions used (DM: 1). Under the logging policy its
                expectation is the target's probability mass on actions the log can take: well below 1, the
                target puts mass where the log never goes, and the weighted part cannot see it (DR / MDR value
                that mass by the reward model alone, IPS / SNIPS not at all)
    """

    value: float
    ci: tuple[float, float]
    ess: float
    max_weight: float
    matched: int
    support: float
    n: int
    mean_weight: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; non-finite numbers become None (null), never NaN."""
        return {
            "value": _finite_or_none(self.value),
            "ci": [_finite_or_none(self.ci[0]), _finite_or_none(self.ci[1])],
            "ess": _finite_or_none(self.ess),
            "max_weight": _finite_or_none(self.max_weight),
            "matched": self.matched,
            "support": _finite_or_none(self.support),
            "n": self.n,
            "mean_weight": _finite_or_none(self.mean_weight),
        }


@dataclass(frozen=True, slots=True)
class Difference:
    """Paired difference a - b of two policies' values on the same decisions, with its bootstrap interval."""

    value: float
    ci: tuple[float, float]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"value": _finite_or_none(self.value), "ci": [_finite_or_none(self.ci[0]), _finite_or_none(self.ci[1])]}


@dataclass(frozen=True, slots=True, eq=False)
class Terms:
    """Per-decision contributions of one estimator for one policy.

    The estimate is  sum_k  sum_i num_k[i] / sum_i den_k[i]  over the parts k (one part for dm, ips, snips, dr,
    mips, mdr; two for sndr). For a plain mean (ips, dr, ...) the numerator is the per-decision term and the
    denominator is 1 for the decisions used, 0 for the others; for a self-normalised ratio it is the weight.
    Resampling decisions resamples every column with the same indices, which is what makes intervals of
    self-normalised estimators and paired differences consistent.

    weight and used feed the diagnostics: importance weights (0 where unused; 1 everywhere for DM) and which
    decisions the estimator can use.
    """

    parts: tuple[tuple[FloatArray, FloatArray], ...]
    weight: FloatArray
    used: BoolArray

    def __len__(self) -> int:
        return int(self.used.shape[0])

    def columns(self) -> FloatArray:
        """[n, 2k] matrix: num_1, den_1, num_2, den_2, ..."""
        return np.column_stack([c for part in self.parts for c in part]).astype(np.float64, copy=False)

    def combine(self, sums: FloatArray) -> FloatArray:
        """Estimates from column sums [..., 2k] (as given by `columns`)."""
        total = np.zeros(sums.shape[:-1], dtype=np.float64)
        for k in range(len(self.parts)):
            total = total + _ratio(sums[..., 2 * k], sums[..., 2 * k + 1])
        return total

    def value(self) -> float:
        return float(self.combine(self.columns().sum(axis=0)))

    def resample(self, idx: IndexArray) -> FloatArray:
        """The estimate on each bootstrap resample: idx is [B, n] indices of decisions."""
        return self.combine(_resampled_sums(idx, self.columns()))


# --- numerics -----------------------------------------------------------------------------------------------


def _ratio(num: FloatArray | np.float64, den: FloatArray | np.float64) -> FloatArray:
    num_a = np.asarray(num, dtype=np.float64)
    den_a = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num_a, den_a).shape, np.nan)
    np.divide(num_a, den_a, out=out, where=den_a != 0)
    return out


def kish_ess(weight: npt.ArrayLike) -> float:
    """Kish effective sample size (sum w)^2 / sum w^2; 0 when every weight is 0."""
    w = np.asarray(weight, dtype=np.float64)
    sq = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / sq if sq > 0 else 0.0


def bootstrap_indices(n: int, n_boot: int = N_BOOT, seed: Seed = 0) -> IndexArray:
    """[n_boot, n] indices of decisions drawn with replacement from a seeded numpy Generator.

    Draw once and pass the same matrix to every estimator and to `paired_difference`: the same seed and n give
    the same matrix. Memory: 4 bytes per cell (n_boot x n), e.g. 10 MB for 500 x 5,000.
    """
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if n == 0:
        return np.zeros((n_boot, 0), dtype=np.int32)
    dtype = np.int32 if n < 2**31 else np.int64
    return rng.integers(0, n, size=(n_boot, n), dtype=dtype)


def _resampled_sums(idx: IndexArray, cols: FloatArray) -> FloatArray:
    """Column sums of each resample, [B, k]: resample counts times the columns, in blocks of rows."""
    n_boot, n = idx.shape
    if cols.shape[0] != n:
        raise ValueError(f"index matrix is over {n} decisions, the terms over {cols.shape[0]}")
    out = np.zeros((n_boot, cols.shape[1]), dtype=np.float64)
    if n == 0:
        return out
    rows = max(1, _BLOCK // n)
    for start in range(0, n_boot, rows):
        blk = idx[start : start + rows]
        counts = np.empty((blk.shape[0], n), dtype=np.float64)
        for j in range(blk.shape[0]):  # one cache-friendly bincount per resample beats one over the block
            counts[j] = np.bincount(blk[j], minlength=n)
        out[start : start + rows] = counts @ cols
    return out


def _percentile_ci(boot: FloatArray, level: float) -> tuple[float, float]:
    """Percentile interval over the resamples where the estimate is defined (a resample without any weight
    leaves a self-normalised estimate undefined)."""
    finite = boot[np.isfinite(boot)]
    if finite.size == 0:
        return (math.nan, math.nan)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def _draw(n: int, idx: IndexArray | None, n_boot: int, seed: Seed) -> IndexArray:
    if idx is None:
        return bootstrap_indices(n, n_boot, seed)
    if idx.ndim != 2 or idx.shape[1] != n:
        raise ValueError(f"idx must be [B, {n}], got {idx.shape}")
    if n and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"idx must index decisions 0..{n - 1}")
    return idx


# --- estimates ----------------------------------------------------------------------------------------------


def _resample_many(terms: list[Terms], idx: IndexArray) -> list[FloatArray]:
    """Each terms' estimate on every resample, from one pass over the resample counts."""
    cols = [t.columns() for t in terms]
    sums = _resampled_sums(idx, np.hstack(cols))
    out, start = [], 0
    for t, c in zip(terms, cols, strict=True):
        out.append(t.combine(sums[:, start : start + c.shape[1]]))
        start += c.shape[1]
    return out


def _summarise(terms: Terms, boot: FloatArray, level: float) -> Estimate:
    used = terms.used
    n_used = int(used.sum())
    if n_used == 0:
        return Estimate(math.nan, (math.nan, math.nan), 0.0, 0.0, 0, 0.0, 0)
    w = terms.weight[used]
    return Estimate(
        value=terms.value(),
        ci=_percentile_ci(boot, level),
        ess=kish_ess(w),
        max_weight=float(w.max()),
        matched=int((w > 0).sum()),
        support=n_used / len(terms),
        n=n_used,
        mean_weight=float(w.mean()),
    )


def estimate(
    terms: Terms, *, idx: IndexArray | None = None, n_boot: int = N_BOOT, seed: Seed = 0, level: float = LEVEL
) -> Estimate:
    """Value, bootstrap interval and diagnostics of one estimator's terms."""
    return _summarise(terms, terms.resample(_draw(len(terms), idx, n_boot, seed)), level)


def paired_difference(
    a_terms: Terms,
    b_terms: Terms,
    *,
    idx: IndexArray | None = None,
    n_boot: int = N_BOOT,
    seed: Seed = 0,
    level: float = LEVEL,
) -> Difference:
    """Value of policy a minus policy b on the same logged decisions, with a paired bootstrap interval: both
    policies' estimates are recomputed on the same resampled decisions, so what they share cancels out."""
    n = len(a_terms)
    if len(b_terms) != n:
        raise ValueError(f"paired terms must cover the same decisions: {n} vs {len(b_terms)}")
    a_boot, b_boot = _resample_many([a_terms, b_terms], _draw(n, idx, n_boot, seed))
    value = a_terms.value() - b_terms.value()
    return Difference(value=float(value), ci=_percentile_ci(a_boot - b_boot, level), n=n)


def estimate_many(
    terms: Mapping[str, Terms],
    *,
    idx: IndexArray | None = None,
    n_boot: int = N_BOOT,
    seed: Seed = 0,
    level: float = LEVEL,
) -> dict[str, Estimate]:
    """Several estimators' terms, all on the same bootstrap indices (drawn once unless `idx` is given)."""
    if not terms:
        return {}
    n = len(next(iter(terms.values())))
    boots = _resample_many(list(terms.values()), _draw(n, idx, n_boot, seed))
    return {name: _summarise(t, b, level) for (name, t), b in zip(terms.items(), boots, strict=True)}
