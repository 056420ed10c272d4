"""The training pipeline end to end on small simulated data: value, report, publication, promotion, Dask."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from model.adapters.registry import ModelStore
from model.scoring.predictor import COMPILED_KEY
from training import dataset, ope, pipeline, train
from training.ope import ESTIMATORS
from training.promote import PromotionRefusedError, _decide, evaluate_gate, held_out, pair_lead, promote
from training.report_text import LABELS
from training.simulate import SimConfig, simulate, write

# The tests of the trained model (a 30-60 s training run) and of its gate (the held-out decisions, with and without
# propensities) run in one xdist group: on one worker, so that the module fixtures are built once, not once per worker.
TRAINED = pytest.mark.xdist_group("trained_model")


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(simulate(SimConfig(customers=1500, days=60, seed=21)), tmp_path_factory.mktemp("sim"))


@pytest.fixture(scope="module")
def trained(sim_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelStore, pipeline.Result]:
    store_dir = tmp_path_factory.mktemp("store")
    # One LightGBM thread: the suite runs on 2 cores with pytest -n 2 (OpenMP oversubscription is slow).
    # 300 evaluated decisions (evaluation only: more give the same booster); true values on them: model 5.78,
    # random 1.45 (the bar, 1.5 x random: 2.17), logging 1.11.
    opts = pipeline.Options(
        simulated_truth=str(sim_dir / "truth.json"), max_contexts=300, version="v1", params={"num_threads": 1}
    )
    result = pipeline.run(str(sim_dir), str(store_dir), opts)
    return result.store, result


@TRAINED
def test_model_beats_random_and_report_is_complete(trained: tuple[ModelStore, pipeline.Result]) -> None:
    store, _result = trained
    report = json.loads(store.read("v1", "report.json"))
    assert 0.6 < report["metrics"]["auc"] <= 1.0
    assert report["metrics"]["logloss"] > 0
    weeks = report["metrics_by_week"]  # drift made visible: held-out AUC per week, covering every held-out send
    assert sum(w["n"] for w in weeks) == report["metrics"]["n_eval"]
    assert all(w["ci"] is None or w["ci"][0] <= w["auc"] <= w["ci"][1] for w in weeks)
    pol = report["policies"]
    assert set(pol) == {"model", "random", "global_best", "most_engaged", "last_engaged", "logging", "oracle"}
    for res in pol.values():  # the layout tools read (docs/ope.md)
        assert {"estimates", "value", "ci", "true_value"} <= set(res)
        assert set(res["estimates"]) == set(ESTIMATORS)
        for est in res["estimates"].values():
            assert {"value", "ci", "ess", "matched", "max_weight", "support", "n"} <= set(est)
            assert len(est["ci"]) == 2
    assert report["ope"]["lead"] in ESTIMATORS
    assert report["ope"]["propensities"] == "logged"
    assert report["ope"]["estimated"] is False
    assert pol["model"]["value"] == pol["model"]["estimates"][report["ope"]["lead"]]["value"]
    for res in pol.values():  # each policy's headline is its own lead's estimate: the report's, or Switch-DR
        assert res["lead"] in (report["ope"]["lead"], "switch")
        assert res["value"] == res["estimates"][res["lead"]]["value"]
    # what the reward model alone values: nothing of the logging policy (on-policy); global_best's one cell per
    # decision is logged through exploration only, so its headline is the reward model's almost entirely
    assert pol["logging"]["reward_model_share"] == 0.0
    assert pol["global_best"]["reward_model_share"] > 0.9
    assert 0.0 <= pol["model"]["reward_model_share"] <= 1.0
    assert pol["random"]["reward_model_share"] < pol["global_best"]["reward_model_share"]
    assert pol["model"]["lead"] == report["ope"]["lead"]
    assert pol["model"]["true_value"] > 1.5 * pol["random"]["true_value"]
    assert pol["model"]["true_value"] > pol["logging"]["true_value"]
    assert pol["oracle"]["true_value"] >= pol["model"]["true_value"]
    html = store.read("v1", "report.html").decode()
    assert "calibration.png" in html
    assert "AUC by week of the send" in html
    assert f"{LABELS[report['ope']['lead']]} (lead)" in html  # estimators side by side, the lead marked
    assert "Error against the true value" in html
    assert store.read("v1", "calibration.png").startswith(b"\x89PNG")
    assert store.read("v1", "policies.png").startswith(b"\x89PNG")
    m = store.manifest("v1")
    assert m.check_hash()
    assert m.files["lightgbm"] == "model.txt"
    assert m.features == list(dataset.layout_from_settings().names)
    assert m.levels["message"]
    assert set(m.levels) >= {"channel", "message", "attr_segment", "attr_age_band"}
    assert m.policy_value["model_true_value"] == pol["model"]["true_value"]
    assert m.policy_value[f"model_{report['ope']['lead']}"] == pol["model"]["value"]
    assert m.training_window[0] < m.training_window[1]
    assert m.source is not None
    assert Path(m.source).is_absolute()


# --- the paired promotion gate ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gate(
    trained: tuple[ModelStore, pipeline.Result], sim_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModelStore, dataset.TrainingSet, dataset.TrainingSet]:
    """A store with the trained model (v1) and a model that ranks backwards (bad: trained on inverted labels),
    and the source's held-out decisions built once, with and without logged propensities."""
    store, _ = trained
    gate_store = ModelStore.from_uri(str(tmp_path_factory.mktemp("gate")))
    manifest = store.manifest("v1")
    gate_store.publish("v1", {"model.txt": store.read("v1", "model.txt")}, manifest)
    held = held_out(str(sim_dir), manifest, max_decisions=300)
    train = held.split != "eval"
    bad = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1},
        lgb.Dataset(held.X[train], label=(held.y[train] <= 0).astype(float)),
        num_boost_round=30,
    )
    gate_store.publish(
        "bad", {"model.txt": bad.model_to_string().encode()}, manifest.model_copy(update={"version": "bad"})
    )
    src = pipeline.sources.load(str(sim_dir))
    blind = held_out(pipeline.sources.Sources(src.touchpoints, src.profiles, None), manifest, max_decisions=300)
    return gate_store, held, blind


@pytest.fixture(scope="module")
def held_logged(gate: tuple) -> Any:
    """The nuisance models of the gate's held-out decisions (reward model and logging-channel model, most of a
    gate's time), fitted once and passed to every gate judged on those decisions, as `evaluate_gate` allows."""
    from training import evaluate

    _, held, _ = gate
    return evaluate.LoggedDecisions(held, held.contexts)


@TRAINED
def test_the_manifest_records_the_configuration_hash(trained: tuple[ModelStore, pipeline.Result]) -> None:
    from model.domain.settings import get_settings

    store, _result = trained
    assert store.manifest("v1").config_hash == get_settings().config_hash()


@TRAINED
def test_gate_refuses_a_worse_challenger_on_the_same_decisions(gate: tuple, held_logged: Any) -> None:
    store, held, _ = gate
    store.set_current("v1")
    with pytest.raises(PromotionRefusedError, match="lower bound is below 0") as refused:
        promote(store, "bad", training_set=held, logged=held_logged, n_boot=200)
    g = refused.value.gate
    assert g is not None
    assert (g.decision, g.method, g.champion, g.propensities) == ("refuse", "off-policy", "v1", "logged")
    assert g.estimator in ESTIMATORS
    assert g.difference["value"] < 0
    assert g.difference["ci"][1] < 0
    assert g.decisions == len(held.contexts)
    assert g.true_values is not None  # truth.json next to the source: shown, never used to decide
    assert g.true_values["difference"] < 0
    shares = [g.values[side]["reward_model_share"] for side in ("challenger", "champion")]
    assert all(0.0 <= x <= 1.0 for x in shares)
    leaning = [side for side, x in zip(("challenger", "champion"), shares, strict=True) if x >= 0.5]
    assert len([w for w in g.warnings if "valued by the reward model alone" in w]) == len(leaning)
    assert store.current() == "v1"  # the champion stays


@TRAINED
def test_gate_pairs_the_same_decisions_and_needs_both_lower_bounds(gate: tuple, held_logged: Any) -> None:
    store, held, _ = gate
    store.set_current("bad")
    g = evaluate_gate(store, "v1", "bad", "sim", training_set=held, logged=held_logged, n_boot=200)
    assert g.difference["ci"][0] > 0  # the trained model beats the backwards one, paired on the same decisions
    # promoted iff it is not worse than the logging policy either (the first model's rule, too)
    assert (g.decision == "promote") == (g.vs_logging["ci"][0] >= 0)
    same = evaluate_gate(store, "v1", "v1", "sim", training_set=held, logged=held_logged, n_boot=200)
    assert same.difference["value"] == 0
    assert same.difference["ci"] == [0.0, 0.0]
    assert same.vs_logging == g.vs_logging
    first = evaluate_gate(store, "v1", None, "sim", training_set=held, logged=held_logged, n_boot=200)
    assert first.difference is None
    assert first.reasons[0].startswith("first model")
    assert (first.decision == "promote") == (first.vs_logging["ci"][0] >= 0)
    with pytest.raises(ValueError, match="must be fitted on the decisions"):  # another set's nuisance: refused
        evaluate_gate(store, "v1", "bad", "sim", training_set=held, logged=SimpleNamespace(rows=np.arange(3)))


@TRAINED
def test_gate_promotes_a_better_challenger_and_moves_current(gate: tuple) -> None:
    store, _, blind = gate
    store.set_current("bad")
    done = promote(store, "v1", training_set=blind, n_boot=200)
    assert done.promoted
    assert not done.forced
    assert store.current() == "v1"
    assert done.gate is not None
    assert done.gate.decision == "promote"
    assert done.gate.difference["ci"][0] >= 0
    assert done.gate.vs_logging["ci"][0] >= 0
    assert COMPILED_KEY in store.manifest("v1").files  # compiled (and verified) before CURRENT moved


@TRAINED
def test_gate_without_propensities_falls_back_to_predictive_metrics(gate: tuple) -> None:
    store, _, blind = gate
    store.set_current("v1")
    g = evaluate_gate(store, "bad", "v1", "sim", training_set=blind, n_boot=200)
    assert (g.method, g.estimator, g.propensities, g.decision) == ("predictive", "logloss", "none", "refuse")
    assert "no logging propensities" in g.reasons[0]
    assert g.values["challenger"]["logloss"] > g.values["champion"]["logloss"]
    assert g.values["champion"]["auc"] > 0.6 > g.values["challenger"]["auc"]
    better = evaluate_gate(store, "v1", "bad", "sim", training_set=blind, n_boot=200)
    assert better.decision == "promote"
    assert better.difference["ci"][0] > 0
    first = evaluate_gate(store, "v1", None, "sim", training_set=blind, n_boot=200)  # against the base rate
    assert first.decision == "promote"
    assert first.vs_logging["ci"][0] > 0


@TRAINED
def test_gate_dry_run_changes_nothing_and_force_skips_the_gate(gate: tuple, held_logged: Any) -> None:
    store, held, _ = gate
    store.set_current("v1")
    dry = promote(store, "bad", dry_run=True, training_set=held, logged=held_logged, n_boot=200)
    assert not dry.promoted
    assert dry.gate is not None
    assert dry.gate.decision == "refuse"
    out = dry.gate.to_dict()
    assert {"decision", "estimator", "challenger", "champion", "difference"} <= set(out)
    assert (out["challenger"], out["champion"]) == ("bad", "v1")
    assert set(out["difference"]) >= {"value", "ci"}
    json.dumps(out, allow_nan=False)  # strict JSON
    assert store.current() == "v1"
    forced = promote(store, "bad", force=True)  # rollback / override: no gate, no source needed
    assert forced.forced
    assert forced.promoted
    assert forced.gate is None
    assert store.current() == "bad"
    assert promote(store, "bad").message.endswith("already CURRENT")


def test_gate_uses_one_estimator_for_both_sides() -> None:
    def est(ess: float, matched: int, value: float = 1.0) -> ope.Estimate:
        return ope.Estimate(value, (value - 0.5, value + 0.5), ess, 3.0, matched, 1.0, 1000 if ess else 0)

    thick = {"dr": est(500, 600), "switch": est(500, 600), "mdr": est(300, 900)}
    thin = {"dr": est(2, 40), "switch": est(2, 30), "mdr": est(300, 900)}
    blind = {"dr": est(0, 0, math.nan), "switch": est(0, 0, math.nan), "mdr": est(300, 900)}  # estimated channel ones
    assert pair_lead({"challenger": thick, "champion": thick}) == "switch"
    assert pair_lead({"challenger": thick, "champion": thin}) == "switch"  # huge weights cannot decide alone
    assert pair_lead({"challenger": thin, "champion": thick}) == "switch"  # ... whichever side is the challenger
    assert pair_lead({"challenger": thick, "champion": blind}) == "mdr"
    assert pair_lead({"challenger": thick}) == "switch"  # first model


def test_gate_decision_rule() -> None:
    ok = {"value": 1.0, "ci": [0.0, 2.0]}
    bad = {"value": 1.0, "ci": [-0.1, 2.0]}
    none = {"value": None, "ci": [None, None]}
    assert _decide("DR", ok, ok, "logging policy")[0] == "promote"
    assert _decide("DR", bad, ok, "logging policy")[0] == "refuse"
    assert _decide("DR", ok, bad, "logging policy")[0] == "refuse"  # never worse than what runs today
    assert _decide("DR", None, ok, "logging policy") == (
        "promote",
        [
            "first model: it must not be worse than the logging policy",
            "challenger vs logging policy (DR): 1.0000, 95% CI [0.0000, 2.0000]: the lower bound is >= 0",
        ],
    )
    assert _decide("DR", None, bad, "logging policy")[0] == "refuse"
    assert _decide("DR", none, ok, "logging policy")[0] == "refuse"  # no interval: nothing to judge on


def test_dask_and_local_engines_agree(sim_dir: Path) -> None:
    from distributed import Client, LocalCluster

    src = pipeline.sources.load(str(sim_dir))
    ts = dataset.build(src.touchpoints, src.profiles, src.decisions, max_contexts=10)
    local = train.train_local(ts, rounds=40, early_stopping=1000, threads=1)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        dist = train.train_dask(ts, client, rounds=40, early_stopping=1000)
    x, y = ts.part("eval")
    p_local, p_dask = local.booster.predict(x), dist.booster.predict(x)
    assert dist.engine == "dask"
    assert abs(roc_auc_score(y, p_local) - roc_auc_score(y, p_dask)) < 0.02
    assert np.corrcoef(p_local, p_dask)[0, 1] > 0.9


def test_cli_simulate_train_promote(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nbc.cli import app

    runner = CliRunner()
    sim, store = tmp_path / "sim", tmp_path / "store"
    res = runner.invoke(app, ["simulate", "--customers", "300", "--days", "40", "--seed", "2", "--out", str(sim)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["train", "--source", str(sim), "--store", str(store), "--max-decisions", "100", "--version", "a1"]
    )
    assert res.exit_code == 0, res.output
    assert "oracle" in res.output
    assert "AUC" in res.output
    report = json.loads((store / "a1" / "report.json").read_text())
    assert "true_value" in report["policies"]["model"]  # truth.json next to the source was picked up
    # the gate on 100 held-out decisions, as many as the training evaluated (by default all ~700 of this source)
    res = runner.invoke(app, ["promote", "--store", str(store), "--dry-run", "--json", "--max-decisions", "100"])
    assert res.exit_code in (0, 1), res.output  # 1: refused (a first model must beat the logging policy)
    out = json.loads(res.output)
    assert out["decisions"] == 100
    assert {"decision", "estimator", "challenger", "champion", "difference"} <= set(out)
    assert out["decision"] == ("promote" if res.exit_code == 0 else "refuse")
    assert (out["challenger"], out["champion"], out["dry_run"]) == ("a1", None, True)
    assert out["source"] == str(sim.resolve())  # the challenger's training source, from its manifest
    assert ModelStore.from_uri(str(store)).current() is None  # a dry run changes nothing
    res = runner.invoke(app, ["promote", "--store", str(store), "--force"])
    assert res.exit_code == 0, res.output
    assert ModelStore.from_uri(str(store)).current() == "a1"
    for argv in (["models", "--store", str(store)], ["evaluate", "--store", str(store)]):
        res = runner.invoke(app, argv)
        assert res.exit_code == 0, res.output
    assert "(lead)" in res.output
    res = runner.invoke(app, ["train", "--source", str(sim / "nope"), "--store", str(store)])
    assert res.exit_code == 2
    assert "unknown source" in res.output


@TRAINED
def test_default_model_in_one_booster_and_the_direct_model_stays_available(
    trained: tuple[ModelStore, pipeline.Result], sim_dir: Path, tmp_path: Path
) -> None:
    store, result = trained
    # Attributed labels (the default) on data with clicks: the funnel distilled into one booster.
    assert result.report["training"]["engine"] == "local-funnel"
    assert result.report["training"]["model"].startswith("funnel")
    assert store.manifest(result.version).files["lightgbm"] == "model.txt"
    opts = pipeline.Options(
        simulated_truth=str(sim_dir / "truth.json"), max_contexts=300, funnel=False, params={"num_threads": 1}
    )
    direct = pipeline.run(str(sim_dir), str(tmp_path / "store"), opts)
    pol = direct.report["policies"]
    assert direct.report["training"]["engine"] == "local"
    # (the value bar, 1.5 x random, is test_model_beats_random's; on these 300 decisions: 1.93 vs 1.41)
    assert pol["model"]["true_value"] > pol["random"]["true_value"]
    with pytest.raises(ValueError, match="conversion objective"):
        train.train_funnel(dataset.build(*_small_value_set(), objective="value", max_contexts=1))


def _small_value_set() -> tuple:
    sim = simulate(SimConfig(customers=80, days=25, seed=1))
    return (sim["touchpoints"], sim["profiles"], sim["decisions"])
