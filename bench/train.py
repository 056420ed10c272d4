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
from training.simulate import Oracle, SimConfig, simulate

SECTION = "## Training (issue 3)"
BASELINES = ("random", "global_best", "most_engaged", "last_engaged", "logging")


def run_value(customers: int, days: int, seed: int, contexts: int) -> tuple[dict[str, float | str], dict[str, float]]:
    t0 = time.perf_counter()
    sim = simulate(SimConfig(customers=customers, days=days, seed=seed))
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    ts = dataset.build(sim["touchpoints"], sim["profiles"], sim["decisions"], max_contexts=contexts)
    t_build = time.perf_counter() - t0
    funnel = train.train_funnel(ts)
    f_report = evaluate.evaluate(funnel.booster, ts, Oracle(sim["truth"]))
    f_pol = f_report["policies"]
    funnel_row = {
        "value": f_pol["model"]["true_value"],
        "share": f_pol["model"]["true_value"] / f_pol["oracle"]["true_value"],
        "auc": f_report["metrics"]["auc"],
        "train_s": funnel.seconds,
        "trees": float(funnel.best_iteration),
    }
    result = train.train_local(ts)
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
    }, funnel_row


def run_scale(customers: int, days: int, seed: int) -> dict[str, float]:
    sim = simulate(SimConfig(customers=customers, days=days, seed=seed))
    t0 = time.perf_counter()
    ts = dataset.build(sim["touchpoints"], sim["profiles"], sim["decisions"], max_contexts=1)
    build = time.perf_counter() - t0
    result = train.train_local(ts, threads=2)
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
    lines.append(f"| model, funnel (`--funnel`) | {f['value']:.3f} | {100 * f['share']:.1f}% |")
    share = float(v["share_of_oracle"])
    ratio = float(v["model"]) / float(v["best_baseline_value"])
    lines += [
        "",
        f"- Learned policy: **{100 * share:.1f}% of the oracle's value** (bar: >= 85%: "
        f"{'met' if share >= 0.85 else 'NOT met'}); {ratio:.2f}x the best baseline ({v['best_baseline']}).",
        f"- Funnel variant (`nbc train --funnel`: P(click) x P(conversion | click), distilled into one booster):"
        f" **{100 * f['share']:.1f}% of the oracle** (bar {'met' if f['share'] >= 0.85 else 'NOT met'}),"
        f" {f['value'] / float(v['best_baseline_value']):.2f}x the best baseline; AUC {f['auc']:.4f};"
        f" {f['trees']:.0f} trees, trained in {f['train_s']:.1f} s. Not the default yet: scoring latency was"
        " measured on the default model size.",
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
            "- Gap to the bar: the oracle knows each customer's idiosyncratic channel affinity (sd 0.45 on the logit,"
            " acting on opens and clicks) and preferred hour (sd 1.5 h); the model infers them from a sparse history"
            " (most sends were business-as-usual email at 10:00). Diagnostics on this data: the model's channel with"
            " the oracle's slot and message would reach ~89%, the oracle's channel with the model's slot and message"
            " ~85-88%, so both halves of the decision lose some; using the true order values instead of the"
            " customer's past average changes nothing; tree size and regularisation sweeps (7-63 leaves) moved it"
            " by < 3 points; the funnel variant (more positives per effect) recovers about 3 points. What would"
            " close the rest: per-channel engagement-by-local-hour features in the fold (today one hour-of-week"
            " histogram for all channels) and more exploration per customer in the logs.",
        ]
    if s is not None:
        lines += [
            "",
            f"### Scale: {s['sends']:,.0f} sends ({s['touchpoints']:,.0f} touchpoints)",
            "",
            f"- Dataset build (columnar labels + one fold per touchpoint + feature rows): {s['build_s']:.1f} s ="
            f" **{s['tp_per_s']:,.0f} touchpoints/s** (replay in {os.cpu_count()} forked processes, one per core).",
            f"- LightGBM training on {s['rows_train']:,.0f} training rows, 2 threads, early stopping:"
            f" **{s['train_s']:.1f} s** ({s['iterations']:.0f} trees).",
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
