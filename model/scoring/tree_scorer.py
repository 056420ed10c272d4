"""A LightGBM model "compiled" to flat numpy arrays, evaluated without lightgbm, fastest on a candidate grid.

Why not LightGBM itself at serving time: ``import lightgbm`` needs scipy (81 MB) and libgomp, which would
blow the scoring artifact's budget (no scipy, pandas or scikit-learn in it) and its cold start. Its
``pred_contrib`` (TreeSHAP) needs the same stack, so reasons are computed here too.

``TreeScorer`` is the one object callers use; the work is done by one module per job:

* ``tree_format``: the arrays, flattened from ``booster.dump_model()`` at promotion, saved as one .npz and
  loaded with every check (sizes, dtypes, index ranges, finiteness, tree structure) before use;
* ``tree_rows``: LightGBM's decision rule, the row walk (raw scores, predictions) and path attributions;
* ``tree_plans`` and ``tree_grid``: the candidate-grid fast path (per-group plans and per-shape tables,
  built once; a request only indexes them) and ``GridScores``, which explains any cell afterwards;
* ``tree_bits``: the CSR, bitset and hashing helpers both paths share.

Everything is proven equal to LightGBM (tests/unit/test_tree_scorer*.py) and verified again on every model
at promotion (``training/compile.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from model.scoring import tree_rows
from model.scoring.tree_format import CompiledTrees, CompileError, FloatArray, IntArray
from model.scoring.tree_grid import GridScorer, GridScores, grid_rows
from model.scoring.tree_plans import GroupPlan, MultiPlan

__all__ = ["CompileError", "FloatArray", "GridScores", "TreeScorer", "grid_rows"]


class TreeScorer(CompiledTrees):
    """A compiled LightGBM booster (single output: binary / regression-like objectives).

    Build with ``from_dump`` (promotion) or ``from_bytes`` (a stored file, checked); ``to_bytes`` saves it.
    """

    def __init__(self, arrays: Mapping[str, npt.NDArray[Any]], meta: Mapping[str, Any]) -> None:
        super().__init__(arrays, meta)  # checks the arrays
        self._attributions = tree_rows.Attributions.of(self)
        self._grid = GridScorer(self, self._attributions)

    # ------------------------------------------------------------------ full rows
    def raw(self, x: npt.ArrayLike) -> FloatArray:
        """Raw scores (LightGBM ``raw_score=True``) of full feature rows."""
        return tree_rows.walk(self, tree_rows.as_rows(self, x))

    def transform(self, raw: FloatArray) -> FloatArray:
        """Raw score -> prediction. Like LightGBM, a random forest's raw score is the sum, its prediction the mean."""
        return tree_rows.transform(self, raw)

    def predict(self, x: npt.ArrayLike) -> FloatArray:
        """Predictions as LightGBM's ``booster.predict`` (probabilities for binary)."""
        return self.transform(self.raw(x))

    def contributions(self, x: npt.ArrayLike) -> FloatArray:
        """Per-feature path attributions, shape (n, n_features + 1), the last column the bias; rows sum to raw."""
        return tree_rows.contributions(self, self._attributions, x)

    def path_contributions(self, reached: IntArray) -> FloatArray:
        """Saabas contributions (features..., bias) of one row given the leaves it reaches (one per tree)."""
        out: FloatArray = self.path_contributions_many(reached, np.zeros(len(reached), dtype=np.int64), 1)[0]
        return out

    def path_contributions_many(self, leaves: IntArray, row: IntArray, n_rows: int) -> FloatArray:
        """`path_contributions` of several rows at once: `leaves[i]` is reached by row `row[i]`."""
        return self._attributions.of_leaves(leaves, row, n_rows)

    # ------------------------------------------------------------------ the candidate grid
    def prepare(self, widths: tuple[int, ...]) -> None:
        """Build the per-model tables of the grid path for these feature groups now (~15 ms for a 1000-tree
        model), at load time, rather than in the first request."""
        self._grid.plan(widths)

    def grid(self, groups: Sequence[npt.ArrayLike]) -> GridScores:
        """Raw scores of every combination of group values (``.raw[v_1, ..., v_K]``), and their explanations.

        `groups[g]` is a (V_g, F_g) matrix of the distinct values of feature group g (columns in model
        order; the groups concatenated in order give the model's features). The row of combination
        (v_1, ..., v_K) is the concatenation of groups[0][v_1], ..., groups[K-1][v_K].
        """
        return self._grid.scores(groups)

    def grid_raw(self, groups: Sequence[npt.ArrayLike]) -> FloatArray:
        """The raw scores of ``grid``."""
        return self._grid.scores(groups).raw

    @property
    def _plans(self) -> dict[tuple[int, ...], list[GroupPlan]]:
        """The group plans built so far, by feature-group widths."""
        return self._grid.plans

    @property
    def _multi(self) -> dict[Any, MultiPlan]:
        """The request-shape tables kept (the newest ``tree_grid.MULTI_CACHE``)."""
        return self._grid.multi
