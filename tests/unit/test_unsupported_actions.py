"""A channel no training send tried: flagged at training (report and manifest), given the prior "no incremental
effect" at serving and in evaluation alike, so only exploration sends it, with its exact propensity."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import pytest

from model.domain.aggregate import FoldEvent, replay
from model.domain.decide import build_grid, decide
from model.domain.manifest import Manifest, Unsupported
from model.domain.recommend_schemas import Policy, RecommendationRequest
from model.domain.schemas import Profile
from model.domain.settings import get_settings
from tests.scoring_helpers import served_model
from training import dataset, pipeline, sources
from training.evaluate import model_policy, model_values, unsupported
from training.records import normalise_touchpoints, profiles_map
from training.simulate import SimConfig, simulate
from training.train import train_local

UNSEEN = "in_app"  # costs nothing: a tree leaf's guess alone would make it look worth sending to everyone
EPS = 0.2


class Explore(random.Random):
    """Always explores, drawing the allowed cell `pick` (an index into the allowed cells)."""

    def __init__(self, pick: int | None) -> None:
        super().__init__(0)
        self.pick = pick

    def random(self) -> float:
        return 0.0 if self.pick is not None else 0.999

    def randrange(self, *args: Any, **kwargs: Any) -> int:
        assert self.pick is not None
        return self.pick


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0")
    monkeypatch.setenv("NBC_EXPLORATION_RATE", str(EPS))
    get_settings.cache_clear()


def log_without(channel: str) -> dict[str, Any]:
    """A simulated log in which `channel` was never used (its sends, responses and decisions removed)."""
    sim = simulate(SimConfig(customers=150, days=30, seed=12))
    tp = pl.from_arrow(sim["touchpoints"])
    dec = pl.from_arrow(sim["decisions"])
    assert isinstance(tp, pl.DataFrame)
    assert isinstance(dec, pl.DataFrame)
    assert (tp["channel"] == channel).any()  # the simulator does use it: the filter below is what removes it
    return {
        "touchpoints": tp.filter(pl.col("channel") != channel).to_arrow(),
        "profiles": sim["profiles"],
        "decisions": dec.filter(pl.col("channel") != channel).to_arrow(),
    }


@pytest.mark.usefixtures("settings_env")
def test_the_training_run_flags_the_unseen_channel_in_report_and_manifest(tmp_path: Any) -> None:
    log = log_without(UNSEEN)
    src = sources.Sources(log["touchpoints"], log["profiles"], log["decisions"])
    opts = pipeline.Options(split="customer", eval_fraction=0.5, max_contexts=60, version="v1", rounds=30)
    result = pipeline.run(src, str(tmp_path / "store"), opts)
    assert result.report["ope"]["unsupported"]["channels"] == [UNSEEN]
    manifest = result.store.manifest("v1")
    assert manifest.unsupported.channels == [UNSEEN]
    assert manifest.unsupported.messages == []  # every message level was sent in training
    # An older manifest without the field still loads: nothing flagged.
    old = manifest.model_dump(mode="json")
    del old["unsupported"]
    assert Manifest.model_validate(old).unsupported == Unsupported()


@pytest.mark.usefixtures("settings_env")
def test_an_unseen_channel_is_only_explored_with_its_exact_propensity_online_and_offline() -> None:
    log = log_without(UNSEEN)
    ts = dataset.build(
        log["touchpoints"], log["profiles"], log["decisions"], split="customer", eval_fraction=0.5, max_contexts=60
    )
    ctx = ts.contexts
    assert ctx is not None
    assert len(ctx) >= 30
    gone = Unsupported(**unsupported(ts))
    assert gone.channels == [UNSEEN]
    booster = train_local(ts, rounds=30, early_stopping=10, threads=1).booster
    model = served_model(booster, ts, "support", gone)
    c_unseen = list(get_settings().channels).index(UNSEEN)

    # What a tree leaf says about the unseen channel, without the prior: some positive value (the failure mode).
    raw = model_values(booster, ts, gone=Unsupported())
    assert (raw[:, c_unseen][ctx.allowed[:, c_unseen]] > 0).any()

    offline = model_policy(booster, ts)
    values = model_values(booster, ts)
    tp = normalise_touchpoints(log["touchpoints"]).sort("ts", "event_id")
    profiles = profiles_map(log["profiles"])
    explored = 0
    for k in range(len(ctx)):
        cid, now = ctx.customer_id[k], datetime.fromtimestamp(float(ctx.decided_at[k]), UTC)
        before = tp.filter((pl.col("customer_id") == cid) & (pl.col("ts") < ctx.decided_at[k]))
        agg = replay([FoldEvent(*r) for r in before.select("event_id", "ch", "ev", "ts", "value").iter_rows()])
        profile = profiles.get(cid) or Profile()
        req = RecommendationRequest(customer_id=cid, now=now, k=1)
        n_allowed = int(ctx.allowed[k].sum())
        unseen_allowed = ctx.allowed[k, c_unseen]
        # Offline: the unseen channel's cells carry exploration only, never the greedy mass.
        assert np.all(offline.cells[k, c_unseen][unseen_allowed] == pytest.approx(EPS / n_allowed))
        assert np.all(values[k, c_unseen][unseen_allowed] <= 0)  # the prior: no lift, minus its cost (0)

        # Serving, greedy: never the unseen channel.
        greedy = decide(req, agg, profile, model, rng=Explore(None))
        assert greedy.policy == Policy.model
        assert greedy.recommendations[0].channel != UNSEEN

        # Serving, exploring onto an unseen cell: sent, with the propensity evaluation gives that cell.
        if not unseen_allowed.any():
            continue
        grid = build_grid(req, agg, profile, model.message_levels, now, get_settings())
        allowed_flat = np.flatnonzero(grid.allowed.ravel())
        cells = np.array(np.unravel_index(allowed_flat, grid.allowed.shape)).T
        pick = int(np.flatnonzero(cells[:, 0] == c_unseen)[0])
        resp = decide(req, agg, profile, model, rng=Explore(pick))
        rec = resp.recommendations[0]
        assert (resp.policy, rec.channel) == (Policy.explore, UNSEEN)
        _, s, m = cells[pick]
        assert resp.propensity == pytest.approx(EPS / n_allowed)
        assert resp.propensity == pytest.approx(offline.cells[k, c_unseen, s, m])
        assert rec.expected_value == pytest.approx(values[k, c_unseen, s, m])
        assert rec.expected_value == pytest.approx(-get_settings().cost_of(UNSEEN))
        explored += 1
    assert explored >= 10
