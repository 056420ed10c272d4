"""Issue 13, D1 over HTTP: two request shapes whose multi-valued grid sizes match (3 channels x 1 slot and 1
channel x 3 slots, 5 messages each) follow each other in one warm scoring function; both answer 200."""

from __future__ import annotations

from datetime import time
from typing import Any

import pytest

from model.adapters import profiles
from model.adapters.model_service import get_predictor
from model.domain.schemas import Profile, QuietHours
from model.domain.settings import get_settings
from tests.integration.test_score_api import NOW, compiled_model, post, seed_customer

pytestmark = pytest.mark.usefixtures("local_endpoint")
MESSAGES = [f"msg-{i}" for i in range(5)]


@pytest.fixture(autouse=True)
def _deterministic_policy(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("NBC_EXPLORATION_RATE", "0")
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0")
    monkeypatch.setenv("NBC_MODEL_REFRESH_SECONDS", "0")
    get_settings.cache_clear()
    get_predictor.cache_clear()
    yield
    get_predictor.cache_clear()


@pytest.fixture(scope="module")
def booster() -> Any:
    pytest.importorskip("lightgbm")
    from tests.scoring_helpers import layout, train

    return train(layout(), trees=30, leaves=15, seed=9)


def test_shapes_with_the_same_multi_valued_sizes_both_answer(booster: Any) -> None:
    compiled_model(booster)
    channels = ["email", "push", "in_app"]
    seed_customer("c-shapes")  # some history: the model decides (not the cold-start rule)
    profiles.put_profile(
        "c-shapes",
        Profile(
            timezone="UTC",
            consent=dict.fromkeys(channels, True),
            quiet_hours=QuietHours(start=time(0, 0), end=time(0, 0)),  # an empty window: every hour open
        ),
    )
    for chans, horizon in ((channels, 1), (["email"], 3), (channels, 1)):
        body = {
            "customer_id": "c-shapes",
            "now": NOW.isoformat(),
            "channels": chans,
            "horizon_hours": horizon,
            "messages": dict.fromkeys(chans, MESSAGES),
        }
        status, _, answer = post("/v1/recommendations", body)
        assert status == 200, answer
        assert answer["policy"] == "model"
        assert answer["recommendations"]
