"""The candidate-grid fast path: raw scores of every (customer x channel x slot x message) cell at once.

A candidate's row is the concatenation of feature groups (customer | channel | slot | message, see
``model.domain.features``), and each group takes few distinct values on the candidate grid. A tree reaches
leaf ``l`` iff every split on its path agrees, so with ``ok_g[l, v]`` = "all splits on leaf l's path that
test a group-g feature agree for group value v":

    raw[v_1, ..., v_K] = sum over leaves l of  value[l] * ok_1[l, v_1] * ... * ok_K[l, v_K]

How the work stays small (the tables are built once per model and request shape, see ``tree_plans``; a
request only indexes them):

* each distinct split is decided once for all of its group's values (``GridScorer.decide``);
* groups with one value (the customer) prune leaves: each split ANDs in the 64-leaf words it keeps, and
  most of each tree becomes unreachable;
* for the other groups, a split's decisions for all of its group's values are one bit-packed word, so
  ``ok_g[l, :]`` for every group at once is an OR-reduction of a few words along leaf ``l``'s path;
* surviving leaves share few agreement patterns: values are summed per (left groups' pattern, right group's
  pattern) pair (patterns deduplicated by hashing), then two small matrix products give every cell.

The work is proportional to (distinct splits x group values) + (path entries of the surviving leaves), not
to trees x candidates. ``GridScores`` keeps the surviving leaves and their agreement bits, so any cell can be
explained afterwards (the same attributions as ``tree_rows`` gives for that cell's row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model.scoring.tree_bits import ALL, bits_of, ranges, unique_rows
from model.scoring.tree_format import BoolArray, CompiledTrees, FloatArray, IntArray
from model.scoring.tree_plans import GroupPlan, Keys, MultiPlan, group_plans, multi_plan
from model.scoring.tree_rows import Attributions, go_left

# Request shapes (channels x slots x messages) whose tables are kept: callers choose the shape (up to 8 x 168 x
# 20), so an unbounded cache would grow with every new one; the usual traffic uses a handful.
MULTI_CACHE = 32


class GridScorer:
    """The grid path of one model: its per-group plans (by widths) and per-shape tables (the newest few)."""

    def __init__(self, trees: CompiledTrees, attributions: Attributions) -> None:
        self.trees = trees
        self.attributions = attributions
        self.plans: dict[tuple[int, ...], list[GroupPlan]] = {}
        self.multi: dict[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], MultiPlan] = {}

    def plan(self, widths: tuple[int, ...]) -> list[GroupPlan]:
        """The group plans for feature groups of these widths (built on first use: ~15 ms for 1000 trees)."""
        plan = self.plans.get(widths)
        if plan is None:
            plan = self.plans[widths] = group_plans(self.trees, widths)
        return plan

    def multi_plan(self, widths: tuple[int, ...], sizes: tuple[int, ...], plan: list[GroupPlan]) -> MultiPlan:
        """The tables of a request shape, cached by the multi-valued groups AND their sizes (issue 13, D1)."""
        groups = tuple(g for g, n in enumerate(sizes) if n > 1)
        # The tables depend on WHICH groups are multi-valued and on their sizes: (3 channels, 1 slot) and
        # (1 channel, 3 slots) have the same multi-valued sizes but not the same plan.
        key = (widths, groups, tuple(sizes[g] for g in groups))
        mp = self.multi.get(key)
        if mp is None:
            if len(self.multi) >= MULTI_CACHE:
                del self.multi[next(iter(self.multi))]  # the oldest shape
            mp = self.multi[key] = multi_plan(self.trees, plan, sizes)
        return mp

    def decide(self, keys: Keys, x: FloatArray) -> BoolArray:
        """Decisions of `keys` for values `x` ((keys,) or (keys, V), row i for key i): `x <= threshold`, the
        categorical set where it fits a word, and LightGBM's full rule (`tree_rows.go_left`) where neither is
        exact (missing type Zero, wide sets, NaN values of numerical splits). +inf pads unused columns: it goes
        right.
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
            go[idx] = go_left(self.trees, keys.node[idx], x[idx])
        return go

    def scores(self, groups: Sequence[npt.ArrayLike]) -> GridScores:
        """Raw scores of every combination of group values, and what is needed to explain any cell.

        `groups[g]` is a (V_g, F_g) matrix of the distinct values of feature group g (columns in model
        order; the groups concatenated in order give the model's features). Cell (v_1, ..., v_K) scores the
        row groups[0][v_1] | ... | groups[K-1][v_K].
        """
        mats = [np.atleast_2d(np.asarray(g, dtype=np.float64)) for g in groups]
        widths = tuple(m.shape[1] for m in mats)
        plan = self.plan(widths)
        sizes = tuple(m.shape[0] for m in mats)
        t = self.trees
        n_leaves = len(t.leaf_node)
        # Single-valued groups (the customer) prune leaves: AND, per 64-leaf word, what each split keeps.
        alive = np.full(-(-n_leaves // 64), ALL)
        for g, mat in zip(plan, mats, strict=True):
            if mat.shape[0] == 1 and len(g.nodes):
                go = self.decide(g.keys, mat[0][g.k_feature])[g.w_key]
                kept = np.where(go, g.w_keep_left, g.w_keep_right)
                alive[g.w_words] &= np.bitwise_and.reduceat(kept, g.w_starts)
        leaves = np.flatnonzero(np.unpackbits(alive.view(np.uint8), bitorder="little")[:n_leaves])
        values = t.leaf_value[leaves]
        if all(n == 1 for n in sizes):
            return GridScores(
                self.attributions, np.full(sizes, values.sum()), leaves, np.zeros((len(leaves), 0), np.uint64), {}
            )
        # Multi-valued groups: which of its group's values does each split on a surviving leaf's path agree with?
        mp = self.multi_plan(widths, sizes, plan)
        n_words = len(mp.full)
        # Each key's values laid out at its group's bit positions (+inf elsewhere: goes right, bit 0), so one
        # decision pass and one packbits give every key's bits.
        x = np.full((len(mp.keys), 64 * n_words), np.inf)
        for k, gi in enumerate(mp.groups):
            col = 64 * mp.word[k] + mp.offset[k]
            x[mp.key_off[k] : mp.key_off[k + 1], col : col + sizes[gi]] = mats[gi].T[plan[gi].k_feature]
        left = np.packbits(self.decide(mp.keys, x), axis=1, bitorder="little").view("<u8")
        table = np.concatenate([left, ~left & mp.key_bits])  # contradicts going right | going left
        lens = mp.e_start[leaves + 1] - mp.e_start[leaves]
        sel = ranges(mp.e_start, leaves)
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
        left_keys, left_inv = unique_rows(ok & left_bits)
        right_keys, right_inv = unique_rows(ok & right_bits)
        weights = np.bincount(
            left_inv * len(right_keys) + right_inv, weights=values, minlength=len(left_keys) * len(right_keys)
        ).reshape(len(left_keys), len(right_keys))
        lhs = np.ones((len(left_keys), 1))
        order: list[int] = []
        for k, gi in enumerate(mp.groups):
            if k != right:
                lhs = (lhs[:, :, None] * bits_of(left_keys, mp.word[k], mp.offset[k], sizes[gi])[:, None, :]).reshape(
                    len(left_keys), -1
                )
                order.append(gi)
        order.append(mp.groups[right])
        rhs = bits_of(right_keys, mp.word[right], mp.offset[right], sizes[mp.groups[right]]).astype(np.float64)
        (n_left, n_right), width_left, width_right = weights.shape, lhs.shape[1], rhs.shape[1]
        if width_left * n_right * (n_left + width_right) <= n_left * width_right * (n_right + width_left):
            out = (lhs.T @ weights) @ rhs  # (product of the left sizes, right size), the cheaper order first
        else:
            out = lhs.T @ (weights @ rhs)
        # Single-valued axes are 1 wide: the reshape to `sizes` puts them back.
        shaped = out.reshape([sizes[a] for a in order]).transpose(np.argsort(order))
        result: FloatArray = np.ascontiguousarray(shaped).reshape(sizes)
        slots = {gi: (mp.word[k], mp.offset[k]) for k, gi in enumerate(mp.groups)}
        return GridScores(self.attributions, result, leaves, ok, slots)


@dataclass(frozen=True)
class GridScores:
    """Raw scores of a candidate grid, and the surviving leaves with their per-group agreement."""

    attributions: Attributions  # of the model: explains the leaves a cell reaches
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
        """Path attributions of grid cells, shape (n, n_features + 1): what ``tree_rows.contributions`` gives
        for their rows."""
        if not len(cells):
            return np.zeros((0, self.attributions.n_features + 1))
        req = np.array([self._required(c) for c in cells])  # (cells, words)
        mask = ((self.ok[None, :, :] & req[:, None, :]) == req[:, None, :]).all(axis=2)  # (cells, leaves)
        cell, leaf = np.nonzero(mask)
        return self.attributions.of_leaves(self.leaves[leaf], cell, len(cells))


def grid_rows(groups: Sequence[npt.ArrayLike]) -> FloatArray:
    """The full feature rows of a grid (every combination, C order): the slow path, for verification."""
    mats = [np.atleast_2d(np.asarray(g, dtype=np.float64)) for g in groups]
    sizes = [m.shape[0] for m in mats]
    n = math.prod(sizes)
    idx = np.indices(sizes).reshape(len(sizes), n)
    return np.concatenate([m[i] for m, i in zip(mats, idx, strict=True)], axis=1)
