"""A LightGBM model "compiled" to flat numpy arrays, evaluated without lightgbm, fastest on a candidate grid.

Why not LightGBM itself at serving time: ``import lightgbm`` needs scipy (81 MB) and libgomp, which would
blow the scoring artifact's budget (no scipy, pandas or scikit-learn in it) and its cold start. Its
``pred_contrib`` (TreeSHAP) needs the same stack, so reasons are computed here too (see ``contributions``).

At promotion (``training/compile.py``) ``booster.dump_model()`` is flattened into arrays and saved as one
``.npz`` (plain little-endian arrays: architecture-independent, no pickle). The decision rules are
LightGBM's own (``tree.h``):

* numerical split: NaN becomes 0.0 unless the node's missing type is NaN; a missing value (NaN for type
  NaN, |x| <= 1e-35f for type Zero) follows ``default_left``; otherwise ``x <= threshold`` goes left;
* categorical split: NaN or a negative code goes right; otherwise ``int(x)`` goes left iff its bit is set
  in the node's bitset.

The grid fast path. A candidate's row is the concatenation of feature groups (customer | channel | slot |
message, see ``model.domain.features``), and each group takes few distinct values on the candidate grid. A tree
reaches leaf ``l`` iff every split on its path agrees, so with ``ok_g[l, v]`` = "all splits on leaf l's path
that test a group-g feature agree for group value v":

    raw[v_1, ..., v_K] = sum over leaves l of  value[l] * ok_1[l, v_1] * ... * ok_K[l, v_K]

How the work stays small (all per-model structures are built once per model and request shape, see
``_GroupPlan`` and ``_MultiPlan``; a request only indexes them):

* decisions are taken once per distinct split (feature, threshold, missing handling, category set), not per
  node: LightGBM bins each feature into at most ``max_bin`` thresholds, so 500 trees share a few hundred;
* groups with one value (the customer) prune leaves: leaves are numbered depth-first, so a subtree's leaves
  are a contiguous range, the surviving set is a bitset of 64-leaf words and each split ANDs in what it keeps
  (most of each tree becomes unreachable);
* for the other groups, a split's decisions for all of its group's values are one bit-packed word, so
  ``ok_g[l, :]`` for every group at once is an OR-reduction of a few words along leaf ``l``'s path;
* surviving leaves share few agreement patterns: values are summed per (left groups' pattern, right group's
  pattern) pair (patterns deduplicated by hashing), then two small matrix products give every cell.

The work is proportional to (distinct splits x group values) + (path entries of the surviving leaves), not
to trees x candidates.

Reasons: ``contributions`` gives path attributions (Saabas): along each tree's decision path, the change of
the node value at every split is credited to the split's feature, plus a bias (the sum of root values).
They add up exactly to the raw score, as ``pred_contrib`` does, and rank features much like it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model.scoring.tree_format import (
    MISSING_NAN,
    MISSING_ZERO,
    BoolArray,
    CompiledTrees,
    CompileError,
    FloatArray,
    IntArray,
)

__all__ = ["CompileError", "FloatArray", "GridScores", "TreeScorer", "grid_rows"]

ZERO_THRESHOLD = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float promoted to double)
_INT_MAX = float(2**31 - 1)
# Request shapes (channels x slots x messages) whose tables are kept: callers choose the shape (up to 8 x 168 x
# 20), so an unbounded cache would grow with every new one; the usual traffic uses a handful.
_MULTI_CACHE = 32


@dataclass(frozen=True)
class _Keys:
    """Distinct splits ("keys": feature, threshold, missing type, default direction, category set).

    Decisions are taken per key, not per node: LightGBM bins each feature into at most `max_bin`
    thresholds, so the 500 trees of a feature group share a few hundred keys.
    """

    node: IntArray  # a node with that split (LightGBM's full rule is evaluated on it when needed)
    threshold: FloatArray
    # Where `x <= threshold` is not LightGBM's rule: categorical splits whose set fits one uint64 word
    # (`cat_bits`, tested inline), and the rest (missing type Zero, wider sets) for the full `_go_left`.
    narrow_cat: BoolArray
    cat_bits: npt.NDArray[np.uint64]
    slow: BoolArray

    def __len__(self) -> int:
        return len(self.node)

    @staticmethod
    def concat(parts: Sequence[_Keys]) -> _Keys:
        return _Keys(*(np.concatenate([getattr(k, f) for k in parts]) for f in _Keys.__dataclass_fields__))


@dataclass(frozen=True)
class _GroupPlan:
    """Per-model structures of one feature group, built once: the per-request work only indexes them."""

    nodes: IntArray  # internal nodes that test a feature of this group
    keys: _Keys
    k_feature: IntArray  # per key: its feature, relative to the group's first column
    # When the group has ONE value (the customer), its splits prune leaves. Leaves are numbered depth-first,
    # so a subtree's leaves are a contiguous range; the leaf set is a bitset of 64-leaf words, and a split
    # keeps the leaves of the branch it takes: one AND per (node, word its subtree overlaps).
    w_key: IntArray  # entry -> key of its node
    w_keep_left: npt.NDArray[np.uint64]  # the entry's word with the right subtree's leaves cleared
    w_keep_right: npt.NDArray[np.uint64]  # ... with the left subtree's leaves cleared
    w_words: IntArray  # the distinct words touched, and where their entries start (sorted by word)
    w_starts: IntArray
    # When the group has several values: its path entries (leaf, key of the node, direction), leaf by leaf.
    e_leaf: IntArray
    e_key: IntArray
    e_left: BoolArray


@dataclass(frozen=True)
class _MultiPlan:
    """The path entries of all multi-valued groups of one request shape, as one CSR by leaf.

    A key's decisions for all values of its group are bit-packed (bit v: value v goes left) into the
    group's place in a few uint64 words (groups share a word while they fit: 8 channels + 48 slots + 3
    messages is one word). The table has two rows per key of every group: the values that contradict an
    entry going right (they go left), and those that contradict an entry going left. One gather and one
    OR-reduction per leaf then tell, for every group at once, which values the leaf's splits agree with.
    """

    groups: tuple[int, ...]  # group indices, in plan order
    keys: _Keys  # the groups' keys, concatenated
    key_off: IntArray  # group k's keys are keys[key_off[k]:key_off[k + 1]]
    key_bits: npt.NDArray[np.uint64]  # (keys, words): the bits of the key's group
    e_start: IntArray  # CSR offsets by leaf
    e_row: IntArray  # table row: the entry's key, plus len(keys) if the entry goes left
    word: tuple[int, ...]  # per group: first word and bit offset of its values
    offset: tuple[int, ...]
    bits: npt.NDArray[np.uint64]  # (groups, words): each group's value bits
    full: npt.NDArray[np.uint64]  # (words,): every group's value bits set


class TreeScorer(CompiledTrees):
    """A compiled LightGBM booster (single output: binary / regression-like objectives)."""

    def __init__(self, arrays: Mapping[str, npt.NDArray[Any]], meta: Mapping[str, Any]) -> None:
        super().__init__(arrays, meta)
        # Path entries are stored leaf after leaf: leaf l's entries are path_start[l]:path_start[l + 1].
        self._path_start: IntArray = np.searchsorted(self.path_leaf, np.arange(len(self.leaf_node) + 1))
        # Per path entry: the split's feature and the change of node value it causes (Saabas attribution).
        child = np.where(self.path_left, self.left[self.path_node], self.right[self.path_node])
        self._entry_delta: FloatArray = self.value[child] - self.value[self.path_node]
        self._entry_feature: IntArray = self.feature[self.path_node]
        self._plans: dict[tuple[int, ...], list[_GroupPlan]] = {}
        self._multi: dict[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], _MultiPlan] = {}

    # ------------------------------------------------------------------ LightGBM's decision rule
    def _go_left(self, nodes: IntArray, x: FloatArray, nan_rows: BoolArray | None = None) -> BoolArray:
        """Decisions of `nodes` for values `x` (shape (n,) or (n, V): row i holds values for nodes[i]).

        `nan_rows` (optional) marks the rows that may hold a NaN; other rows take the fast path.
        """
        column = x.ndim == 2

        def expand(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return a[:, None] if column else a

        go: BoolArray = x <= expand(self.threshold[nodes])
        maybe_nan = (np.isnan(x).any(axis=1) if column else np.isnan(x)) if nan_rows is None else nan_rows
        slow = np.flatnonzero(maybe_nan | (self.missing[nodes] == MISSING_ZERO))
        if len(slow):
            ns, xs = nodes[slow], x[slow]
            mt = expand(self.missing[ns])
            nan = np.isnan(xs)
            xz = np.where(nan & (mt != MISSING_NAN), 0.0, xs)
            is_missing = ((mt == MISSING_ZERO) & (np.abs(xz) <= ZERO_THRESHOLD)) | ((mt == MISSING_NAN) & nan)
            go[slow] = np.where(is_missing, expand(self.default_left[ns]), xz <= expand(self.threshold[ns]))
        cat = np.flatnonzero(self.is_cat[nodes])
        if len(cat):
            nc, xc = nodes[cat], x[cat]
            bad = np.isnan(xc) | (xc <= -1.0)  # C++ static_cast<int> truncates: (-1, 0) -> 0
            code = np.trunc(np.where(bad, 0.0, np.minimum(xc, _INT_MAX))).astype(np.int64)
            word = code >> 5
            inside = ~bad & (word < expand(self.cat_len[nc]))
            bits = self.cat_words[np.where(inside, expand(self.cat_offset[nc]) + word, 0)].astype(np.int64)
            go[cat] = inside & (((bits >> (code & 31)) & 1) == 1)
        return go

    # ------------------------------------------------------------------ row-wise evaluation
    def _walk(self, x: FloatArray, contrib: FloatArray | None) -> FloatArray:
        """Leaf values summed over trees for each row of `x` (and Saabas contributions if asked)."""
        n = x.shape[0]
        cur = np.broadcast_to(self.tree_root, (n, self.n_trees)).copy()
        active_r, active_t = np.nonzero(self.feature[cur] >= 0)
        while len(active_r):
            nodes = cur[active_r, active_t]
            feats = self.feature[nodes]
            go = self._go_left(nodes, x[active_r, feats])
            nxt = np.where(go, self.left[nodes], self.right[nodes])
            if contrib is not None:
                np.add.at(contrib, (active_r, feats), self.value[nxt] - self.value[nodes])
            cur[active_r, active_t] = nxt
            keep = self.feature[nxt] >= 0
            active_r, active_t = active_r[keep], active_t[keep]
        out: FloatArray = self.value[cur].sum(axis=1)
        return out

    def _rows(self, x: npt.ArrayLike) -> FloatArray:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {arr.shape}")
        return arr

    def raw(self, x: npt.ArrayLike) -> FloatArray:
        """Raw scores (LightGBM ``raw_score=True``) of full feature rows."""
        return self._walk(self._rows(x), None)

    def transform(self, raw: FloatArray) -> FloatArray:
        """Raw score -> prediction. Like LightGBM, a random forest's raw score is the sum, its prediction the mean."""
        raw = raw * self.scale if self.scale != 1.0 else raw
        if self.link == "sigmoid":
            out: FloatArray = 1.0 / (1.0 + np.exp(-self.sigmoid * raw))
            return out
        if self.link == "exp":
            return np.exp(raw)
        return raw

    def predict(self, x: npt.ArrayLike) -> FloatArray:
        """Predictions as LightGBM's ``booster.predict`` (probabilities for binary)."""
        return self.transform(self.raw(x))

    def contributions(self, x: npt.ArrayLike) -> FloatArray:
        """Per-feature path attributions, shape (n, n_features + 1), the last column the bias; rows sum to raw."""
        rows = self._rows(x)
        contrib = np.zeros((rows.shape[0], self.n_features + 1))
        for i, row in enumerate(rows):
            contrib[i] = self.path_contributions(np.flatnonzero(self._reached(row)))
        return contrib

    def _reached(self, row: FloatArray) -> BoolArray:
        """The leaf each tree reaches for one full row (a mask over leaves): every split is decided at once
        and rules out the leaf range of the subtree it does not take (marked with a difference array)."""
        nodes = self.internal
        n_leaves = len(self.leaf_node)
        go = self._go_left(nodes, row[self.feature[nodes]])
        lo = np.where(go, self.leaf_mid[nodes], self.leaf_lo[nodes])
        hi = np.where(go, self.leaf_hi[nodes], self.leaf_mid[nodes])
        cut = np.bincount(lo, minlength=n_leaves + 1) - np.bincount(hi, minlength=n_leaves + 1)
        reached: BoolArray = np.cumsum(cut[:n_leaves]) == 0
        return reached

    # ------------------------------------------------------------------ the candidate-grid fast path
    def prepare(self, widths: tuple[int, ...]) -> None:
        """Build the per-model tables of the grid path for these feature groups now (~15 ms for a 1000-tree
        model), at load time, rather than in the first request."""
        self._plan(widths)

    def _plan(self, widths: tuple[int, ...]) -> list[_GroupPlan]:
        plan = self._plans.get(widths)
        if plan is not None:
            return plan
        if sum(widths) != self.n_features:
            raise ValueError(f"feature groups of widths {widths} do not cover the {self.n_features} features")
        plan = []
        key_of = np.full(len(self.feature), -1, np.int64)
        path_feature = self.feature[self.path_node]
        # First 64 bits of each categorical split's set; "narrow" when the set has no category beyond 63.
        offset, n_cat = self.cat_offset, self.cat_len
        high = np.where(n_cat > 1, self.cat_words[np.minimum(offset + 1, len(self.cat_words) - 1)], 0)
        cat_bits = self.cat_words[offset].astype(np.uint64) | (high.astype(np.uint64) << np.uint64(32))
        narrow = self.is_cat & (n_cat <= 2)
        cat_bits = np.where(narrow, cat_bits, np.uint64(0))
        start = 0
        for width in widths:
            f = self.feature[self.internal]
            nodes = self.internal[(f >= start) & (f < start + width)].astype(np.int64)
            fields = np.column_stack(
                [
                    self.feature[nodes],
                    self.threshold[nodes].view(np.int64),
                    self.missing[nodes],
                    self.default_left[nodes],
                    self.is_cat[nodes],
                    cat_bits[nodes].view(np.int64),
                    np.where(self.is_cat[nodes] & ~narrow[nodes], nodes, -1),  # wide sets: a key each
                ]
            ).astype(np.int64)
            _, first, inverse = np.unique(fields, axis=0, return_index=True, return_inverse=True)
            k_node = nodes[first]
            key_of[nodes] = inverse.reshape(-1)
            in_group = (path_feature >= start) & (path_feature < start + width)
            # (node, word) entries: every 64-leaf word that the node's subtree overlaps.
            lo, mid, hi = self.leaf_lo[nodes], self.leaf_mid[nodes], self.leaf_hi[nodes]
            first_word = lo >> 6
            n_words = ((hi - 1) >> 6) - first_word + 1
            w_pos = np.repeat(np.arange(len(nodes)), n_words)
            word = np.repeat(first_word - (np.cumsum(n_words) - n_words), n_words) + np.arange(len(w_pos))
            order = np.argsort(word, kind="stable")
            words, starts = np.unique(word[order], return_index=True)
            w_pos = w_pos[order]
            word = word[order]
            keys = _Keys(
                node=k_node,
                threshold=self.threshold[k_node],
                narrow_cat=narrow[k_node],
                cat_bits=cat_bits[k_node],
                slow=(self.is_cat[k_node] & ~narrow[k_node])
                | (~self.is_cat[k_node] & (self.missing[k_node] == MISSING_ZERO)),
            )
            plan.append(
                _GroupPlan(
                    nodes=nodes,
                    keys=keys,
                    k_feature=self.feature[k_node] - start,
                    w_key=key_of[nodes[w_pos]],
                    w_keep_left=~_word_bits(mid[w_pos], hi[w_pos], word),
                    w_keep_right=~_word_bits(lo[w_pos], mid[w_pos], word),
                    w_words=words.astype(np.int64),
                    w_starts=starts.astype(np.int64),
                    e_leaf=self.path_leaf[in_group],
                    e_key=key_of[self.path_node[in_group]],
                    e_left=self.path_left[in_group],
                )
            )
            start += width
        self._plans[widths] = plan
        return plan

    def _multi_plan(self, widths: tuple[int, ...], sizes: tuple[int, ...], plan: list[_GroupPlan]) -> _MultiPlan:
        groups = tuple(g for g, n in enumerate(sizes) if n > 1)
        # The tables depend on WHICH groups are multi-valued and on their sizes: (3 channels, 1 slot) and
        # (1 channel, 3 slots) have the same multi-valued sizes but not the same plan.
        key = (widths, groups, tuple(sizes[g] for g in groups))
        mp = self._multi.get(key)
        if mp is not None:
            return mp
        word, offset = [], []
        w, o = 0, 0
        for g in groups:
            v = sizes[g]
            if o and (v > 64 or o + v > 64):  # a group starts a new word rather than straddle two
                w, o = w + 1, 0
            word.append(w)
            offset.append(o)
            if v > 64:
                w, o = w + -(-v // 64), 0
            else:
                o += v
        n_words = w + (1 if o else 0)
        group_bits = np.zeros((len(groups), n_words), dtype=np.uint64)
        key_off = np.cumsum([0, *(len(plan[g].keys) for g in groups)])
        n_keys = int(key_off[-1])
        leaf, row, key_group = [], [], []
        for k, g in enumerate(groups):
            ones = _pack(np.ones((1, sizes[g]), dtype=bool))[0]
            if len(ones) == 1:
                group_bits[k, word[k]] = ones[0] << np.uint64(offset[k])
            else:
                group_bits[k, word[k] : word[k] + len(ones)] = ones
            p = plan[g]
            leaf.append(p.e_leaf)
            row.append(p.e_key + key_off[k] + np.where(p.e_left, n_keys, 0))
            key_group.append(np.full(len(p.keys), k))
        e_leaf = np.concatenate(leaf)
        order = np.argsort(e_leaf, kind="stable")
        mp = _MultiPlan(
            groups=groups,
            keys=_Keys.concat([plan[g].keys for g in groups]),
            key_off=key_off,
            key_bits=group_bits[np.concatenate(key_group)].reshape(n_keys, n_words),
            e_start=np.searchsorted(e_leaf[order], np.arange(len(self.leaf_node) + 1)),
            e_row=np.concatenate(row)[order],
            word=tuple(word),
            offset=tuple(offset),
            bits=group_bits,
            full=np.bitwise_or.reduce(group_bits, axis=0),
        )
        if len(self._multi) >= _MULTI_CACHE:
            del self._multi[next(iter(self._multi))]  # the oldest shape
        self._multi[key] = mp
        return mp

    def _decide(self, keys: _Keys, x: FloatArray) -> BoolArray:
        """Decisions of `keys` for values `x` ((keys,) or (keys, V), row i for key i): `x <= threshold`, the
        categorical set where it fits a word, and LightGBM's full rule (`_go_left`) where neither is exact
        (missing type Zero, wide sets, NaN values of numerical splits). +inf pads unused columns: it goes right.
        """
        column = x.ndim == 2
        go: BoolArray = x <= (keys.threshold[:, None] if column else keys.threshold)
        cat = np.flatnonzero(keys.narrow_cat)
        if len(cat):
            xc = x[cat]
            # LightGBM: NaN and codes <= -1 go right; int(x) truncates, so (-1, 0) is category 0.
            inside = (xc > -1.0) & (xc < 64.0)
            code = np.where(inside & (xc > 0.0), xc, 0.0).astype(np.uint64)
            bits = keys.cat_bits[cat][:, None] if column else keys.cat_bits[cat]
            go[cat] = inside & (((bits >> code) & np.uint64(1)) != 0)
        nan = np.isnan(x)
        idx = np.flatnonzero(keys.slow | ((nan.any(axis=1) if column else nan) & ~keys.narrow_cat))
        if len(idx):
            go[idx] = self._go_left(keys.node[idx], x[idx])
        return go

    def grid_raw(self, groups: Sequence[npt.ArrayLike]) -> FloatArray:
        """Raw scores of every combination of group values: result[v_1, ..., v_K].

        `groups[g]` is a (V_g, F_g) matrix of the distinct values of feature group g (columns in model
        order; the groups concatenated in order give the model's features). The row of combination
        (v_1, ..., v_K) is the concatenation of groups[0][v_1], ..., groups[K-1][v_K].
        """
        return self.grid(groups).raw

    def grid(self, groups: Sequence[npt.ArrayLike]) -> GridScores:
        """`grid_raw`, keeping what is needed to explain any cell (`GridScores.contributions`)."""
        mats = [np.atleast_2d(np.asarray(g, dtype=np.float64)) for g in groups]
        widths = tuple(m.shape[1] for m in mats)
        plan = self._plan(widths)
        sizes = tuple(m.shape[0] for m in mats)
        n_leaves = len(self.leaf_node)
        # Single-valued groups (the customer) prune leaves: AND, per 64-leaf word, what each split keeps.
        alive = np.full(-(-n_leaves // 64), _ALL)
        for g, mat in zip(plan, mats, strict=True):
            if mat.shape[0] == 1 and len(g.nodes):
                go = self._decide(g.keys, mat[0][g.k_feature])[g.w_key]
                kept = np.where(go, g.w_keep_left, g.w_keep_right)
                alive[g.w_words] &= np.bitwise_and.reduceat(kept, g.w_starts)
        leaves = np.flatnonzero(np.unpackbits(alive.view(np.uint8), bitorder="little")[:n_leaves])
        values = self.leaf_value[leaves]
        if all(n == 1 for n in sizes):
            return GridScores(self, np.full(sizes, values.sum()), leaves, np.zeros((len(leaves), 0), np.uint64), {})
        # Multi-valued groups: which of its group's values does each split on a surviving leaf's path agree with?
        mp = self._multi_plan(widths, sizes, plan)
        n_words = len(mp.full)
        # Each key's values laid out at its group's bit positions (+inf elsewhere: goes right, bit 0), so one
        # decision pass and one packbits give every key's bits.
        x = np.full((len(mp.keys), 64 * n_words), np.inf)
        for k, gi in enumerate(mp.groups):
            col = 64 * mp.word[k] + mp.offset[k]
            x[mp.key_off[k] : mp.key_off[k + 1], col : col + sizes[gi]] = mats[gi].T[plan[gi].k_feature]
        left = np.packbits(self._decide(mp.keys, x), axis=1, bitorder="little").view("<u8")
        table = np.concatenate([left, ~left & mp.key_bits])  # contradicts going right | going left
        lens = mp.e_start[leaves + 1] - mp.e_start[leaves]
        sel = _ranges(mp.e_start, leaves)
        flat = n_words == 1  # the usual case: 1-D arrays, cheaper to index than (n, 1)
        wrong = (table.reshape(-1) if flat else table)[mp.e_row[sel]]  # per entry: values that contradict it
        ok = np.tile(mp.full, (len(leaves), 1))
        has = lens > 0
        if has.any():
            bad = np.bitwise_or.reduceat(wrong, (np.cumsum(lens) - lens)[has], axis=0)
            ok[has] = (~bad & mp.full[0])[:, None] if flat else ~bad & mp.full
        # raw = sum over leaves of value x (left groups' agreement, outer product) x (right group's agreement).
        # Leaves share few agreement patterns per side: sum the values per (left, right) pattern pair, then
        # two small GEMMs over the distinct patterns instead of one over every leaf.
        right = max(range(len(mp.groups)), key=lambda k: sizes[mp.groups[k]])
        right_bits = mp.bits[right]
        left_bits = np.bitwise_or.reduce(np.delete(mp.bits, right, axis=0), axis=0)
        left_keys, left_inv = _unique_rows(ok & left_bits)
        right_keys, right_inv = _unique_rows(ok & right_bits)
        weights = np.bincount(
            left_inv * len(right_keys) + right_inv, weights=values, minlength=len(left_keys) * len(right_keys)
        ).reshape(len(left_keys), len(right_keys))
        lhs = np.ones((len(left_keys), 1))
        order: list[int] = []
        for k, gi in enumerate(mp.groups):
            if k != right:
                lhs = (lhs[:, :, None] * _bits_of(left_keys, mp.word[k], mp.offset[k], sizes[gi])[:, None, :]).reshape(
                    len(left_keys), -1
                )
                order.append(gi)
        order.append(mp.groups[right])
        rhs = _bits_of(right_keys, mp.word[right], mp.offset[right], sizes[mp.groups[right]]).astype(np.float64)
        (n_left, n_right), width_left, width_right = weights.shape, lhs.shape[1], rhs.shape[1]
        if width_left * n_right * (n_left + width_right) <= n_left * width_right * (n_right + width_left):
            out = (lhs.T @ weights) @ rhs  # (product of the left sizes, right size), the cheaper order first
        else:
            out = lhs.T @ (weights @ rhs)
        # Single-valued axes are 1 wide: the reshape to `sizes` puts them back.
        shaped = out.reshape([sizes[a] for a in order]).transpose(np.argsort(order))
        result: FloatArray = np.ascontiguousarray(shaped).reshape(sizes)
        slots = {gi: (mp.word[k], mp.offset[k]) for k, gi in enumerate(mp.groups)}
        return GridScores(self, result, leaves, ok, slots)

    def path_contributions(self, reached: IntArray) -> FloatArray:
        """Saabas contributions (features..., bias) of one row given the leaves it reaches (one per tree)."""
        out: FloatArray = self.path_contributions_many(reached, np.zeros(len(reached), dtype=np.int64), 1)[0]
        return out

    def path_contributions_many(self, leaves: IntArray, row: IntArray, n_rows: int) -> FloatArray:
        """`path_contributions` of several rows at once: `leaves[i]` is reached by row `row[i]`."""
        n = self.n_features
        lens = self._path_start[leaves + 1] - self._path_start[leaves]
        entries = _ranges(self._path_start, leaves)
        out = np.empty((n_rows, n + 1))
        out[:, :-1] = np.bincount(
            np.repeat(row, lens) * n + self._entry_feature[entries],
            weights=self._entry_delta[entries],
            minlength=n_rows * n,
        ).reshape(n_rows, n)
        out[:, -1] = self.bias
        return out


@dataclass(frozen=True)
class GridScores:
    """Raw scores of a candidate grid, and the surviving leaves with their per-group agreement."""

    scorer: TreeScorer
    raw: FloatArray
    leaves: IntArray  # leaves some cell may reach
    ok: npt.NDArray[np.uint64]  # (len(leaves), words): bit set = the leaf's splits agree with that group value
    slots: dict[int, tuple[int, int]]  # multi-valued grid axis -> (first word, bit offset) of its values in `ok`

    def _required(self, cell: Sequence[int]) -> npt.NDArray[np.uint64]:
        """The agreement bits a leaf needs to be reached by `cell`."""
        req = [0] * self.ok.shape[1]
        for axis, (word, offset) in self.slots.items():
            bit = offset + int(cell[axis])
            req[word + bit // 64] |= 1 << (bit % 64)
        return np.array(req, dtype=np.uint64)

    def reached(self, cell: Sequence[int]) -> IntArray:
        """The leaves (one per tree) that grid cell `cell` (one index per group) reaches."""
        req = self._required(cell)
        out: IntArray = self.leaves[((self.ok & req) == req).all(axis=1)]
        return out

    def contributions(self, cells: Sequence[Sequence[int]]) -> FloatArray:
        """Path attributions of grid cells, shape (n, n_features + 1): what ``contributions`` gives for their rows."""
        if not len(cells):
            return np.zeros((0, self.scorer.n_features + 1))
        req = np.array([self._required(c) for c in cells])  # (cells, words)
        mask = ((self.ok[None, :, :] & req[:, None, :]) == req[:, None, :]).all(axis=2)  # (cells, leaves)
        cell, leaf = np.nonzero(mask)
        return self.scorer.path_contributions_many(self.leaves[leaf], cell, len(cells))


_ALL = np.uint64(2**64 - 1)


def _ranges(start: IntArray, items: IntArray) -> IntArray:
    """Concatenation of start[i]:start[i + 1] for i in items (CSR rows), as one index array."""
    lo, hi = start[items], start[items + 1]
    lens = hi - lo
    total = int(lens.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(lo - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
    out: IntArray = offsets + np.arange(total)
    return out


# Odd 64-bit multipliers for multiplicative hashing (golden ratio and two other well-mixed constants).
_HASH_MULTIPLIERS = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))


def _unique_rows(words: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.uint64], IntArray]:
    """Distinct rows of a (n, words) array (in no particular order) and, per row, the index of its distinct row.

    One word per row (the usual case) is deduplicated by hashing, not sorting: sorting a few thousand keys
    costs ~20 ns per key here, a hash pass a few. Each key is hashed into a table of buckets; a bucket keeps
    one of the keys that fell in it, the rows holding that key are resolved, and the rows of colliding keys
    go round again with another multiplier (np.unique after that: never needed in practice)."""
    if words.shape[1] != 1:
        keys, inverse = np.unique(words, axis=0, return_inverse=True)
        return keys, inverse.reshape(-1)
    keys = words[:, 0]
    todo: IntArray | None = None  # rows still unresolved (None: all of them, in the first round)
    inverse = np.empty(len(keys), dtype=np.int64)
    found: list[npt.NDArray[np.uint64]] = []
    count = 0
    for multiplier in _HASH_MULTIPLIERS:
        bits = min(16, max(6, (2 * len(keys)).bit_length()))  # buckets >= 2 x rows: few collisions
        bucket = ((keys * multiplier) >> np.uint64(64 - bits)).view(np.int64)  # the product wraps on purpose
        held = np.zeros(1 << bits, dtype=np.uint64)
        held[bucket] = keys  # one of the bucket's keys (which one does not matter)
        hit = held[bucket] == keys
        done = bool(hit.all())
        used = np.zeros(1 << bits, dtype=bool)
        used[bucket if done else bucket[hit]] = True
        distinct = np.flatnonzero(used)
        index = np.empty(1 << bits, dtype=np.int64)
        index[distinct] = np.arange(count, count + len(distinct))
        found.append(held[distinct])
        count += len(distinct)
        if done and todo is None:
            return found[0][:, None], index[bucket]
        rows = np.arange(len(keys)) if todo is None else todo
        if done:
            inverse[rows] = index[bucket]
            return np.concatenate(found)[:, None], inverse
        inverse[rows[hit]] = index[bucket[hit]]
        todo, keys = rows[~hit], keys[~hit]
    rest, rest_inverse = np.unique(keys, return_inverse=True)
    assert todo is not None
    inverse[todo] = rest_inverse.reshape(-1) + count
    return np.concatenate([*found, rest])[:, None], inverse


def _bits_of(words: npt.NDArray[np.uint64], word: int, offset: int, n: int) -> BoolArray:
    """(rows, n) booleans: bits offset .. offset + n - 1 counted from word `word` of each row."""
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, 64 * word + offset : 64 * word + offset + n]
    out: BoolArray = bits.view(np.bool_)
    return out


def _word_bits(lo: IntArray, hi: IntArray, word: IntArray) -> npt.NDArray[np.uint64]:
    """Bits of leaves [lo, hi) that fall in 64-leaf word `word` (elementwise)."""
    a = np.clip(lo - 64 * word, 0, 64).astype(np.uint64)
    b = np.clip(hi - 64 * word, 0, 64).astype(np.uint64)

    def below(k: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:  # the k lowest bits (k = 64: all)
        out: npt.NDArray[np.uint64] = np.where(k >= 64, _ALL, (np.uint64(1) << np.minimum(k, 63)) - np.uint64(1))
        return out

    out: npt.NDArray[np.uint64] = below(b) & ~below(a)
    return out


def _pack(flags: BoolArray) -> npt.NDArray[np.uint64]:
    """(n, V) booleans -> (n, ceil(V / 64)) uint64 words, bit v of the row = flags[:, v]."""
    n, v = flags.shape
    words = -(-v // 64)
    packed = np.packbits(flags, axis=1, bitorder="little")
    padded = np.zeros((n, words * 8), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return padded.view("<u8")


def grid_rows(groups: Sequence[npt.ArrayLike]) -> FloatArray:
    """The full feature rows of a grid (every combination, C order): the slow path, for verification."""
    mats = [np.atleast_2d(np.asarray(g, dtype=np.float64)) for g in groups]
    sizes = [m.shape[0] for m in mats]
    n = math.prod(sizes)
    idx = np.indices(sizes).reshape(len(sizes), n)
    return np.concatenate([m[i] for m, i in zip(mats, idx, strict=True)], axis=1)
