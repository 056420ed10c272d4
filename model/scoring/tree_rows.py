"""Full feature rows through the compiled trees: LightGBM's decision rule, raw scores, predictions, reasons.

The decision rules are LightGBM's own (``tree.h``):

* numerical split: NaN becomes 0.0 unless the node's missing type is NaN; a missing value (NaN for type
  NaN, |x| <= 1e-35f for type Zero) follows ``default_left``; otherwise ``x <= threshold`` goes left;
* categorical split: NaN or a negative code goes right; otherwise ``int(x)`` goes left iff its bit is set
  in the node's bitset.

``walk`` takes every row down every tree at once, one level per step. It is the reference the grid path
(``tree_grid``) is tested against, and what verification at promotion compares with LightGBM.

Reasons: path attributions (Saabas, ``Attributions``): along each tree's decision path, the change of the
node value at every split is credited to the split's feature, plus a bias (the sum of root values). They
add up exactly to the raw score, as LightGBM's ``pred_contrib`` (TreeSHAP) does, and rank features much
like it; TreeSHAP would need lightgbm and scipy at serving time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model.scoring.tree_bits import ranges
from model.scoring.tree_format import MISSING_NAN, MISSING_ZERO, BoolArray, CompiledTrees, FloatArray, IntArray

ZERO_THRESHOLD = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float promoted to double)
_INT_MAX = float(2**31 - 1)


def go_left(t: CompiledTrees, nodes: IntArray, x: FloatArray, nan_rows: BoolArray | None = None) -> BoolArray:
    """Decisions of `nodes` for values `x` (shape (n,) or (n, V): row i holds values for nodes[i]).

    `nan_rows` (optional) marks the rows that may hold a NaN; other rows take the fast path.
    """
    column = x.ndim == 2

    def expand(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return a[:, None] if column else a

    go: BoolArray = x <= expand(t.threshold[nodes])
    maybe_nan = (np.isnan(x).any(axis=1) if column else np.isnan(x)) if nan_rows is None else nan_rows
    slow = np.flatnonzero(maybe_nan | (t.missing[nodes] == MISSING_ZERO))
    if len(slow):
        ns, xs = nodes[slow], x[slow]
        mt = expand(t.missing[ns])
        nan = np.isnan(xs)
        xz = np.where(nan & (mt != MISSING_NAN), 0.0, xs)
        is_missing = ((mt == MISSING_ZERO) & (np.abs(xz) <= ZERO_THRESHOLD)) | ((mt == MISSING_NAN) & nan)
        go[slow] = np.where(is_missing, expand(t.default_left[ns]), xz <= expand(t.threshold[ns]))
    cat = np.flatnonzero(t.is_cat[nodes])
    if len(cat):
        nc, xc = nodes[cat], x[cat]
        bad = np.isnan(xc) | (xc <= -1.0)  # C++ static_cast<int> truncates: (-1, 0) -> 0
        code = np.trunc(np.where(bad, 0.0, np.minimum(xc, _INT_MAX))).astype(np.int64)
        word = code >> 5
        inside = ~bad & (word < expand(t.cat_len[nc]))
        bits = t.cat_words[np.where(inside, expand(t.cat_offset[nc]) + word, 0)].astype(np.int64)
        go[cat] = inside & (((bits >> (code & 31)) & 1) == 1)
    return go


def as_rows(t: CompiledTrees, x: npt.ArrayLike) -> FloatArray:
    """`x` as a (rows, n_features) float matrix (one row may be given flat); ValueError on another width."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != t.n_features:
        raise ValueError(f"expected rows of {t.n_features} features, got shape {arr.shape}")
    return arr


def walk(t: CompiledTrees, x: FloatArray) -> FloatArray:
    """Raw scores (leaf values summed over trees) of the rows of `x`: all rows and trees a level per step."""
    n = x.shape[0]
    cur = np.broadcast_to(t.tree_root, (n, t.n_trees)).copy()
    active_r, active_t = np.nonzero(t.feature[cur] >= 0)
    while len(active_r):
        nodes = cur[active_r, active_t]
        go = go_left(t, nodes, x[active_r, t.feature[nodes]])
        nxt = np.where(go, t.left[nodes], t.right[nodes])
        cur[active_r, active_t] = nxt
        keep = t.feature[nxt] >= 0
        active_r, active_t = active_r[keep], active_t[keep]
    out: FloatArray = t.value[cur].sum(axis=1)
    return out


def transform(t: CompiledTrees, raw: FloatArray) -> FloatArray:
    """Raw score -> prediction. Like LightGBM, a random forest's raw score is the sum, its prediction the mean."""
    raw = raw * t.scale if t.scale != 1.0 else raw
    if t.link == "sigmoid":
        out: FloatArray = 1.0 / (1.0 + np.exp(-t.sigmoid * raw))
        return out
    if t.link == "exp":
        return np.exp(raw)
    return raw


def reached(t: CompiledTrees, row: FloatArray) -> BoolArray:
    """The leaf each tree reaches for one full row (a mask over leaves): every split is decided at once
    and rules out the leaf range of the subtree it does not take (marked with a difference array)."""
    nodes = t.internal
    n_leaves = len(t.leaf_node)
    go = go_left(t, nodes, row[t.feature[nodes]])
    lo = np.where(go, t.leaf_mid[nodes], t.leaf_lo[nodes])
    hi = np.where(go, t.leaf_hi[nodes], t.leaf_mid[nodes])
    cut = np.bincount(lo, minlength=n_leaves + 1) - np.bincount(hi, minlength=n_leaves + 1)
    out: BoolArray = np.cumsum(cut[:n_leaves]) == 0
    return out


@dataclass(frozen=True)
class Attributions:
    """Saabas path attributions of reached leaves: per path entry, its split's feature and value change."""

    start: IntArray  # path entries are stored leaf after leaf: leaf l's are start[l]:start[l + 1]
    delta: FloatArray  # per entry: value of the child the path takes - value of the split node
    feature: IntArray  # per entry: the split's feature
    n_features: int
    bias: float

    @staticmethod
    def of(t: CompiledTrees) -> Attributions:
        child = np.where(t.path_left, t.left[t.path_node], t.right[t.path_node])
        return Attributions(
            start=np.searchsorted(t.path_leaf, np.arange(len(t.leaf_node) + 1)),
            delta=t.value[child] - t.value[t.path_node],
            feature=t.feature[t.path_node],
            n_features=t.n_features,
            bias=t.bias,
        )

    def of_leaves(self, leaves: IntArray, row: IntArray, n_rows: int) -> FloatArray:
        """Contributions (features..., bias) of `n_rows` rows: `leaves[i]` is reached by row `row[i]`."""
        n = self.n_features
        lens = self.start[leaves + 1] - self.start[leaves]
        entries = ranges(self.start, leaves)
        out = np.empty((n_rows, n + 1))
        out[:, :-1] = np.bincount(
            np.repeat(row, lens) * n + self.feature[entries], weights=self.delta[entries], minlength=n_rows * n
        ).reshape(n_rows, n)
        out[:, -1] = self.bias
        return out


def contributions(t: CompiledTrees, attributions: Attributions, x: npt.ArrayLike) -> FloatArray:
    """Per-feature path attributions of full rows, shape (n, n_features + 1), the last column the bias."""
    rows = as_rows(t, x)
    out = np.zeros((rows.shape[0], t.n_features + 1))
    for i, row in enumerate(rows):
        leaves = np.flatnonzero(reached(t, row))
        out[i] = attributions.of_leaves(leaves, np.zeros(len(leaves), dtype=np.int64), 1)[0]
    return out
