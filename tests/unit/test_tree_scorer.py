"""The compiled scorer reproduces LightGBM exactly: rows, the grouped grid fast path, reasons, (de)serialisation."""

from __future__ import annotations

import numpy as np
import pytest

lgb = pytest.importorskip("lightgbm")

from model.adapters.registry import ModelStore  # noqa: E402
from model.scoring.predictor import group_widths  # noqa: E402
from model.scoring.tree_scorer import CompileError, TreeScorer, grid_rows  # noqa: E402
from tests.scoring_helpers import layout, publish, synthetic_rows, train  # noqa: E402

TOL = 1e-9


def _odd_rows(lay, n: int = 600, seed: int = 7) -> np.ndarray:
    """Real-looking rows plus NaN everywhere, exact zeros, negative / unknown / fractional categories."""
    x, _ = synthetic_rows(lay, max(n, 40), seed)
    rng = np.random.default_rng(seed)
    x[rng.random(x.shape) < 0.08] = np.nan
    x[rng.random(x.shape) < 0.05] = 0.0
    ch = lay.names.index("channel")
    msg = lay.names.index("message")
    x[:20, ch] = [-1, -0.5, 0.5, 99, 31, 32, 64, 1e12, -1e12, np.nan, *range(10)]
    x[20:30, msg] = [-1, -2, 0.99, 2.5, 3, 1e6, np.nan, 0, 1, 2]
    return x[rng.permutation(len(x))[:n]]


@pytest.fixture(scope="module")
def model():
    return train(layout(), n_rows=5000, trees=60, leaves=31, seed=1)


def test_rows_equal_lightgbm_including_nan_and_odd_categories(model) -> None:
    lay = layout()
    scorer = TreeScorer.from_dump(model.dump_model())
    x = _odd_rows(lay)
    assert np.max(np.abs(scorer.raw(x) - model.predict(x, raw_score=True))) <= TOL
    assert np.max(np.abs(scorer.predict(x) - model.predict(x))) <= TOL
    # The dump really exercises both split kinds and NaN-aware splits.
    assert scorer.is_cat.any()
    assert (scorer.missing == 2).any()


def test_missing_type_zero_and_regression_objective() -> None:
    lay = layout()
    booster = train(lay, trees=25, leaves=15, seed=3, zero_as_missing=True, objective="regression")
    scorer = TreeScorer.from_dump(booster.dump_model())
    assert (scorer.missing == 1).any()
    assert scorer.link == "identity"
    x = _odd_rows(lay, seed=3)
    x[::3, 1:6] = 1e-40  # below LightGBM's zero threshold: treated as missing zero
    assert np.max(np.abs(scorer.predict(x) - booster.predict(x))) <= TOL


def test_random_forest_average_output() -> None:
    lay = layout()
    booster = train(
        lay, trees=20, leaves=15, seed=4, boosting="rf", bagging_freq=1, bagging_fraction=0.7, feature_fraction=0.8
    )
    scorer = TreeScorer.from_dump(booster.dump_model())
    assert scorer.average_output
    x = _odd_rows(lay, seed=4)
    assert np.max(np.abs(scorer.raw(x) - booster.predict(x, raw_score=True))) <= TOL


def _groups(lay, x: np.ndarray, sizes: tuple[int, int, int, int]) -> list[np.ndarray]:
    bounds = np.cumsum((0, *group_widths(lay)))
    start = 0
    out = []
    for g, size in enumerate(sizes):
        out.append(x[start : start + size, bounds[g] : bounds[g + 1]])
        start += size
    return out


@pytest.mark.parametrize(
    "sizes",
    [
        (1, 8, 48, 3),
        (1, 3, 5, 1),
        (1, 1, 1, 1),
        (2, 3, 4, 2),
        (1, 1, 7, 1),
        (1, 5, 1, 4),
        (1, 2, 70, 2),  # a group wider than one 64-bit word of agreement bits
        (1, 40, 30, 3),  # groups that do not share one word
        (3, 1, 1, 1),  # only the customer varies
    ],
)
def test_grid_fast_path_equals_lightgbm(model, sizes: tuple[int, int, int, int]) -> None:
    lay = layout()
    scorer = TreeScorer.from_dump(model.dump_model())
    for seed in range(4):
        x = _odd_rows(lay, n=sum(sizes), seed=seed)
        if seed == 0:
            x = synthetic_rows(lay, sum(sizes), seed)[0]  # also a NaN-free grid (the fast decision path)
        groups = _groups(lay, x, sizes)
        out = scorer.grid_raw(groups)
        assert out.shape == sizes
        ref = model.predict(grid_rows(groups), raw_score=True).reshape(sizes)
        assert np.max(np.abs(out - ref)) <= TOL


def test_grid_with_trees_wider_than_a_leaf_word() -> None:
    """Trees of more than 64 leaves: subtrees straddle the 64-leaf words the customer's pruning works on."""
    lay = layout()
    booster = train(lay, n_rows=6000, trees=8, leaves=150, seed=3, min_data_in_leaf=2)
    scorer = TreeScorer.from_dump(booster.dump_model())
    assert (scorer.leaf_hi - scorer.leaf_lo).max() > 64
    for seed, sizes in enumerate([(1, 8, 48, 3), (1, 3, 70, 2), (2, 4, 5, 3)]):
        x = _odd_rows(lay, n=sum(sizes), seed=20 + seed)
        groups = _groups(lay, x, sizes)
        ref = booster.predict(grid_rows(groups), raw_score=True).reshape(sizes)
        scores = scorer.grid(groups)
        assert np.max(np.abs(scores.raw - ref)) <= TOL
        cells = [(0, 0, 0, 0), tuple(n - 1 for n in sizes)]
        rows = grid_rows(groups).reshape(*sizes, -1)
        expected = scorer.contributions(np.array([rows[c] for c in cells]))
        assert np.max(np.abs(scores.contributions(cells) - expected)) <= TOL


def test_grid_with_real_channel_and_message_codes(model) -> None:
    """The serving shape: one customer, every channel code, 48 slots, messages incl. 'none' (-1)."""
    lay = layout()
    scorer = TreeScorer.from_dump(model.dump_model())
    x, _ = synthetic_rows(lay, 60, 11)
    cust, ch, slot, msg = _groups(lay, x, (1, 8, 48, 3))
    ch[:, 0] = np.arange(8)
    msg[:, 0] = [-1, 0, 2]
    ref = model.predict(grid_rows([cust, ch, slot, msg]))
    assert np.max(np.abs(scorer.transform(scorer.grid_raw([cust, ch, slot, msg])).ravel() - ref)) <= TOL


def test_contributions_sum_to_raw_and_rank_like_pred_contrib(model) -> None:
    lay = layout()
    scorer = TreeScorer.from_dump(model.dump_model())
    x, _ = synthetic_rows(lay, 300, 5)
    contrib = scorer.contributions(x)
    assert contrib.shape == (300, len(lay.names) + 1)
    assert np.max(np.abs(contrib.sum(axis=1) - model.predict(x, raw_score=True))) <= TOL
    shap = model.predict(x, pred_contrib=True)
    ours = np.argsort(-np.abs(contrib[:, :-1]).mean(axis=0))[:5]
    theirs = np.argsort(-np.abs(shap[:, :-1]).mean(axis=0))[:5]
    assert len(set(ours) & set(theirs)) >= 3, (ours, theirs)
    # Per row, the single strongest feature agrees with TreeSHAP's top-3 for most rows.
    top = np.argmax(np.abs(contrib[:, :-1]), axis=1)
    shap_top3 = np.argsort(-np.abs(shap[:, :-1]), axis=1)[:, :3]
    assert np.mean([t in s for t, s in zip(top, shap_top3, strict=True)]) >= 0.7


def test_bytes_round_trip_and_corrupt_bytes(model) -> None:
    scorer = TreeScorer.from_dump(model.dump_model())
    data = scorer.to_bytes()
    again = TreeScorer.from_bytes(data)
    x = _odd_rows(layout())
    assert np.array_equal(again.raw(x), scorer.raw(x))
    for bad in (b"", b"not a zip", data[: len(data) // 2], data[:-10] + b"0123456789"):
        with pytest.raises(CompileError):
            TreeScorer.from_bytes(bad)


def test_unsupported_models_are_refused() -> None:
    x = np.random.default_rng(0).normal(size=(300, 3))
    y = np.random.default_rng(1).integers(0, 3, 300)
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1}, lgb.Dataset(x, y), 3
    )
    with pytest.raises(CompileError, match="single-output"):
        TreeScorer.from_dump(booster.dump_model())


def test_compile_version_verifies_and_registers(tmp_path) -> None:
    from training.compile import COMPILED_FILE, compile_version

    store = ModelStore.from_uri(str(tmp_path / "models"))
    booster = train(layout(), trees=30, leaves=31, seed=2)
    publish(store, booster, "v1")
    stats = compile_version(store, "v1")
    assert stats["max_abs_raw_diff"] <= TOL
    assert stats["max_abs_grid_diff"] <= TOL
    assert stats["rows"] >= 1000
    assert store.manifest("v1").files["compiled"] == COMPILED_FILE
    scorer = TreeScorer.from_bytes(store.read("v1", COMPILED_FILE))
    x = _odd_rows(layout())
    assert np.max(np.abs(scorer.predict(x) - booster.predict(x))) <= TOL


def test_grid_cell_contributions_equal_row_contributions(model) -> None:
    lay = layout()
    scorer = TreeScorer.from_dump(model.dump_model())
    x = _odd_rows(lay, n=60, seed=12)
    groups = _groups(lay, x, (1, 8, 6, 3))
    scores = scorer.grid(groups)
    cells = [(0, 0, 0, 0), (0, 7, 5, 2), (0, 3, 2, 1)]
    rows = grid_rows(groups).reshape(1, 8, 6, 3, -1)
    expected = scorer.contributions(np.array([rows[c] for c in cells]))
    got = scores.contributions(cells)
    assert np.max(np.abs(got - expected)) <= TOL
    raw = model.predict(np.array([rows[c] for c in cells]), raw_score=True)
    assert np.max(np.abs(got.sum(axis=1) - raw)) <= TOL
    assert all(len(scores.reached(c)) == scorer.n_trees for c in cells)


@pytest.mark.parametrize("distinct", [1, 7, 200, 3000])
def test_unique_rows_by_hashing_resolves_collisions(distinct: int) -> None:
    """The grid's pattern deduplication: every row maps back to its own key, each key listed once."""
    from model.scoring.tree_bits import unique_rows

    rng = np.random.default_rng(distinct)
    pool = rng.integers(0, 2**63, distinct, dtype=np.uint64) | np.uint64(2**63 * (distinct % 2))
    for words in (pool[rng.integers(0, distinct, 3000)][:, None], rng.integers(0, 3, (500, 2)).astype(np.uint64)):
        keys, inverse = unique_rows(words)
        assert np.array_equal(keys[inverse], words)
        assert len(keys) == len(np.unique(words, axis=0))


def test_request_shape_cache_is_bounded_and_results_stay_exact(model) -> None:
    """Callers choose the grid's shape; the per-shape tables kept must not grow with every new one."""
    from model.scoring.tree_grid import MULTI_CACHE as _MULTI_CACHE

    lay = layout()
    scorer = TreeScorer.from_dump(model.dump_model())
    shapes = [(1, c, s, 2) for c in (2, 3, 5, 8) for s in range(2, 2 + (_MULTI_CACHE // 4) + 3)]
    assert len(shapes) > _MULTI_CACHE
    for i, sizes in enumerate([*shapes, shapes[0]]):  # the first shape again, after its tables were evicted
        groups = _groups(lay, _odd_rows(lay, n=sum(sizes), seed=i), sizes)
        ref = model.predict(grid_rows(groups), raw_score=True).reshape(sizes)
        assert np.max(np.abs(scorer.grid_raw(groups) - ref)) <= TOL
        assert len(scorer._multi) <= _MULTI_CACHE
