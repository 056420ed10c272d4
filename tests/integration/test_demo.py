"""`make demo` end to end, at a small size: every step runs for real against the embedded local AWS."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.adapters.registry import ModelStore
from nbc.commands.demo import run
from training.ope import ESTIMATORS

POLICIES = {"model", "random", "global_best", "most_engaged", "last_engaged", "logging", "oracle"}


def test_demo_runs_the_main_job_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # run() sets these for its own output; monkeypatch restores them after the test.
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("NBC_MODEL_STORE", str(tmp_path / "models"))
    monkeypatch.setenv("NBC_TABLE_NAME", "nbc-demo")

    out = run(customers=60, days=21, seed=3, workdir=tmp_path)

    counts = out["counts"]
    assert counts["stored"] > 500
    assert counts["duplicate"] == counts["rejected"] == 0
    report = out["report"]
    assert set(report["policies"]) == POLICIES
    assert report["policies"]["oracle"]["true_value"] >= report["policies"]["model"]["true_value"]
    assert report["ope"]["lead"] in ESTIMATORS
    for res in report["policies"].values():  # every estimator, with its interval and diagnostics
        assert set(res["estimates"]) == set(ESTIMATORS)
    store = ModelStore.from_uri(str(tmp_path / "models"))
    # the first model goes through the paired gate (against the logging policy); if it is refused at this size,
    # the demo promotes it anyway and says so, so that the API has a model to serve
    assert store.current() is not None
    assert store.manifest(store.current()).source  # the export it trained on: the gate's held-out source
    answers = out["answers"]
    assert len(answers) == 5
    for answer in answers:
        assert answer["decision_id"]
        assert answer["model_version"] == store.current()
        assert answer["policy"] in {"model", "explore", "holdout", "cold_start"}
        assert answer["recommendations"]
