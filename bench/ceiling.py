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
from training.simulate import (
    _AGE_AFFINITY,
    _AGE_PEAK,
    _ORGANIC_ENGAGED,
    _ORGANIC_SD,
    _PERSUADE_RHO,
    _PERSUADE_SD,
    _SEG_ORGANIC,
    Oracle,
    SimConfig,
    Truth,
    simulate,
)

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


def draw(truth: Truth, unknown: tuple[str, ...], rng: np.random.Generator) -> Truth:
    """A copy of the truth with the `unknown` traits redrawn from the simulator's prior given what is known."""
    n, c = len(truth.customer_ids), len(truth.channels)
    age_aff = np.array([_AGE_AFFINITY.get(ch, (0.0,) * 5) for ch in truth.channels]).T
    prior_aff = age_aff[truth.age] + 0.3 * (truth.segment == 2)[:, None]
    true_engaged = truth.affinity.mean(axis=1)
    z0 = organic_effect(truth, true_engaged)
    out: dict[str, np.ndarray] = {}
    affinity = truth.affinity
    if "affinity" in unknown:
        affinity = out["affinity"] = prior_aff + rng.normal(0.0, 0.45, size=(n, c))
    if "peak" in unknown:
        out["peak"] = np.array(_AGE_PEAK)[truth.age] + rng.normal(0.0, 1.5, size=n)
    if "organic" in unknown:
        z0 = rng.normal(0.0, 1.0, size=n)
        engaged = affinity.mean(axis=1)
        effect = _ORGANIC_SD * z0 - 0.5 * _ORGANIC_SD**2 + _ORGANIC_ENGAGED * (engaged - true_engaged.mean())
        out["organic_rate"] = np.array(_SEG_ORGANIC)[truth.segment] * np.exp(effect)
    if "persuade" in unknown:  # given z0 (known or drawn): its conditional prior
        z1 = rng.normal(0.0, 1.0, size=n)
        out["persuade"] = _PERSUADE_SD * (-_PERSUADE_RHO * z0 + np.sqrt(1.0 - _PERSUADE_RHO**2) * z1)
    if "value" in unknown:  # the segment's mean order value (lognormal(0, 0.25) spread around it)
        seg_mean = np.array([truth.mean_value[truth.segment == s].mean() for s in range(4)])
        out["mean_value"] = seg_mean[truth.segment]
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
    for label, unknown in UNKNOWN.items():
        believed = np.zeros_like(true_ev)
        for _ in range(args.draws):
            believed += evaluate.oracle_values(Oracle(draw(truth, unknown, rng)), ts, ctx) / args.draws
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
