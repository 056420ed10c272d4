"""Helpers for scoring tests: a LightGBM model trained on synthetic rows of the real feature layout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from model.adapters.registry import Manifest, ModelStore, schema_hash
from model.domain.features import NEVER, FeatureLayout
from model.domain.settings import get_settings

MESSAGES = ["msg-a", "msg-b", "msg-c"]


def layout() -> FeatureLayout:
    return FeatureLayout(tuple(get_settings().profile_attributes))


def synthetic_rows(lay: FeatureLayout, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows shaped like real ones (counts, rates, 'days since' with NEVER, codes, NaN) and a label."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for name in lay.names:
        if name in ("channel",):
            cols[name] = rng.integers(0, len(get_settings().channels), n).astype(float)
        elif name == "message":
            cols[name] = rng.integers(-1, len(MESSAGES), n).astype(float)
        elif name == "local_hour":
            cols[name] = rng.integers(0, 24, n).astype(float)
        elif name == "decision_day":  # epoch days of a month; its own draws keep the other columns' as they were
            cols[name] = 20_400 + np.random.default_rng(seed + 1).uniform(0, 30, n)
        elif name == "local_dow":
            cols[name] = rng.integers(0, 7, n).astype(float)
        elif name.startswith("attr_"):
            spec = next(a for a in lay.attributes if f"attr_{a.name}" == name)
            if spec.kind == "categorical":
                cols[name] = rng.integers(-1, len(spec.levels), n).astype(float)
            else:
                cols[name] = np.where(rng.random(n) < 0.2, np.nan, rng.uniform(0, 2000, n))
        elif "days" in name:
            cols[name] = np.where(rng.random(n) < 0.3, NEVER, rng.exponential(20, n))
        elif "rate" in name or "share" in name:
            cols[name] = rng.beta(1, 8, n)
        else:
            cols[name] = rng.poisson(3, n).astype(float)
    x = np.column_stack([cols[c] for c in lay.names])
    logit = (
        -2.5
        + 0.6 * np.isin(cols["channel"], [0, 2])
        - 0.8 * (cols["channel"] == 5)
        + 0.7 * ((cols["local_hour"] >= 9) & (cols["local_hour"] <= 12))
        + 0.5 * (cols["message"] == 1)
        + 4.0 * cols["ch_conversion_rate"]
        - 0.1 * cols["sends_7d"]
        + 0.3 * (cols["attr_segment"] == 2)
        - 0.004 * np.minimum(cols["days_since_engaged"], 100)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


def train(lay: FeatureLayout, n_rows: int = 4000, trees: int = 40, leaves: int = 15, seed: int = 0, **params: Any):
    import lightgbm as lgb

    x, y = synthetic_rows(lay, n_rows, seed)
    cats = [lay.names.index(c) for c in lay.categorical]
    base = {
        "objective": "binary",
        "num_leaves": leaves,
        "learning_rate": 0.1,
        "min_data_in_leaf": 10,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "max_cat_to_onehot": 4,
        "verbose": -1,
        "num_threads": 1,
        "seed": seed,
        **params,
    }
    ds = lgb.Dataset(x, y, feature_name=list(lay.names), categorical_feature=cats, free_raw_data=False)
    return lgb.train(base, ds, num_boost_round=trees)


def manifest_for(lay: FeatureLayout, version: str, files: dict[str, str] | None = None) -> Manifest:
    levels: dict[str, list[str]] = {"message": list(MESSAGES)}
    for spec in lay.attributes:
        if spec.kind == "categorical":
            levels[f"attr_{spec.name}"] = list(spec.levels)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    return Manifest(
        version=version,
        created_at=now,
        training_window=(datetime(2026, 8, 1, tzinfo=UTC), now),
        features=list(lay.names),
        categorical=list(lay.categorical),
        schema_hash=schema_hash(list(lay.names), list(lay.categorical), levels),
        levels=levels,
        channels=list(get_settings().channels),
        files=files if files is not None else {"lightgbm": "model.txt"},
        metrics={"auc": 0.7},
    )


def publish(store: ModelStore, booster: Any, version: str, lay: FeatureLayout | None = None) -> None:
    lay = lay or layout()
    store.publish(version, {"model.txt": booster.model_to_string().encode()}, manifest_for(lay, version))


def served_model(booster: Any, ts: Any, version: str, gone: Any) -> Any:
    """A booster trained on a training set, as serving loads it: compiled, with the set's layout, message levels,
    objective, order-value prior and the unsupported actions `gone` (a manifest `Unsupported`)."""
    from model.scoring.predictor import LoadedModel, group_widths
    from model.scoring.tree_scorer import TreeScorer

    lay: FeatureLayout = ts.layout
    names, cats = list(lay.names), list(lay.categorical)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    manifest = Manifest(
        version=version,
        created_at=now,
        training_window=(now, now),
        features=names,
        categorical=cats,
        schema_hash=schema_hash(names, cats, ts.levels),
        levels=ts.levels,
        channels=list(get_settings().channels),
        objective=ts.objective,
        unsupported=gone,
        value_prior=getattr(ts, "value_prior", None),
    )
    scorer = TreeScorer.from_dump(booster.dump_model())
    scorer.prepare(group_widths(lay))
    return LoadedModel(version, manifest, "compiled", lay, scorer=scorer)
