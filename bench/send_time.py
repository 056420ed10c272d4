"""Send-time smoothing width: the served model's share of the oracle for several widths, side by side.

    python bench/send_time.py                                    # default and --drift, seeds 7 and 11, 20k x 90
    python bench/send_time.py --customers 2000 --runs default --seeds 7   # a smoke run

Each scenario is simulated and the default model (`train.train_funnel`, what `nbc train` trains) trained ONCE;
the same booster then serves the same held-out decisions with each `send_time_smoothing_hours` (0: off), and the
oracle values every resulting policy exactly (epsilon-greedy as served). Only the width differs between the
columns. Prints a markdown table; it does not write bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.domain.settings import get_settings
from training import dataset, evaluate, train
from training.ope import policies as pol
from training.sim_truth import Oracle
from training.simulate import SimConfig, simulate


def shares(customers: int, days: int, seed: int, drift: bool, decisions: int, widths: list[float]) -> list[float]:
    """The model's served share of the greedy oracle's value for each smoothing width (one trained booster)."""
    sim = simulate(SimConfig(customers=customers, days=days, seed=seed, drift=drift))
    ts = dataset.build(sim["touchpoints"], sim["profiles"], sim["decisions"], max_contexts=decisions)
    assert ts.contexts is not None
    booster = train.train_funnel(ts).booster
    true_ev = evaluate.oracle_values(Oracle(sim["truth"]), ts, ts.contexts)
    best = evaluate.true_value(pol.argmax_policy(true_ev, ts.contexts.allowed, allow_none=True), true_ev)
    out = []
    for w in widths:
        os.environ["NBC_SEND_TIME_SMOOTHING_HOURS"] = str(w)
        get_settings.cache_clear()
        out.append(evaluate.true_value(evaluate.model_policy(booster, ts), true_ev) / best)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seeds", default="7,11")
    parser.add_argument("--runs", default="default,drift")
    parser.add_argument("--decisions", type=int, default=5000)
    parser.add_argument("--widths", default="0,0.5,1,1.5,2")
    args = parser.parse_args()
    widths = [float(w) for w in args.widths.split(",")]
    head = "| scenario | " + " | ".join(f"{w:g} h" for w in widths) + " | seconds |"
    rows = [head, "|---|" + "---:|" * (len(widths) + 1)]
    for run in args.runs.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            t0 = time.perf_counter()
            got = shares(args.customers, args.days, seed, run == "drift", args.decisions, widths)
            rows.append(
                f"| {run}, seed {seed} | "
                + " | ".join(f"{s:.1%}" for s in got)
                + f" | {time.perf_counter() - t0:.0f} |"
            )
            print(rows[-1], flush=True)
    print(
        f"\n{args.customers:,} customers x {args.days} days, {args.decisions:,} held-out decisions; share of the "
        "oracle's value, the model served epsilon-greedy, by send-time smoothing width (sd, hours)\n"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
