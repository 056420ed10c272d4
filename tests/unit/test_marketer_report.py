"""The marketer's page (training/marketer_report.py) and its numbers (training/marketing.py): on a real small
training run, on hand-made grids where the answer is known, and on reports with nothing measured."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.adapters.registry import ModelStore
from training import marketer_report as mr
from training import marketing, pipeline
from training.ope.policies import PolicyDist
from training.simulate import SimConfig, simulate, write

# The tests of the module's training run share one worker (--dist loadgroup): the run is built once, not per worker.
ON_THE_RUN = pytest.mark.xdist_group("marketer_report_run")
SCIENTIFIC = re.compile(r"\d\.?\d*e[+-]\d", re.IGNORECASE)


def visible(page: str) -> str:
    """The page without its style sheet (what a reader sees, and where a number can be)."""
    return re.sub(r"<style>.*?</style>", "", page, flags=re.DOTALL)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelStore, dict[str, Any]]:
    """A small simulated log (with holdout and no-send decisions), trained with window labels."""
    sim = write(simulate(SimConfig(customers=400, days=45, seed=21)), tmp_path_factory.mktemp("sim"))
    opts = pipeline.Options(
        simulated_truth=str(sim / "truth.json"),
        max_contexts=300,
        version="v1",
        labels="window",
        params={"num_threads": 1},
    )
    result = pipeline.run(str(sim), str(tmp_path_factory.mktemp("store")), opts)
    return result.store, json.loads(result.store.read("v1", "report.json"))


@ON_THE_RUN
def test_page_is_published_with_every_section_and_people_numbers(run: tuple[ModelStore, dict[str, Any]]) -> None:
    store, report = run
    assert store.manifest("v1").files["marketing_html"] == "marketing.html"
    page = store.read("v1", "marketing.html").decode()
    text = visible(page)
    for section in ("Key numbers", "Which channel", "When: send hour", "Which message", "Best time per channel"):
        assert f"<h2>{section}</h2>" in text
    assert "<img" not in page  # one self-contained file: bars and heatmap are styled tables
    mix = report["marketing"]["mix"]["channel"]
    assert page.count("<table class=mix>") == 3  # channel, hour, message
    email = mix["model"]["email"] / max(max(p.values()) for p in mix.values())
    assert f'<div class=bar style="width:{100 * email:.1f}%;background:#1f77b4"></div>' in page
    mk = report["marketing"]
    vs = mk["vs_logging"]
    interval = f"(95% interval {mr.money(vs['ci'][0])} to {mr.money(vs['ci'][1])})"
    assert f"per decision {interval} over current practice, on 300 held-out decisions" in text
    nc = mk["no_contact"]["model"]
    assert f"{mr.percent(nc['share'])} <small>(95% interval {mr.percent(nc['ci'][0])} to" in text
    assert "Measured uplift against the holdout: the decisions served in this log earned" in text
    up = mk["uplift"]["measured"]
    assert f"on {up['served_decisions']:,} served decisions" in text  # thousands separators
    assert "The true uplift on this simulated data is" in text
    assert "Best possible (simulator)" in text
    first = next(v for row in mk["heatmap"]["mean_ev"] for v in row if v is not None)
    assert "<table class=heat>" in text
    assert f">{mr.money(first)}</td>" in text  # the heatmap's cells, 2 decimals
    assert not SCIENTIFIC.search(text)
    assert not SCIENTIFIC.search(visible(store.read("v1", "report.html").decode()))


@ON_THE_RUN
def test_marketing_numbers_add_up(run: tuple[ModelStore, dict[str, Any]]) -> None:
    _, report = run
    mk = report["marketing"]
    assert mk["evaluated_decisions"] == 300
    assert mk["incremental"] is True  # window labels: the model learns "don't contact"
    assert mk["logged_no_contact"] is True  # holdout and no-send decisions are held out too
    for kind in ("channel", "hour"):
        for policy in ("model", "logging", "oracle"):
            assert sum(mk["mix"][kind][policy].values()) == pytest.approx(1.0)
    for policy in ("model", "logging", "oracle"):
        assert sum(mk["mix"]["message"][policy].values()) == pytest.approx(1.0)
        share = mk["no_contact"][policy]
        assert share["share"] == pytest.approx(mk["mix"]["channel"][policy]["none"])
        assert share["ci"][0] <= share["share"] <= share["ci"][1]
        week = mk["per_customer_week"][policy]
        contacts = (1 - share["share"]) * mk["decisions_per_customer_week"]
        assert week["contacts"] == pytest.approx(contacts)
        assert week["contacts_ci"][0] <= week["contacts"] <= week["contacts_ci"][1]
        assert week["cost_ci"][0] <= week["cost"] <= week["cost_ci"][1]
    assert 0 < mk["no_contact"]["logging"]["share"] < 1
    lead = report["ope"]["lead"]
    pol = report["policies"]
    assert mk["vs_logging"]["estimator"] == lead
    assert mk["vs_logging"]["value"] == pytest.approx(pol["model"]["value"] - pol["logging"]["value"])
    heat = mk["heatmap"]
    assert len(heat["mean_ev"]) == len(heat["channels"]) == len(mk["costs"])
    for means, counts in zip(heat["mean_ev"], heat["n"], strict=True):
        assert len(means) == len(counts) == 24
        assert all((m is None) == (n == 0) for m, n in zip(means, counts, strict=True))
    assert sum(map(sum, heat["n"])) > 0
    up = mk["uplift"]
    assert up["reason"] is None
    assert up["measured"]["ci"][0] <= up["measured"]["value"] <= up["measured"]["ci"][1]
    assert up["measured"]["holdout_decisions"] > 0
    assert up["true"] is not None


def test_log_without_propensities_or_holdout(tmp_path: Path) -> None:
    """A real run on a log with no propensity and no holdout: estimated values, uplift "not measured", no crash."""
    sim = write(simulate(SimConfig(customers=300, days=40, seed=5, holdout_share=0.0)), tmp_path / "sim")
    decisions = pq.read_table(sim / "decisions.parquet")
    col = decisions.column_names.index("propensity")
    pq.write_table(
        decisions.set_column(col, "propensity", pa.nulls(decisions.num_rows, pa.float64())), sim / "decisions.parquet"
    )
    opts = pipeline.Options(max_contexts=200, version="v1", params={"num_threads": 1})
    result = pipeline.run(str(sim), str(tmp_path / "store"), opts)
    mk = result.report["marketing"]
    assert result.report["ope"]["propensities"] == "none"
    assert mk["uplift"]["measured"] is None
    assert "holdout" in mk["uplift"]["reason"]
    assert "oracle" not in mk["no_contact"]
    text = visible(result.store.read("v1", "marketing.html").decode())
    assert "Measured uplift against the holdout: not measured (no holdout decisions in the log" in text
    assert "rest on estimated ones" in text
    assert "over current practice, on 200 held-out decisions" in text
    assert "Best possible (simulator)" not in text
    assert not SCIENTIFIC.search(text)


def _grid() -> SimpleNamespace:
    """Two decisions, two channels, three slots, one message; channel 1 is never allowed at slot 2."""
    allowed = np.ones((2, 2, 3, 1), dtype=bool)
    allowed[:, 1, 2] = False
    allowed[1, 0, 0] = False
    local_hour = np.array([[9, 10, 11], [10, 11, 12]])
    return SimpleNamespace(allowed=allowed, local_hour=local_hour)


def test_heatmap_averages_allowed_cells_by_local_hour() -> None:
    ctx = _grid()
    ev = np.arange(12, dtype=float).reshape(2, 2, 3, 1)  # decision 0: 0..5, decision 1: 6..11
    heat = marketing.heatmap(ev, ctx)  # type: ignore[arg-type]
    email, sms = heat["mean_ev"][0], heat["mean_ev"][1]
    assert email[9] == 0.0  # decision 0 only (decision 1 is not allowed at its slot 0)
    assert email[10] == 1.0
    assert email[11] == pytest.approx((2.0 + 7.0) / 2)  # both decisions at local 11:00
    assert email[12] == 8.0
    assert sms[9] == 3.0
    assert sms[10] == pytest.approx((4.0 + 9.0) / 2)  # decision 0's slot 1 and decision 1's slot 0
    assert sms[11] == 10.0  # decision 0's 11:00 is its slot 2, never allowed on channel 1
    assert sms[12] is None
    assert heat["n"][1][12] == 0
    assert heat["n"][0][11] == 2
    assert heat["n"][1][10] == 2
    assert email[0] is None


def test_heatmap_table_colours_value_and_loss_and_names_closed_hours() -> None:
    gap = [None] * 14
    heat = {"channels": ["email", "sms"], "mean_ev": [[None] * 8 + [1.5, -0.5, *gap], [None] * 8 + [0.75, None, *gap]]}
    table = mr.heatmap_table(heat)
    assert "<th>local hour</th><th>08</th><th>09</th></tr>" in table  # only the hours some channel was allowed at
    assert 'rgba(26,152,80,0.75)">1.50</td>' in table  # the largest value, full colour
    assert 'rgba(215,48,39,0.25)">-0.50</td>' in table  # a loss, a third as large
    assert "<td></td></tr>" in table  # sms never allowed at 09:00
    assert "Never allowed at 00:00, 01:00," in table
    assert "23:00 (quiet hours)" in table
    assert "No channel was allowed" in mr.heatmap_table({})


def test_hour_mix_is_over_contacts_in_local_time() -> None:
    ctx = _grid()
    cells = np.zeros((2, 2, 3, 1))
    cells[0, 0, 0, 0] = 1.0  # decision 0: 09:00 for sure
    cells[1, 1, 1, 0] = 0.5  # decision 1: half 11:00, half don't contact
    mix = marketing._hour_mix(PolicyDist(cells, np.array([0.0, 0.5])), ctx)  # type: ignore[arg-type]
    assert mix["9"] == pytest.approx(2 / 3)
    assert mix["11"] == pytest.approx(1 / 3)
    assert sum(mix.values()) == pytest.approx(1.0)


def test_nothing_measured_renders_not_measured() -> None:
    for report in (
        {},
        {"marketing": {}},
        {"marketing": {"vs_logging": {"value": None, "ci": [None, None], "n": 0}, "uplift": {"measured": None}}},
    ):
        page = mr.render_html(report)
        assert "not measured" in page
        assert "No held-out decision was evaluated" in page
    reason = "no holdout decisions in the log: uplift needs both arms (holdout_share > 0)"
    page = mr.render_html({"marketing": {"uplift": {"measured": None, "reason": reason}}})
    assert "Measured uplift against the holdout: not measured (no holdout decisions in the log" in page


def test_partial_marketing_block_without_propensities_or_oracle_renders() -> None:
    """Logs without propensities: no interval on the difference, estimated values, no truth; no crash."""
    report = {
        "ope": {"lead": "dm", "propensities": "none", "estimated": True},
        "policies": {"model": {"value": 1.5, "ci": [None, None]}, "logging": {"value": None, "ci": None}},
        "marketing": {
            "evaluated_decisions": 12_345,
            "decisions_per_customer_week": 1.25,
            "vs_logging": {"value": 48790.5, "ci": [None, None], "n": 12_345, "estimator": "dm"},
            "mix": {"channel": {"model": {"email": 0.75, "none": 0.25}, "logging": {"email": 1.0, "none": 0.0}}},
            "no_contact": {"model": {"share": 0.25, "ci": [0.2, 0.3]}, "logging": {"share": 0.0, "ci": None}},
            "per_customer_week": {"model": {"contacts": 0.9375, "contacts_ci": [0.9, 1.0], "cost": None}},
            "heatmap": {"channels": ["email"], "mean_ev": [[None] * 24], "n": [[0] * 24]},
        },
    }
    text = visible(mr.render_html(report))
    assert "worth +48,790.50 per decision (no interval) over current practice, on 12,345 held-out decisions" in text
    assert "rest on estimated ones" in text
    assert "75.0%" in text
    assert "25.0% <small>(95% interval 20.0% to 30.0%)</small>" in text
    assert "email: never allowed in the held-out decisions" in text
    assert "not measured" in text  # the logging policy's value and the model's cost per week
    assert not SCIENTIFIC.search(text)
