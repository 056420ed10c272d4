"""Request shapes of the grid path: every (channels x slots x messages) shape, in any order, in one warm scorer,
scores exactly as the row walk and LightGBM do (issue 13, D1: shapes whose multi-valued sizes match but whose
multi-valued groups differ used to share one cached plan and crash with "cannot reshape")."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

lgb = pytest.importorskip("lightgbm")

from model.scoring.predictor import group_widths  # noqa: E402
from model.scoring.tree_scorer import TreeScorer, grid_rows  # noqa: E402
from tests.scoring_helpers import layout, synthetic_rows, train  # noqa: E402

TOL = 1e-9


@pytest.fixture(scope="module")
def model():
    return train(layout(), n_rows=3000, trees=40, leaves=15, seed=5)


def _groups(x: np.ndarray, sizes: tuple[int, ...]) -> list[np.ndarray]:
    bounds = np.cumsum((0, *group_widths(layout())))
    out, start = [], 0
    for g, size in enumerate(sizes):
        out.append(x[start : start + size, bounds[g] : bounds[g + 1]])
        start += size
    return out


def _rows(n: int, seed: int) -> np.ndarray:
    x, _ = synthetic_rows(layout(), max(n, 2), seed)
    x[np.random.default_rng(seed).random(x.shape) < 0.05] = np.nan
    return x


def _check(scorer: TreeScorer, booster, sizes: tuple[int, ...], seed: int) -> None:
    groups = _groups(_rows(sum(sizes), seed), sizes)
    rows = grid_rows(groups)
    out = scorer.grid_raw(groups)
    assert out.shape == sizes
    assert np.max(np.abs(out.ravel() - scorer.raw(rows))) <= TOL  # the row walk
    assert np.max(np.abs(out.ravel() - booster.predict(rows, raw_score=True))) <= TOL  # LightGBM


@pytest.mark.parametrize(
    "shapes",
    [
        [(1, 3, 1, 5), (1, 1, 3, 5)],  # the D1 report: 3 channels x 1 slot vs 1 channel x 3 slots, 5 messages
        [(1, 1, 3, 5), (1, 3, 1, 5)],
        [(1, 4, 4, 1), (1, 4, 1, 4), (1, 1, 4, 4)],  # the same multi-valued sizes on three pairs of groups
        [(1, 2, 1, 1), (1, 1, 2, 1), (1, 1, 1, 2), (2, 1, 1, 1)],  # one multi-valued group, four places
    ],
)
def test_shapes_with_equal_multi_valued_sizes_do_not_share_tables(model, shapes) -> None:
    scorer = TreeScorer.from_dump(model.dump_model())
    for seed, sizes in enumerate([*shapes, *shapes]):  # each shape again, from the warm cache
        _check(scorer, model, sizes, seed)


@pytest.fixture(scope="module")
def warm_scorer(model) -> TreeScorer:
    """One scorer for every hypothesis example: its plan cache stays warm across requests, as in a Lambda."""
    return TreeScorer.from_dump(model.dump_model())


_size = st.sampled_from([1, 1, 2, 3, 5, 8])


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(
        st.tuples(st.sampled_from([1, 1, 2]), _size, st.sampled_from([1, 2, 3, 5, 24, 48, 70]), _size),
        min_size=1,
        max_size=6,
    ),
    seed=st.integers(0, 2**16),
)
def test_random_request_shapes_in_random_order_score_exactly(model, warm_scorer, shapes, seed) -> None:
    for i, sizes in enumerate(shapes):
        _check(warm_scorer, model, sizes, seed + i)
