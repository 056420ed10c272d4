"""How precisely can ANY estimator value a policy on the simulator's log? The efficiency bound (issue 10).

    python bench/ope_bound.py                       # 20k customers x 90 days, seeds 7 and 11 (the bar's set-up)
    python bench/ope_bound.py --customers 2000 --seeds 7

Off-policy evaluation without an assumption on the reward model (the reward may be any function of context and
action) has a semiparametric efficiency bound: no regular estimator, IPS, DR or any other, has a smaller asymptotic
variance than

    V_eff = E_x[ sum_a pi(a|x)^2 sigma^2(x, a) / mu(a|x) ] + Var_x(V_pi(x))

per decision, where mu is the logging policy, sigma^2(x, a) the variance of the reward of action a and V_pi(x) the
policy's expected value on decision x (Narita, Yasui & Yata, AAAI 2019; Kallus & Uehara, NeurIPS 2019; the minimax
rate of Wang, Agarwal & Dudik, ICML 2017 is of the same form). DR with the true reward model attains it. An
estimate narrower than sqrt(V_eff / n) is a bet on the reward model's shape where the log does not look.

On the simulator everything in it is known: the exact value of every cell, its conversion probability, the
logger's propensities (business as usual at 10:00 local, else with probability `exploration` a uniform draw over
the allowed channels x the 13 send hours of two days x the messages, all of it times 1 - `no_send`). The bound is
taken from below: sigma^2 >= order value^2 p (1 - p) (the order value's own spread left out), and the
business-as-usual cell's term is left out. Cells outside the logger's support (mu = 0) would make it infinite;
their share of each policy's mass is printed (0 when the logger explores the whole served grid).

A second table takes the log the product itself writes once it serves: the model's epsilon-greedy policy (its
exploration spread over the whole grid, its propensities logged) as the logger. The model is then on-policy, and
the other policies are as checkable as they agree with it.

Prints markdown tables per seed; it does not write bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.ope import fit
from model.domain.catalogue import catalogue
from training import evaluate
from training.sim_truth import Oracle
from training.simulate import BAU_HOUR, SEND_HOURS, SimConfig, bau_order, explore_propensity

POLICIES = ("model", "logging", "global_best", "random", "oracle")
TOLERANCE = 0.10


def explored_cell_propensity(ctx: Any, cfg: SimConfig) -> np.ndarray:
    """[D] the logger's probability of each explored cell (the uniform draw, as the simulator logs it)."""
    n_allowed = np.maximum(ctx.consent.sum(axis=1), 1)
    return explore_propensity(cfg, n_allowed, ctx.allowed.shape[3], cfg.explore_days) * (1 - cfg.no_send)


def bau_cells(ctx: Any) -> np.ndarray:
    """[D, C, S, M] the business-as-usual cells (any message: the day's campaign is not in the grid's terms)."""
    bau_ch = np.full(len(ctx), -1)
    for ch in reversed(bau_order({name: i for i, name in enumerate(catalogue().names)})):
        bau_ch = np.where(ctx.consent[:, ch], ch, bau_ch)
    first = np.argmax(ctx.local_hour == BAU_HOUR, axis=1)  # the first 10:00 local: the decision day's
    out = np.zeros(ctx.allowed.shape, dtype=bool)
    ok = np.flatnonzero(bau_ch >= 0)
    out[ok, bau_ch[ok], first[ok], :] = True
    return out


def bound(booster: Any, ts: Any, oracle: Oracle, cfg: SimConfig) -> dict[str, list[dict[str, Any]]]:
    """Per logger, per policy: true value, V_eff (lower bound), mass outside the log's support.

    Two logs: the simulator's (business as usual + uniform exploration), and the one the product writes once it
    serves (the model's epsilon-greedy policy logs its own propensity over the whole grid): what the next model
    would be judged on if it agreed with this one."""
    ctx = ts.contexts
    d = len(ctx)
    true_ev = evaluate.oracle_values(oracle, ts, ctx)
    cust = oracle.customers(ctx.customer_id)
    value = oracle.truth.mean_value[cust][:, None, None, None]
    cost = evaluate._costs()[None, :, None, None]
    # Organic off: a cell's exact value is p x order value - cost, so p follows from it.
    p = np.where(ctx.consent[:, :, None, None], np.clip((true_ev + cost) / value, 0.0, 1.0), 0.0)
    sigma2 = value**2 * p * (1.0 - p)
    dists = evaluate.policy_distributions(booster, ts, true_ev)
    support = ctx.allowed & np.isin(ctx.local_hour, SEND_HOURS)[:, None, :, None]
    sim_mu = np.where(support & ~bau_cells(ctx), explored_cell_propensity(ctx, cfg)[:, None, None, None], 0.0)
    served_mu = dists["model"].cells
    out: dict[str, list[dict[str, Any]]] = {}
    for logger, mu, sup in (("simulator", sim_mu, support), ("served", served_mu, served_mu > 0)):
        rows: list[dict[str, Any]] = []
        for name in POLICIES:
            if name == "logging":  # the simulator's logger: on-policy there, the observed mean (reward variance)
                if logger == "simulator":
                    reward = ctx.reward
                    rows.append(
                        {"policy": name, "true": float(reward.mean()), "veff": float(reward.var()), "outside": 0.0}
                    )
                continue
            pi = dists[name].cells
            v_x = (pi * true_ev).reshape(d, -1).sum(axis=1)
            ratio = np.divide(pi**2 * sigma2, mu, out=np.zeros_like(mu), where=mu > 0)
            veff = float(ratio.reshape(d, -1).sum(axis=1).mean() + v_x.var())
            outside = float((pi * ~sup).reshape(d, -1).sum(axis=1).mean())
            rows.append({"policy": name, "true": float(v_x.mean()), "veff": veff, "outside": outside})
        out[logger] = rows
    return out


def table(rows: list[dict[str, Any]], n: int, held_out: int) -> str:
    lines = [
        f"| policy | true value | mass outside the log's support | V_eff (per decision, lower bound) | sd at {n:,} "
        f"decisions | 95% half-width / true value | decisions for +-{TOLERANCE:.0%} at 95% | at all {held_out:,} "
        "held-out sends: half-width |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        sd = float(np.sqrt(r["veff"] / n))
        need = r["veff"] * (1.96 / (TOLERANCE * r["true"])) ** 2
        all_hw = 1.96 * float(np.sqrt(r["veff"] / held_out)) / r["true"]
        lines.append(
            f"| {r['policy']} | {r['true']:.3f} | {r['outside']:.1%} | {r['veff']:,.0f} | {sd:.3f} | "
            f"{1.96 * sd / r['true']:.0%} | {need:,.0f} | {all_hw:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seeds", default="7,11")
    parser.add_argument("--decisions", type=int, default=5000, help="held-out decisions the bound is averaged over")
    parser.add_argument("--at", type=int, default=20_000, help="decisions the sd is quoted for (the bar's)")
    args = parser.parse_args()
    cfg = SimConfig()
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.perf_counter()
        booster, ts, oracle, _ = fit(args.customers, args.days, seed, False, "attributed", args.decisions)
        by_logger = bound(booster, ts, oracle, cfg)
        held_out = int((ts.split == "eval").sum())
        print(
            f"\n{args.customers:,} customers x {args.days} days, seed {seed}, organic off, attributed labels; "
            f"bound averaged over {len(ts.contexts):,} held-out decisions; exploration {cfg.exploration}; "
            f"{time.perf_counter() - t0:.0f} s\n"
        )
        print("The simulator's log (business as usual, 30% uniform exploration):\n")
        print(table(by_logger["simulator"], args.at, held_out), flush=True)
        print("\nThe product's own log (the served model's epsilon-greedy policy as the logger):\n")
        print(table(by_logger["served"], args.at, held_out), flush=True)


if __name__ == "__main__":
    main()
