"""Ablation: the default model with and without the customer's send-hour history features, valued by the oracle.

    python bench/ablation_hour.py                      # 20k customers x 90 days, seed 7 (simulator defaults)
    python bench/ablation_hour.py --customers 3000 --days 60 --seed 21

The simulated logger sends 70% of its messages at 10:00 local, so a customer's hour history (engagement share,
response lift by hour) mostly records when the log contacted them. This measures what the model's
send-time choice loses by it: the same training set and held-out decisions, the two features blanked (NaN,
LightGBM's missing value) in the rows and in the candidate grids, the funnel retrained. Prints both shares of the
oracle's incremental value; it does not write bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from model.domain.features import SLOT_FEATURES
from training import dataset, evaluate, train
from training.sim_truth import Oracle
from training.simulate import SimConfig, simulate

HOUR_HISTORY = ("hour_engagement_share", "hour_response_lift")


def share_of_oracle(ts: dataset.TrainingSet, oracle: Oracle) -> float:
    booster = train.train_funnel(ts).booster
    policies, _ = evaluate.evaluate_policies(booster, ts, oracle)
    return float(policies["model"]["share_of_oracle"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--decisions", type=int, default=5000)
    args = parser.parse_args()
    sim = simulate(SimConfig(customers=args.customers, days=args.days, seed=args.seed))
    ts = dataset.build(sim["touchpoints"], sim["profiles"], sim["decisions"], max_contexts=args.decisions)
    assert ts.contexts is not None
    oracle = Oracle(sim["truth"])
    with_history = share_of_oracle(ts, oracle)
    ts.X[:, [ts.names.index(n) for n in HOUR_HISTORY]] = np.nan
    ts.contexts.slot[:, :, [SLOT_FEATURES.index(n) for n in HOUR_HISTORY]] = np.nan
    without = share_of_oracle(ts, oracle)
    print(
        f"{args.customers:,} customers x {args.days} days, seed {args.seed}: share of the oracle with the hour-history "
        f"features {with_history:.1%}, without {without:.1%} ({100 * (without - with_history):+.1f} points)"
    )


if __name__ == "__main__":
    main()
