"""The training pipeline end to end on small simulated data: value, report, publication, promotion, Dask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from model.adapters.registry import ModelStore
from training import dataset, pipeline, train
from training.promote import PromotionRefusedError, promote
from training.simulate import SimConfig, simulate, write


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(simulate(SimConfig(customers=1500, days=60, seed=21)), tmp_path_factory.mktemp("sim"))


@pytest.fixture(scope="module")
def trained(sim_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelStore, pipeline.Result]:
    store_dir = tmp_path_factory.mktemp("store")
    # One LightGBM thread: the suite runs on 2 cores with pytest -n 2 (OpenMP oversubscription is slow).
    opts = pipeline.Options(
        simulated_truth=str(sim_dir / "truth.json"), max_contexts=600, version="v1", params={"num_threads": 1}
    )
    result = pipeline.run(str(sim_dir), str(store_dir), opts)
    return result.store, result


def test_model_beats_random_and_report_is_complete(trained: tuple[ModelStore, pipeline.Result]) -> None:
    store, _result = trained
    report = json.loads(store.read("v1", "report.json"))
    assert 0.6 < report["metrics"]["auc"] <= 1.0
    assert report["metrics"]["logloss"] > 0
    pol = report["policies"]
    assert set(pol) == {"model", "random", "global_best", "most_engaged", "last_engaged", "logging", "oracle"}
    for res in pol.values():
        assert {"ips", "snips", "true_value"} <= set(res)
    assert pol["model"]["true_value"] > 1.5 * pol["random"]["true_value"]
    assert pol["model"]["true_value"] > pol["logging"]["true_value"]
    assert pol["oracle"]["true_value"] >= pol["model"]["true_value"]
    html = store.read("v1", "report.html").decode()
    assert "calibration.png" in html
    assert store.read("v1", "calibration.png").startswith(b"\x89PNG")
    m = store.manifest("v1")
    assert m.check_hash()
    assert m.files["lightgbm"] == "model.txt"
    assert m.features == list(dataset.layout_from_settings().names)
    assert m.levels["message"]
    assert set(m.levels) >= {"channel", "message", "attr_segment", "attr_age_band"}
    assert m.policy_value["model_true_value"] == pol["model"]["true_value"]
    assert m.training_window[0] < m.training_window[1]


def test_promotion_gate(trained: tuple[ModelStore, pipeline.Result]) -> None:
    store, result = trained
    assert promote(store, "v1").version == "v1"
    assert store.current() == "v1"
    worse = result.manifest.model_copy(
        update={"version": "v2", "policy_value": {k: v - 1.0 for k, v in result.manifest.policy_value.items()}}
    )
    store.publish("v2", {"model.txt": store.read("v1", "model.txt")}, worse)
    with pytest.raises(PromotionRefusedError, match="worse than champion"):
        promote(store, "v2")
    assert store.current() == "v1"
    forced = promote(store, "v2", force=True)
    assert forced.forced
    assert store.current() == "v2"
    better = result.manifest.model_copy(update={"version": "v3"})
    store.publish("v3", {"model.txt": store.read("v1", "model.txt")}, better)
    assert promote(store).version == "v3"  # newest by default, not worse than v2
    assert store.current() == "v3"


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
    res = runner.invoke(app, ["promote", "--store", str(store)])
    assert res.exit_code == 0, res.output
    assert ModelStore.from_uri(str(store)).current() == "a1"
    res = runner.invoke(app, ["train", "--source", str(sim / "nope"), "--store", str(store)])
    assert res.exit_code == 2
    assert "unknown source" in res.output


def test_default_is_the_funnel_in_one_booster_and_the_direct_model_stays_available(
    trained: tuple[ModelStore, pipeline.Result], sim_dir: Path, tmp_path: Path
) -> None:
    store, result = trained
    assert result.report["training"]["engine"] == "local-funnel"
    assert store.manifest(result.version).files["lightgbm"] == "model.txt"
    opts = pipeline.Options(
        simulated_truth=str(sim_dir / "truth.json"), max_contexts=300, funnel=False, params={"num_threads": 1}
    )
    direct = pipeline.run(str(sim_dir), str(tmp_path / "store"), opts)
    pol = direct.report["policies"]
    assert direct.report["training"]["engine"] == "local"
    assert pol["model"]["true_value"] > 1.5 * pol["random"]["true_value"]
    with pytest.raises(ValueError, match="conversion objective"):
        train.train_funnel(dataset.build(*_small_value_set(), objective="value", max_contexts=1))


def _small_value_set() -> tuple:
    sim = simulate(SimConfig(customers=80, days=25, seed=1))
    return (sim["touchpoints"], sim["profiles"], sim["decisions"])
