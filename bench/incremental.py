"""Incremental value and drift benchmark: the default model against the simulator's incremental oracle.

    python bench/incremental.py                          # 20k customers x 90 days, seed 7: defaults, then --drift
    python bench/incremental.py --customers 2000 --no-write --runs default   # a smoke run

Run `default` (organic conversions, holdout and no-send decisions: the simulator's defaults): every policy's exact
incremental value per held-out decision (contact minus no contact, minus cost) under the oracle; the model's share
of the oracle's value and its ratio to the best baseline; the "don't contact" shares; the measured uplift of the
logged decisions over the holdout (training/uplift.py, from logs alone) with its interval beside the oracle's true
uplift.

Run `drift` (`SimConfig(drift=True)`, temporal split): the same shares, and the held-out AUC of the model against
a plain LightGBM model (library defaults, the conversion label) fitted on the same train + valid rows with the
same round count as the model's refit, scored on the same held-out rows.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightgbm as lgb
import numpy as np
from sklearn.metrics import roc_auc_score

from bench.results import write_section
from training import dataset, evaluate, train
from training import uplift as measure
from training.sim_truth import Oracle
from training.simulate import SimConfig, simulate
from training.sources import Sources

SECTION = "## Incremental value and drift (issue 11)"
BASELINES = ("logging", "random", "global_best", "most_engaged", "last_engaged")


def run(name: str, customers: int, days: int, seed: int, drift: bool, decisions: int) -> dict[str, Any]:
    print(f"[{name}] {customers:,} customers x {days} days, seed {seed}, drift {drift}", flush=True)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    sim = simulate(SimConfig(customers=customers, days=days, seed=seed, drift=drift))
    times["simulate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ts = dataset.build(sim["touchpoints"], sim["profiles"], sim["decisions"], max_contexts=decisions)
    times["dataset"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = train.train_funnel(ts)  # what `nbc train` trains by default
    times["train"] = time.perf_counter() - t0
    oracle = Oracle(sim["truth"])
    t0 = time.perf_counter()
    policies, details = evaluate.evaluate_policies(result.booster, ts, oracle)
    times["evaluate"] = time.perf_counter() - t0
    out: dict[str, Any] = {"name": name, "customers": customers, "days": days, "seed": seed, "drift": drift}
    out |= {"decisions": details["decisions"], "labels": ts.labels, "model": result.model, "times": times}
    out["policies"] = {k: {"true": v["true_value"], "share": v["share_of_oracle"]} for k, v in policies.items()}
    out["no_contact"] = {"model": details.get("model_no_contact"), "oracle": details.get("oracle_no_contact")}
    src = Sources(sim["touchpoints"], sim["profiles"], sim["decisions"])
    out["uplift"] = {"measured": measure.measured(src, ts.window_days), "true": measure.true_uplift(src, oracle)}
    # Held-out AUC: the model vs plain LightGBM on the same rows and round count.
    x_ev, y_ev = ts.part("eval")
    fit_rows = np.isin(ts.split, ["train", "valid"])
    plain = lgb.train(
        {"objective": "binary", "verbose": -1, "seed": 7, "num_threads": 2},
        lgb.Dataset(
            ts.X[fit_rows],
            (ts.y[fit_rows] > 0).astype(float),
            feature_name=list(ts.names),
            categorical_feature=list(ts.layout.categorical),
        ),
        num_boost_round=max(1, result.best_iteration),
    )
    yb = (y_ev > 0).astype(float)
    out["auc"] = {
        "model": float(roc_auc_score(yb, result.booster.predict(x_ev))),
        "plain_lightgbm": float(roc_auc_score(yb, plain.predict(x_ev))),
        "rounds": result.best_iteration,
        "eval_rows": len(y_ev),
        "positives": int(yb.sum()),
    }
    print(f"[{name}] {out['policies']['model']} no-contact {out['no_contact']} auc {out['auc']}", flush=True)
    return out


def markdown(runs: list[dict[str, Any]], note: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        SECTION,
        "",
        f"Measured {now} on {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()} "
        f"(1-min load average {load:.1f} at the end). Command: `python bench/incremental.py`. Every value is the "
        "oracle's exact incremental net value per held-out decision (contact minus no contact, minus cost) of the "
        "policy as served (epsilon-greedy, exploration included). " + note,
        "",
    ]
    for r in runs:
        pol = r["policies"]
        best = max(BASELINES, key=lambda k: pol[k]["true"])
        up = r["uplift"]
        m = up["measured"]
        covered = m["ci"][0] <= up["true"] <= m["ci"][1]
        lines += [
            f"### {r['name']}: {r['customers']:,} customers x {r['days']} days, seed {r['seed']}, drift {r['drift']}; "
            f"{r['decisions']:,} held-out decisions, {r['labels']} labels, model: {r['model']}",
            "",
            "| policy | true value / decision | share of oracle |",
            "|---|---:|---:|",
        ]
        lines += [f"| {k} | {v['true']:.3f} | {v['share']:.1%} |" for k, v in pol.items()]
        ratio = pol["model"]["true"] / pol[best]["true"] if pol[best]["true"] > 0 else float("nan")
        nc = r["no_contact"]
        auc = r["auc"]
        lines += [
            "",
            f"- Model: **{pol['model']['share']:.1%} of the oracle** (bar >= 90%, >= 85% with drift); "
            f"**{ratio:.2f}x the best baseline** ({best}, bar >= 1.2x).",
            f'- "Don\'t contact" share: model {nc["model"]:.1%}, oracle {nc["oracle"]:.1%} '
            f"(difference {100 * (nc['model'] - nc['oracle']):+.1f} points, bar within 5).",
            f"- Measured uplift of the logged decisions over the holdout: {m['value']:.3f} "
            f"[{m['ci'][0]:.3f}, {m['ci'][1]:.3f}] on {m['served_decisions']:,} served and "
            f"{m['holdout_decisions']:,} holdout decisions; true {up['true']:.3f}: "
            f"{'covered' if covered else 'NOT covered'}.",
            f"- Held-out AUC ({auc['eval_rows']:,} rows, {auc['positives']:,} positives): model {auc['model']:.4f}, "
            f"plain LightGBM refit on train + valid at the same {auc['rounds']} rounds {auc['plain_lightgbm']:.4f} "
            f"(difference {auc['model'] - auc['plain_lightgbm']:+.4f}; bar with drift: within 0.01).",
            "- Times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in r["times"].items()) + ".",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--decisions", type=int, default=5000, help="held-out decisions valued (max_contexts)")
    parser.add_argument("--runs", default="default,drift")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    runs = [
        run(name, args.customers, args.days, args.seed, name == "drift", args.decisions)
        for name in args.runs.split(",")
    ]
    text = markdown(runs, args.note)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
