"""How much of the oracle's value can a policy reach without knowing each customer's hidden traits?

    python bench/ceiling.py                                   # 20k customers x 90 days, seed 7 (simulator defaults)
    python bench/ceiling.py --customers 3000 --days 60 --seed 21 --model

The oracle ranks every candidate by the simulator's exact incremental value, which depends on per-customer random
effects no log records: channel affinities (sd 0.45 each), the preferred hour (sd 1.5 h around the age band's), the
organic purchase rate (log-sd 1.4) and persuadability (sd 1.8 on the conversion logit once a customer has visited).
A learner can only infer them from the customer's history. This values, on the same held-out decisions as the
report, "informed" oracles that know the simulator's equations and the observable profile (segment, age band, time
zone, state) but not some of the traits: their expected incremental value is averaged over `--draws` draws of the
unknown traits from the simulator's own prior, the policy takes the argmax (served epsilon-greedy, as the model), and
the true oracle values it. The gap between the oracle and an informed oracle is value that only knowledge of those
traits (i.e. inference from each customer's own history) can earn. `--model` trains the default model on the same
set and prints its share beside them. Prints a markdown table; it does not write bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from model.domain.settings import get_settings
from training import dataset, evaluate, train
from training.ope import policies as pol
from training.sim_truth import (
    _AGE_AFFINITY,
    _AGE_PEAK,
    _ORGANIC_ENGAGED,
    _ORGANIC_SD,
    _SEG_ORGANIC,
    AFFINITY_SD,
    PEAK_SD,
    Oracle,
    Truth,
    affinity,
    organic_rate,
    persuadability,
)
from training.simulate import SimConfig, simulate

# What each informed oracle does not know (the rest of the truth it has exactly).
UNKNOWN: dict[str, tuple[str, ...]] = {
    "persuadability": ("persuade",),
    "channel and hour taste": ("affinity", "peak"),
    "persuadability, channel and hour taste": ("persuade", "affinity", "peak"),
    "every hidden trait (profile only)": ("persuade", "affinity", "peak", "organic", "value"),
}


def organic_effect(truth: Truth, engaged: np.ndarray) -> np.ndarray:
    """The standard-normal organic effect z0 of each customer, recovered from its true organic rate."""
    assert truth.organic_rate is not None
    base = np.array(_SEG_ORGANIC)[truth.segment]
    effect = np.log(truth.organic_rate / base) - _ORGANIC_ENGAGED * (engaged - engaged.mean())
    return np.asarray((effect + 0.5 * _ORGANIC_SD**2) / _ORGANIC_SD)


class Prior:
    """What every draw shares: the age band's channel affinities, and each customer's known organic effect z0 and
    mean affinity."""

    def __init__(self, truth: Truth) -> None:
        self.age_affinity = np.array([_AGE_AFFINITY.get(ch, (0.0,) * 5) for ch in truth.channels]).T[truth.age]
        self.engaged = truth.affinity.mean(axis=1)
        self.z0 = organic_effect(truth, self.engaged)
        n_seg = int(truth.segment.max()) + 1
        seg_mean = np.array([truth.mean_value[truth.segment == s].mean() for s in range(n_seg)])
        self.mean_value = seg_mean[truth.segment]  # the segment's mean order value


def draw(truth: Truth, prior: Prior, unknown: tuple[str, ...], rng: np.random.Generator) -> Truth:
    """A copy of the truth with the `unknown` traits redrawn from the simulator's prior given what is known."""
    n = len(truth.customer_ids)
    z0 = prior.z0
    out: dict[str, np.ndarray] = {}
    aff = truth.affinity
    if "affinity" in unknown:
        noise = rng.normal(0.0, AFFINITY_SD, size=aff.shape)
        aff = out["affinity"] = affinity(prior.age_affinity, noise, truth.segment)
    if "peak" in unknown:
        out["peak"] = np.array(_AGE_PEAK)[truth.age] + rng.normal(0.0, PEAK_SD, size=n)
    if "organic" in unknown:
        z0 = rng.normal(0.0, 1.0, size=n)
        out["organic_rate"] = organic_rate(truth.segment, z0, aff.mean(axis=1), float(prior.engaged.mean()))
    if "persuade" in unknown:  # given z0 (known or drawn): its conditional prior
        out["persuade"] = persuadability(z0, rng.normal(0.0, 1.0, size=n))
    if "value" in unknown:
        out["mean_value"] = prior.mean_value
    return dataclasses.replace(truth, **out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drift", action="store_true")
    parser.add_argument("--decisions", type=int, default=5000, help="held-out decisions valued (max_contexts)")
    parser.add_argument("--draws", type=int, default=16, help="draws of the unknown traits per informed oracle")
    parser.add_argument("--model", action="store_true", help="also train the default model and value it")
    args = parser.parse_args()
    t0 = time.time()
    sim = simulate(SimConfig(customers=args.customers, days=args.days, seed=args.seed, drift=args.drift))
    ts = dataset.build(sim["touchpoints"], sim["profiles"], sim["decisions"], max_contexts=args.decisions)
    ctx = ts.contexts
    assert ctx is not None
    truth: Truth = sim["truth"]
    oracle = Oracle(truth)
    true_ev = evaluate.oracle_values(oracle, ts, ctx)
    eps = get_settings().exploration_rate
    greedy = pol.argmax_policy(true_ev, ctx.allowed, allow_none=True)
    best = evaluate.true_value(greedy, true_ev)
    values = {"oracle (greedy)": best}
    values[f"oracle, served (epsilon {eps})"] = evaluate.true_value(pol.served(true_ev, ctx.allowed, eps), true_ev)
    rng = np.random.default_rng(args.seed + 100)
    prior = Prior(truth)
    for label, unknown in UNKNOWN.items():
        believed = np.zeros_like(true_ev)
        for _ in range(args.draws):
            believed += evaluate.oracle_values(Oracle(draw(truth, prior, unknown, rng)), ts, ctx) / args.draws
        values[f"informed oracle, not knowing {label}"] = evaluate.true_value(
            pol.served(believed, ctx.allowed, eps), true_ev
        )
    if args.model:
        booster = train.train_funnel(ts).booster
        values["model (served)"] = evaluate.true_value(evaluate.model_policy(booster, ts), true_ev)
    print(
        f"\n{args.customers:,} customers x {args.days} days, seed {args.seed}, drift {args.drift}; "
        f"{len(ctx):,} held-out decisions; {args.draws} draws per informed oracle; {time.time() - t0:.0f} s\n"
    )
    print("| policy | true value / decision | share of oracle |\n|---|---:|---:|")
    for name, value in values.items():
        print(f"| {name} | {value:.3f} | {value / best:.1%} |")


if __name__ == "__main__":
    main()
