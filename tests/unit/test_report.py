"""The report's consumers (HTML page, policy plot, `nbc evaluate` / `nbc models` tables) on the report.json layout,
nulls included: a log without propensities, a policy that matched no logged decision, no simulated truth."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from typer.testing import CliRunner

from model.adapters.registry import Manifest, ModelStore
from nbc.cli import app
from nbc.commands.training import print_policy_value
from training import report as rp
from training import report_text as rt

NULL = {"value": None, "ci": [None, None], "ess": 0.0, "max_weight": None, "matched": 0, "support": 0.0, "n": 0}


def _est(value: float, lo: float, hi: float, ess: float = 120.0, matched: int = 80) -> dict[str, Any]:
    return {"value": value, "ci": [lo, hi], "ess": ess, "max_weight": 3.0, "matched": matched, "support": 1.0, "n": 500}


def _report(propensities: str = "none", truth: bool = False) -> dict[str, Any]:
    weighted = propensities != "none"
    policies = {}
    for name, base in (("model", 2.0), ("random", 1.0), ("global_best", 1.5), ("logging", 1.2)):
        estimates = {
            "dm": _est(base, base - 0.2, base + 0.2, ess=500, matched=500),
            "ips": _est(base, base - 1, base + 1) if weighted else dict(NULL),
            "snips": _est(base, base - 1, base + 1) if weighted else dict(NULL),
            "dr": _est(base, base - 0.5, base + 0.5) if weighted else dict(NULL),
            "sndr": _est(base, base - 0.5, base + 0.5) if weighted else dict(NULL),
            "mips": _est(base, base - 3, base + 90.0),  # one estimator's huge interval
            "mdr": _est(base + 0.1, base - 0.4, base + 0.6),
        }
        if name == "global_best":
            estimates["snips"] = dict(NULL)  # no matched decision
        if name == "model" and weighted:
            estimates["dr"]["mean_weight"] = 0.05  # most of its mass where the log never goes
        lead = "dr" if weighted else "mdr"
        res: dict[str, Any] = {
            "estimates": estimates,
            "value": estimates[lead]["value"],
            "ci": estimates[lead]["ci"],
            "share_no_contact": 0.0,
        }
        if truth:
            res.update({"true_value": base * 0.9, "regret": 1.0, "share_of_oracle": base / 4})
        policies[name] = res
    return {
        "metrics": {"auc": None, "logloss": 0.2, "ece": None},
        "policies": policies,
        "ope": {
            "lead": "dr" if weighted else "mdr",
            "propensities": propensities,
            "estimated": propensities != "logged",
            "bootstrap": 500,
            "channel_model": {"logloss": 1.2, "calibration": {"predicted": [0.1, 0.5], "observed": [0.12, 0.45]}},
            "unsupported": {"channels": ["call_center"], "messages": []},
        },
        "training": {"model": "direct"},
    }


def test_html_without_propensities_says_so_and_marks_estimates() -> None:
    page = rp.render_html(_report("none"))
    assert "NO propensities" in page
    assert "Estimated:" in page
    assert "MDR (lead) est." in page  # the lead marked, and its number marked as estimated
    assert "n/a" in page  # null estimates are shown, not crashed on
    assert "call_center" in page  # never-tried actions listed
    assert "Error against the true value" not in page  # no truth: no error table


def test_html_with_truth_shows_errors_and_coverage() -> None:
    page = rp.render_html(_report("logged", truth=True))
    assert "DR (lead)" in page
    assert "(lead) est." not in page
    assert "Error against the true value" in page
    assert "&#10003;" in page
    assert "puts only about 5% of its probability on actions the log ever takes" in page
    assert "mean w 0.05" in page


def test_policy_plot_is_not_scaled_by_one_estimators_noise() -> None:
    assert rp.policies_plot(_report("none", truth=True)).startswith(b"\x89PNG")
    assert rp.policies_plot({"policies": {}, "ope": {}}).startswith(b"\x89PNG")  # nothing evaluated
    lo, hi = rp._axis_limits([1.0, 2.0, 1.5], [0.5, 2.5, -50.0, 400.0])
    assert -4.0 < lo < 0.0
    assert 3.0 < hi < 6.0  # the points' span, not the 400 of one interval


def test_cli_tables_and_commands_survive_nulls(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    print_policy_value(_report("none"), "t", out=console)
    text = console.export_text()
    assert "MDR (lead) est." in text
    assert "n/a" in text
    assert "NO propensities" in text

    store = ModelStore.from_uri(str(tmp_path))
    now = datetime(2026, 11, 1, tzinfo=UTC)
    manifest = Manifest(
        version="v1",
        created_at=now,
        training_window=(now, now),
        features=["a"],
        categorical=[],
        schema_hash="x",
        channels=["email"],
        metrics={"logloss": 0.2},  # no AUC, no policy value
    )
    store.publish("v1", {"report.json": json.dumps(_report("none")).encode()}, manifest)
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", "--store", str(tmp_path), "--version", "v1"])
    assert res.exit_code == 0, res.output
    assert "MDR (lead)" in res.output
    res = runner.invoke(app, ["models", "--store", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "v1" in res.output


def test_numbers_are_formatted_for_people() -> None:
    assert rt.fmt(48790.1234) == "48,790.123"
    assert rt.fmt(-1234.5, "+.1f") == "-1,234.5"
    assert rt.human(48790.0) == "48,790"
    assert rt.human(0.000012345) == "0.00001234"
    assert rt.human(12.3456) == "12.35"
    assert rt.human(None) == "n/a"
    assert rt.money(1234.5) == "1,234.50"
    assert rt.money(0.42, sign=True) == "+0.42"
    assert rt.money(0.002) == "0.002"  # a cheap channel's cost is not 0.00
    assert rt.percent(0.1234) == "12.3%"
    assert rt.percent(0.0001) == "< 0.1%"


def test_html_prints_no_scientific_notation() -> None:
    report = _report("logged")
    report["metrics"] = {"n_eval": 48790.0, "base_rate": 0.000012345, "logloss": 1e-7}
    report["dataset"] = {"touchpoints": 1.2e6, "sends": 48790.0}
    page = rp.render_html(report)
    assert "48,790" in page
    assert "1,200,000" in page
    assert "0.00001234" in page
    assert "e+" not in page
    assert "e-0" not in page


def test_html_says_how_order_values_are_estimated() -> None:
    report = _report("logged")
    page = rp.render_html(report)  # an older report without a prior
    assert "else the configured default" in page
    report["value_prior"] = {
        "overall": 64.39,
        "attribute": "segment",
        "means": {"vip": 129.68, "new": 39.67},
        "credibility": 21.19,
        "conversions": 1048,
        "customers": 812,
    }
    page = rp.render_html(report)
    assert "by segment (new 39.67, vip 129.68; overall 64.39)" in page
    assert "1,048 training conversions of 812 customers" in page
    assert "n / (n + 21.2)" in page
