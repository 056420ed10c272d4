"""Training benchmark (issue 3): policy value vs the oracle and baselines, dataset throughput, training time.

    python bench/train.py            # 20k customers x 90 days (seed 7), then ~1M sends; appends to RESULTS.md
    python bench/train.py --quick    # a small smoke run, prints only

Bars: the learned policy reaches >= 85% of the oracle's value and clearly beats the best baseline.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import write_section
from training import dataset, evaluate, train
from training.sim_truth import Oracle
from training.simulate import SimConfig, simulate

SECTION = "## Training (issue 3)"
BASELINES = ("random", "global_best", "most_engaged", "last_engaged", "logging")


def run_value(customers: int, days: int, seed: int, contexts: int) -> tuple[dict[str, float | str], dict[str, float]]:
    t0 = time.perf_counter()
    sim = simulate(SimConfig(customers=customers, days=days, seed=seed))
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    ts = dataset.build(sim["touchpoints"], sim["profiles"], sim["decisions"], max_contexts=contexts)
    t_build = time.perf_counter() - t0
    # The alternative: one direct conversion model (`nbc train --no-funnel`).
    direct = train.train_local(ts)
    d_report = evaluate.evaluate(direct.booster, ts, Oracle(sim["truth"]))
    d_pol = d_report["policies"]
    direct_row = {
        "value": d_pol["model"]["true_value"],
        "share": d_pol["model"]["true_value"] / d_pol["oracle"]["true_value"],
        "auc": d_report["metrics"]["auc"],
        "train_s": direct.seconds,
        "trees": float(direct.best_iteration),
    }
    result = train.train_funnel(ts)  # the default model (`nbc train`)
    t0 = time.perf_counter()
    report = evaluate.evaluate(result.booster, ts, Oracle(sim["truth"]))
    t_eval = time.perf_counter() - t0
    pol = report["policies"]
    best = max(BASELINES, key=lambda n: pol[n]["true_value"])
    oracle = pol["oracle"]["true_value"]
    return {
        "customers": customers,
        "days": days,
        "touchpoints": ts.stats["touchpoints"],
        "rows": ts.stats["rows"],
        "sim_s": t_sim,
        "build_s": t_build,
        "train_s": result.seconds,
        "eval_s": t_eval,
        "iterations": result.best_iteration,
        "auc": report["metrics"]["auc"],
        "logloss": report["metrics"]["logloss"],
        "ece": report["metrics"]["ece"],
        "model": pol["model"]["true_value"],
        "oracle": oracle,
        "best_baseline": best,
        "best_baseline_value": pol[best]["true_value"],
        "share_of_oracle": pol["model"]["true_value"] / oracle,
        "model_snips": pol["model"]["snips"],
        "model_matches": pol["model"]["matches"],
        **{f"{n}_value": pol[n]["true_value"] for n in BASELINES},
    }, direct_row


def run_scale(customers: int, days: int, seed: int) -> dict[str, float]:
    sim = simulate(SimConfig(customers=customers, days=days, seed=seed))
    t0 = time.perf_counter()
    ts = dataset.build(sim["touchpoints"], sim["profiles"], sim["decisions"], max_contexts=1)
    build = time.perf_counter() - t0
    result = train.train_funnel(ts, threads=2)
    return {
        "sends": ts.stats["sends"],
        "touchpoints": ts.stats["touchpoints"],
        "rows": ts.stats["rows"],
        "build_s": build,
        "tp_per_s": ts.stats["touchpoints"] / build,
        "train_s": result.seconds,
        "iterations": result.best_iteration,
        "rows_train": float((ts.split == "train").sum()),
    }


def markdown(v: dict[str, float | str], f: dict[str, float], s: dict[str, float] | None) -> str:
    load = os.getloadavg()[0]
    lines = [
        SECTION,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, Python {platform.python_version()}"
        f" (1-min load average {load:.1f} at the end: other jobs shared the 2 cores, so times are upper bounds).",
        "",
        f"### Policy value on the simulator (seed 7, {v['customers']:,} customers x {v['days']} days)",
        "",
        "Net value per held-out decision (conversion value - channel cost), exact under the oracle:",
        "",
        "| policy | true value | % of oracle |",
        "|---|---:|---:|",
    ]
    oracle = float(v["oracle"])
    for name in ("model", *BASELINES):
        val = float(v[f"{name}_value"] if name != "model" else v["model"])
        lines.append(f"| {name} | {val:.3f} | {100 * val / oracle:.1f}% |")
    lines.append(f"| oracle | {oracle:.3f} | 100% |")
    lines.append(f"| direct model (`--no-funnel`) | {f['value']:.3f} | {100 * f['share']:.1f}% |")
    share = float(v["share_of_oracle"])
    ratio = float(v["model"]) / float(v["best_baseline_value"])
    lines += [
        "",
        f"- Learned policy: **{100 * share:.1f}% of the oracle's value** (bar: >= 85%: "
        f"{'met' if share >= 0.85 else 'NOT met'}); {ratio:.2f}x the best baseline ({v['best_baseline']}).",
        f"- The default model (`nbc train`) is the funnel: P(click) x P(conversion | click) distilled into one"
        f" booster ({v['iterations']} trees, trained in {float(v['train_s']):.1f} s). The direct conversion model"
        f" (`--no-funnel`) reaches {100 * f['share']:.1f}% of the oracle,"
        f" {f['value'] / float(v['best_baseline_value']):.2f}x the best baseline; AUC {f['auc']:.4f};"
        f" {f['trees']:.0f} trees, trained in {f['train_s']:.1f} s.",
        "- Labels: conversions go to the send of the last click before them (last click), else to the last send"
        " (last touch). With last touch only, a send between a click and its conversion took the conversion,"
        " which taught the models to favour customers who had just clicked and earlier send hours (the previous"
        " run, 2026-11-23, with last touch only: funnel 84.2%, direct model 81.0% of the oracle on this data).",
        "- Slot features: sends by UTC hour of day in the fold, so `hour_response_lift` is a response rate by"
        " send hour relative to what the customer's send times predict (the engagement histogram alone mostly"
        " shows the business-as-usual 10:00 sends). On this data it changed the value by < 0.1 point (funnel"
        " teacher, last-touch labels: 83.19% of the oracle without, 83.18% with): about 10 explored sends per"
        " customer say little about a personal peak hour.",
        f"- AUC {float(v['auc']):.4f}, log loss {float(v['logloss']):.4f}, ECE {float(v['ece']):.4f} on held-out sends "
        f"({float(v['rows']):,.0f} rows from {float(v['touchpoints']):,.0f} touchpoints; {v['iterations']} trees).",
        f"- Off-policy: model SNIPS {float(v['model_snips']):.3f} from only {v['model_matches']} matching logged"
        " actions: with 8 channels x 13 hours x 5 messages and 30% uniform exploration, a deterministic policy"
        " matches few logged actions, so IPS/SNIPS intervals are wide; the oracle value is the reliable measure here.",
        f"- Times: simulate {float(v['sim_s']):.1f} s, dataset build {float(v['build_s']):.1f} s, "
        f"train {float(v['train_s']):.1f} s, evaluate {float(v['eval_s']):.1f} s.",
    ]
    if share < 0.85:  # the default model's gap
        lines += [
            "- Gap to the bar: the oracle knows each customer's idiosyncratic channel affinity (sd 0.45 on the logit)"
            " and preferred hour (sd 1.5 h); a policy knowing every population-level truth exactly but neither of"
            " those reaches ~90% of the oracle (measured on 5,000 customers), and about 10 explored sends per"
            " customer say little about either. Diagnostics (funnel teacher, 2026-11-24): the message choice"
            " matches the oracle's; the model's channel with the oracle's slot and message ~93%, the oracle's"
            " channel with the model's slot ~90%. Tree size / regularisation sweeps (7-63 leaves) did not help.",
        ]
    if s is not None:
        lines += [
            "",
            f"### Scale: {s['sends']:,.0f} sends ({s['touchpoints']:,.0f} touchpoints)",
            "",
            f"- Dataset build (columnar labels + one fold per touchpoint + feature rows): {s['build_s']:.1f} s ="
            f" **{s['tp_per_s']:,.0f} touchpoints/s** (replay in {os.cpu_count()} forked processes, one per core).",
            f"- LightGBM training of the default (funnel: click model, conversion-given-click model, one student)"
            f" on {s['rows_train']:,.0f} training rows, 2 threads, early stopping:"
            f" **{s['train_s']:.1f} s** ({s['iterations']:.0f} trees in the published booster).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        v, f = run_value(2000, 60, 7, 500)
        print(markdown(v, f, None))
        return
    v, f = run_value(20_000, 90, 7, 5000)
    print(markdown(v, f, None), flush=True)
    s = run_scale(28_500, 90, 8)
    text = markdown(v, f, s)
    print(text)
    write_section(SECTION, text)


if __name__ == "__main__":
    main()
