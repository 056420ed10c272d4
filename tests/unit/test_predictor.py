"""The serving model's lifecycle: CURRENT at cold start, TTL refresh without redeploy, last good model kept."""

from __future__ import annotations

import pytest

from model.adapters.model_service import predictor_for
from model.adapters.registry import ModelStore
from model.domain.settings import get_settings
from model.scoring.predictor import RETRY_SECONDS
from model.scoring.tree_scorer import TreeScorer

lgb = pytest.importorskip("lightgbm")

from tests.scoring_helpers import layout, manifest_for, publish, train  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def booster():
    return train(layout(), trees=10, leaves=7, seed=3)


def test_refresh_on_ttl_keeps_last_good_and_retries_repaired_versions(booster) -> None:
    from training.compile import compile_version

    store = ModelStore.from_uri(get_settings().model_store)
    clock = Clock()
    predictor = predictor_for(get_settings().model_store, refresh_seconds=60, clock=clock)
    assert predictor.model() is None
    assert "no CURRENT" in (predictor.last_error or "")

    publish(store, booster, "v1")
    compile_version(store, "v1")
    store.set_current("v1")
    clock.now += 30
    assert predictor.model() is None  # not re-checked before the TTL
    clock.now += 31
    loaded = predictor.model()
    assert loaded is not None
    assert (loaded.version, loaded.kind) == ("v1", "compiled")
    assert loaded.scorer is not None
    assert loaded.widths in loaded.scorer._plans  # the grid path's tables are built at load, not per request

    # A corrupt new CURRENT: refused, the last good model stays in service.
    store.publish("v2", {"model.npz": b"junk"}, manifest_for(layout(), "v2", {"compiled": "model.npz"}))
    store.set_current("v2")
    clock.now += 61
    assert predictor.model().version == "v1"  # type: ignore[union-attr]
    assert "v2" in (predictor.last_error or "")

    # Repaired in place (compiled again): picked up once the retry window has passed.
    store.add_file("v2", "model.npz", TreeScorer.from_dump(booster.dump_model()).to_bytes())
    clock.now += max(60, RETRY_SECONDS) + 1
    assert predictor.model().version == "v2"  # type: ignore[union-attr]
    assert predictor.last_error is None


def test_uncompiled_model_uses_lightgbm_where_importable(booster) -> None:
    store = ModelStore.from_uri(get_settings().model_store)
    publish(store, booster, "v1")
    store.set_current("v1")
    loaded = predictor_for(get_settings().model_store, refresh_seconds=0).model()
    assert loaded is not None
    assert loaded.kind == "lightgbm"


def test_incompatible_features_are_refused(booster, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore.from_uri(get_settings().model_store)
    publish(store, booster, "v1")
    store.set_current("v1")
    monkeypatch.setenv("NBC_PROFILE_ATTRIBUTES", "[]")  # this code now builds other features
    get_settings.cache_clear()
    predictor = predictor_for(get_settings().model_store, refresh_seconds=0)
    assert predictor.model() is None
    assert "expects features" in (predictor.last_error or "")
