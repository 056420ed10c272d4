"""Off-policy evaluation benchmark (issue 10): every estimator against the simulator's exact values, and the gate.

    python bench/ope.py                      # the bar: 20k customers x 90 days, seeds 7 and 11; the organic-on gap
                                             # run; the gate scenario; writes its section of bench/RESULTS.md
    python bench/ope.py --customers 2000 --no-write --runs bar   # a timing / smoke run

The bar (issue 10): for the policies model, logging, global_best and random, the lead estimate lies within 10%
of the true value and its 95% interval covers it. The true value is the oracle's exact incremental value of a
policy's actions (a send valued as if no later send fell in its window); the estimators measure the logged
reward. The two are the same quantity only when the reward is the send's own effect: no organic conversions
(SimConfig(organic=False)) and attributed labels (a conversion credited to one send). So the bar runs there, and
the other runs show the gap: organic conversions on (the simulator's default) with the default window labels.

The gate: a model trained on a small, different population (300 customers x 30 days, another seed) against the
20k model, both scored on the same held-out decisions of the 20k source (`training.promote`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import write_section
from model.adapters.registry import Manifest, ModelStore, schema_hash
from model.domain.catalogue import catalogue
from training import dataset, evaluate, train
from training.ope import ESTIMATORS
from training.promote import evaluate_gate
from training.sim_truth import Oracle
from training.simulate import SimConfig, simulate

SECTION = "## Off-policy evaluation (issue 10)"
POLICIES = ("model", "logging", "global_best", "random")
TOLERANCE = 0.10


@dataclass
class Run:
    name: str
    customers: int
    days: int
    seed: int
    organic: bool
    labels: str
    decisions: int
    policies: dict[str, Any] = field(default_factory=dict)
    ope: dict[str, Any] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    auc: float = float("nan")
    held: Any = None  # the training set (held-out decisions) for the gate
    booster: Any = None
    oracle: Any = None


def fit(customers: int, days: int, seed: int, organic: bool, labels: str, decisions: int) -> tuple[Any, Any, Any, dict]:
    """Simulate, build the point-in-time set, train the default model; (booster, training set, oracle, times)."""
    times = {}
    t0 = time.perf_counter()
    sim = simulate(SimConfig(customers=customers, days=days, seed=seed, organic=organic))
    times["simulate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ts = dataset.build(
        sim["touchpoints"],
        sim["profiles"],
        sim["decisions"],
        max_contexts=decisions,
        labels=labels,  # type: ignore[arg-type]
    )
    times["dataset"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # what `nbc train` trains for the conversion objective; one thread: OpenMP stalls on a shared machine
    result = train.train_funnel(ts, threads=1)
    times["train"] = time.perf_counter() - t0
    return result.booster, ts, Oracle(sim["truth"]), times


def run(name: str, customers: int, days: int, seed: int, organic: bool, labels: str, decisions: int) -> Run:
    r = Run(name, customers, days, seed, organic, labels, decisions)
    print(
        f"[{name}] {customers:,} customers x {days} days, seed {seed}, organic {organic}, {labels} labels", flush=True
    )
    r.booster, r.held, r.oracle, r.times = fit(customers, days, seed, organic, labels, decisions)
    t0 = time.perf_counter()
    rep = evaluate.evaluate(r.booster, r.held, r.oracle)
    r.times["evaluate"] = time.perf_counter() - t0
    r.policies, r.ope, r.auc = rep["policies"], rep["ope"], rep["metrics"].get("auc", float("nan"))
    r.decisions = len(r.held.contexts) if r.held.contexts is not None else 0
    print(f"[{name}] times {json.dumps({k: round(v, 1) for k, v in r.times.items()})}", flush=True)
    print(table(r), flush=True)
    return r


def _num(v: Any, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def verdict(r: Run, policy: str) -> tuple[bool, bool, float | None]:
    """(within 10%, interval covers, relative error) of the lead estimate."""
    res = r.policies[policy]
    true, est = res.get("true_value"), res["estimates"][res.get("lead", r.ope["lead"])]
    if est["value"] is None or true is None:
        return False, False, None
    rel = (est["value"] - true) / abs(true) if true else float("inf")
    lo, hi = est["ci"]
    covers = lo is not None and hi is not None and lo <= true <= hi
    return abs(rel) <= TOLERANCE, covers, rel


def table(r: Run) -> str:
    lead = r.ope["lead"]
    head = "| policy | true value | " + " | ".join(e.upper() + (" (lead)" if e == lead else "") for e in ESTIMATORS)
    lines = [head + " | lead within 10% | lead CI covers |", "|---|---:|" + "---:|" * len(ESTIMATORS) + "---|---|"]
    for name in POLICIES:
        res = r.policies[name]
        true = res.get("true_value")
        own = res.get("lead", lead)  # a policy whose weights are thin for DR leads with Switch-DR
        cells = []
        for e in ESTIMATORS:
            est = res["estimates"][e]
            v, (lo, hi) = est["value"], est["ci"]
            if v is None:
                cells.append("n/a")
                continue
            err = v - true
            rel = f" ({100 * err / abs(true):+.0f}%)" if true else ""
            ci = f" [{_num(lo, '.2f')}, {_num(hi, '.2f')}]"
            mark = "**" if e == own else ""
            mean_w = est.get("mean_weight")
            w = f", w {mean_w:.2f}" if mean_w is not None and e != "dm" else ""
            cells.append(
                f"{mark}{v:.3f}{mark}{ci} err {err:+.3f}{rel}; ess {est['ess'] or 0:,.0f}, m {est['matched']:,}{w}"
            )
        within, covers, _ = verdict(r, name)
        lines.append(
            f"| {name} | {true:.3f} | "
            + " | ".join(cells)
            + f" | {'yes' if within else 'NO'} | {'yes' if covers else 'NO'} |"
        )
    return "\n".join(lines)


# --- the gate -------------------------------------------------------------------------------------------------


def publish(store: ModelStore, version: str, booster: Any, ts: Any, source: str) -> None:
    """A model version as `nbc train` publishes it (manifest and LightGBM text; no report)."""
    features, categorical = list(ts.layout.names), list(ts.layout.categorical)
    now = datetime.now(UTC)
    manifest = Manifest(
        version=version,
        created_at=now,
        training_window=ts.period,
        features=features,
        categorical=categorical,
        schema_hash=schema_hash(features, categorical, ts.levels),
        levels=ts.levels,
        channels=list(catalogue().names),
        objective=ts.objective,
        attribution_window_days=ts.window_days,
        source=source,
        files={"lightgbm": "model.txt"},
    )
    store.publish(version, {"model.txt": booster.model_to_string().encode()}, manifest)


def gate_scenario(big: Run, small_seed: int) -> dict[str, Any]:
    print(f"[gate] small model: 300 customers x 30 days, seed {small_seed}", flush=True)
    small_booster, small_ts, _, small_times = fit(300, 30, small_seed, big.organic, big.labels, 500)
    out: dict[str, Any] = {"small_times": small_times}
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore.from_uri(tmp)
        publish(store, "big-20k", big.booster, big.held, f"sim {big.customers} seed {big.seed}")
        publish(store, "small-300", small_booster, small_ts, f"sim 300 seed {small_seed}")
        src = f"the {big.customers:,}-customer source (seed {big.seed})"
        t0 = time.perf_counter()
        logged = evaluate.LoggedDecisions(big.held, big.held.contexts)  # both pairs are judged on these decisions
        out["nuisance_seconds"] = time.perf_counter() - t0
        for challenger, champion in (("small-300", "big-20k"), ("big-20k", "small-300")):
            t0 = time.perf_counter()
            g = evaluate_gate(
                store,
                challenger,
                champion,
                src,
                training_set=big.held,
                logged=logged,
                simulated_truth=big.oracle,
                source_name=src,
            )
            d = g.to_dict()
            d["seconds"] = time.perf_counter() - t0
            print(json.dumps(d, indent=2), flush=True)
            out[f"{challenger} vs {champion}"] = d
    return out


def gate_markdown(gate: dict[str, Any]) -> list[str]:
    lines = [
        "| challenger | champion | decision | estimator | challenger - champion [95% CI]"
        " | challenger - logging [95% CI] | true difference | seconds |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    dry = None
    for key, d in gate.items():
        if key in ("small_times", "nuisance_seconds"):
            continue
        diff, log = d["difference"], d["vs_logging"]
        true = (d.get("true_values") or {}).get("difference")
        lines.append(
            f"| {d['challenger']} | {d['champion']} | **{d['decision']}** | {d['estimator']} | "
            f"{_num(diff['value'])} [{_num(diff['ci'][0])}, {_num(diff['ci'][1])}] | "
            f"{_num(log['value'])} [{_num(log['ci'][0])}, {_num(log['ci'][1])}] | {_num(true)} | {d['seconds']:.0f} |"
        )
        dry = dry or d
    if "nuisance_seconds" in gate:
        lines += [
            "",
            f"Nuisance models of the held-out decisions fitted once for both pairs: {gate['nuisance_seconds']:.0f} s.",
        ]
    if dry is not None:
        keys = ("decision", "estimator", "challenger", "champion", "difference")
        lines += ["", "`nbc promote --dry-run --json` (first scenario, main keys):", "", "```json"]
        lines += [*json.dumps({k: dry[k] for k in keys}, indent=2).splitlines(), "```"]
    return lines


# --- the section ------------------------------------------------------------------------------------------------


def markdown(runs: list[Run], gate: dict[str, Any] | None, note: str) -> str:
    load = os.getloadavg()[0]
    lines = [
        SECTION,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, Python "
        f"{platform.python_version()} (1-min load average {load:.1f} at the end; the machine was shared). {note}",
        "",
        "Each cell: estimate [95% bootstrap interval] err = estimate - true value (relative error); ess = effective"
        " sample size, m = matched decisions, w = mean importance weight (about the policy's probability on actions"
        " the log takes). The lead estimator (docs/ope.md) in bold. The true value is exact under"
        " the oracle (the policy's expected incremental value on the same held-out decisions).",
    ]
    for r in runs:
        met = [verdict(r, p) for p in POLICIES]
        ok = all(w and c for w, c, _ in met)
        lines += [
            "",
            f"### {r.name}: {r.customers:,} customers x {r.days} days, seed {r.seed}, organic "
            f"{'on' if r.organic else 'off'}, {r.labels} labels; {r.decisions:,} held-out decisions, lead "
            f"{r.ope['lead'].upper()}, propensities {r.ope['propensities']}",
            "",
            table(r),
            "",
            f"- Bar (lead within 10% and its interval covers, for all four policies): **{'met' if ok else 'NOT met'}**"
            + "".join(
                f"; {p} {'' if rel is None else f'{100 * rel:+.1f}%'}{'' if c else ' (not covered)'}"
                for p, (_, c, rel) in zip(POLICIES, met, strict=True)
            )
            + ".",
            "- Times: " + ", ".join(f"{k} {v:.0f} s" for k, v in r.times.items()) + f"; model AUC {r.auc:.3f}.",
        ]
    if gate is not None:
        big = runs[0]
        head = f"### The gate on the {big.customers:,}-customer source (seed {big.seed}, bar configuration)"
        lines += ["", head, "", *gate_markdown(gate)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seeds", default="7,11")
    parser.add_argument("--decisions", type=int, default=5000, help="held-out decisions (max_contexts)")
    parser.add_argument("--runs", default="bar,organic,gate", help="bar, organic, window (organic off), gate")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = set(args.runs.split(","))
    runs: list[Run] = []
    c, d, n = args.customers, args.days, args.decisions
    if "bar" in wanted or "gate" in wanted:
        for seed in seeds if "bar" in wanted else seeds[:1]:
            runs.append(run(f"Bar, seed {seed}", c, d, seed, False, "attributed", n))
    if "window" in wanted:
        runs.append(run("Gap: window labels, organic off", c, d, seeds[0], False, "window", n))
    if "organic" in wanted:
        runs.append(run("Gap: the simulator's default (organic on, window labels)", c, d, seeds[0], True, "window", n))
    gate = gate_scenario(runs[0], 3) if "gate" in wanted else None
    text = markdown(runs, gate, args.note)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
