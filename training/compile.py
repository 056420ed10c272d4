"""Compile a promoted model for the scoring function: LightGBM text -> flat numpy arrays (.npz), verified.

The scoring Lambda cannot import lightgbm (scipy, libgomp, cold start); model/scoring/tree_scorer.py evaluates
the compiled arrays with numpy alone. Compilation happens once, at promotion, and is refused unless the compiled
model reproduces LightGBM on a sample of rows that includes NaN, zeros, unknown and negative categories,
and on a candidate grid through the fast path, and unless the bytes it ships pass the loader's checks
(model/scoring/tree_format.py: sizes, dtypes, index ranges, finiteness, tree structure) and load back to the
same predictions.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np

from model.adapters.registry import ModelStore
from model.scoring.predictor import (
    COMPILED_KEY,
    DEFAULT_LIGHTGBM_FILE,
    LIGHTGBM_KEY,
    ModelLoadError,
    group_widths,
    layout_for,
)
from model.scoring.tree_scorer import CompileError, TreeScorer, grid_rows

COMPILED_FILE = "model.npz"
TOLERANCE = 1e-9
SAMPLE_ROWS = 2000


def sample_rows(booster: lgb.Booster, n: int = SAMPLE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows spanning each feature's training range, with NaN, exact zeros, thresholds and odd categories."""
    rng = np.random.default_rng(seed)
    infos = booster.dump_model().get("feature_infos", {})
    names = booster.feature_name()
    x = np.empty((n, len(names)))
    for j, name in enumerate(names):
        info = infos.get(name, {})
        lo, hi = float(info.get("min_value", 0.0)), float(info.get("max_value", 1.0))
        values = [float(v) for v in info.get("values", [])]
        if values:  # categorical: LightGBM lists the seen categories
            pool = np.array([*values, -1.0, -7.0, max(values or [0.0]) + 1.0, 1000.0])
            x[:, j] = rng.choice(pool, size=n)
        else:
            span = hi - lo if hi > lo else 1.0
            x[:, j] = rng.uniform(lo - 0.1 * span, hi + 0.1 * span, size=n)
            x[rng.random(n) < 0.1, j] = 0.0
            x[rng.random(n) < 0.05, j] = lo
            x[rng.random(n) < 0.05, j] = hi
    x[rng.random(x.shape) < 0.05] = np.nan
    return x


def verify(
    scorer: TreeScorer, booster: lgb.Booster, rows: np.ndarray, widths: tuple[int, ...] | None
) -> dict[str, Any]:
    """Max differences between the compiled scorer and LightGBM (rows, and a grid through the fast path)."""
    raw_ref = booster.predict(rows, raw_score=True)
    prob_ref = booster.predict(rows)
    stats: dict[str, Any] = {
        "rows": len(rows),
        "max_abs_raw_diff": float(np.max(np.abs(scorer.raw(rows) - raw_ref))),
        "max_abs_prob_diff": float(np.max(np.abs(scorer.predict(rows) - prob_ref))),
    }
    if widths:
        # A candidate grid: the first group from one row, the others from several rows each.
        bounds = np.cumsum((0, *widths))
        groups = [rows[: 1 if g == 0 else 6 + g, bounds[g] : bounds[g + 1]] for g in range(len(widths))]
        ref = booster.predict(grid_rows(groups), raw_score=True)
        stats["grid_candidates"] = len(ref)
        stats["max_abs_grid_diff"] = float(np.max(np.abs(scorer.grid_raw(groups).ravel() - ref)))
    return stats


def compile_version(store: ModelStore, version: str) -> dict[str, Any]:
    """Compile `version`'s LightGBM model, verify it, add it to the store and register it in the manifest."""
    manifest = store.manifest(version)
    text = store.read(version, manifest.files.get(LIGHTGBM_KEY, DEFAULT_LIGHTGBM_FILE)).decode()
    booster = lgb.Booster(model_str=text)
    scorer = TreeScorer.from_dump(booster.dump_model())
    if scorer.n_features != len(manifest.features):
        raise CompileError(f"model has {scorer.n_features} features, the manifest lists {len(manifest.features)}")
    try:
        layout = layout_for(manifest)
        widths: tuple[int, ...] | None = group_widths(layout)
    except ModelLoadError:
        widths = None  # features differ from this code's layout: the rows check still applies
    stats = verify(scorer, booster, sample_rows(booster), widths)
    worst = max(v for k, v in stats.items() if k.startswith("max_abs"))
    if not worst <= TOLERANCE:
        raise CompileError(f"compiled model differs from LightGBM by {worst:.3g} (> {TOLERANCE}): {stats}")
    data = scorer.to_bytes()
    loaded = TreeScorer.from_bytes(data)  # the bytes we ship load back to the same predictions
    if not np.array_equal(loaded.raw(sample_rows(booster, 200, 1)), scorer.raw(sample_rows(booster, 200, 1))):
        raise CompileError("compiled model does not survive serialisation")
    store.add_file(version, COMPILED_FILE, data)
    manifest.files[COMPILED_KEY] = COMPILED_FILE
    store.update_manifest(manifest)
    return {"file": COMPILED_FILE, "bytes": len(data), "trees": scorer.n_trees, **stats}
