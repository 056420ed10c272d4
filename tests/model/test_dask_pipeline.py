"""`nbc train --engine dask --workers 2` end to end on a small simulated source, against the local engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from model.adapters.registry import ModelStore
from training import pipeline
from training.simulate import SimConfig, simulate, write

Reports = tuple[dict[str, Any], dict[str, Any]]  # (dask, local) report.json


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Reports:
    sim = write(simulate(SimConfig(customers=300, days=30, seed=5)), tmp_path_factory.mktemp("sim"))
    store = tmp_path_factory.mktemp("store")
    reports = []
    for engine in ("dask", "local"):
        opts = pipeline.Options(
            engine=engine,
            workers=2,  # no scheduler: a local cluster starts and stops with the run
            funnel=False,  # the Dask engine trains the direct model: compare like with like
            simulated_truth=str(sim / "truth.json"),
            max_contexts=300,
            version=engine,
            params={"num_threads": 1},
        )
        pipeline.run(str(sim), str(store), opts)
        reports.append(json.loads(ModelStore.from_uri(str(store)).read(engine, "report.json")))
    return reports[0], reports[1]


def test_report_records_dask_for_every_stage(runs: Reports) -> None:
    dask_rep, local_rep = runs
    engine = dask_rep["engine"]
    assert {engine[s] for s in ("dataset", "train", "evaluate")} == {"dask"}
    assert engine["workers"] == 2
    assert engine["partitions"] == 8  # 4 per worker by default
    assert local_rep["engine"]["dataset"] == "local"
    assert dask_rep["training"]["engine"] == "dask"


def test_dask_engine_gives_the_local_rows_and_a_close_policy_value(runs: Reports) -> None:
    dask_rep, local_rep = runs
    for key in ("rows_train", "rows_valid", "rows_eval"):
        assert dask_rep["training"][key] == local_rep["training"][key] > 0
    assert dask_rep["dataset"] == local_rep["dataset"]
    pol_d, pol_l = dask_rep["policies"], local_rep["policies"]
    assert set(pol_d) == set(pol_l)
    # the same held-out decisions and contexts: the logged actions and the oracle are valued identically
    for name in ("logging", "oracle", "random"):
        assert pol_d[name]["true_value"] == pytest.approx(pol_l[name]["true_value"], rel=1e-9)
    assert pol_d["logging"]["estimates"]["ips"]["value"] == pytest.approx(
        pol_l["logging"]["estimates"]["ips"]["value"], rel=1e-9
    )
    # two fits of the same model (lightgbm.dask vs single machine): close shares of the oracle
    assert abs(pol_d["model"]["share_of_oracle"] - pol_l["model"]["share_of_oracle"]) < 0.1
    lead = dask_rep["ope"]["lead"]
    lo, hi = pol_d["model"]["estimates"][lead]["ci"]
    assert lo <= pol_d["model"]["value"] <= hi
    assert dask_rep["metrics"]["n_eval"] == local_rep["metrics"]["n_eval"]


def test_cli_refuses_an_unknown_engine(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nbc.cli import app

    result = CliRunner().invoke(app, ["train", "--source", str(tmp_path), "--engine", "spark"])
    assert result.exit_code == 2
    assert "engine must be local or dask" in result.output
