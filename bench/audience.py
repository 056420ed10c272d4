"""Audience scoring benchmark: customers decided per second by one worker (one process, one thread), the path of
`nbc score --audience` and of one Distributed Map batch in AWS (model/adapters/audience.py).

    python bench/audience.py [--customers 5000] [--chunk 1000] [--trees 200] [--no-write]

Setup: an embedded moto server on 127.0.0.1 (real HTTP, as `nbc serve`); N customers, each with a profile and an
aggregate folded from 20 random events (the real fold), written with BatchWriteItem; a 200-tree LightGBM model
of the real feature layout, compiled and made CURRENT (bench/score.py's synthetic model). Every customer is
decided over 8 channels x 48 slots with the served rules, logged (one transaction per 100 decisions), and
written to NDJSON parts. Reported: customers/s end to end, and the share of time in state reads, decisions and
the decision log, so the store's part (moto here, DynamoDB in AWS) is visible. Replaces the "## Audience
scoring" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results import write_section  # noqa: E402

HEADING = "## Audience scoring"
NOW = datetime(2026, 11, 23, 8, 12, 45, tzinfo=UTC)


def seed_customers(n: int, seed: int = 1) -> list[str]:
    """N customers with a profile and a folded aggregate, written in BatchWriteItem calls of 25."""
    from model.adapters import dynamodb
    from model.adapters.table import AGG_SK, PK, PROFILE_SK, SK, customer_pk
    from model.domain.aggregate import DAY, Aggregate, FoldEvent, fold
    from model.domain.catalogue import catalogue
    from model.domain.schemas import EVENT_INDEX

    rng = np.random.default_rng(seed)
    n_ch = len(catalogue())
    zones = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"]
    ids, requests = [], []
    for c in range(n):
        cid = f"aud-{c:07d}"
        ids.append(cid)
        agg = Aggregate(n_ch)
        t = NOW.timestamp() - 60 * DAY
        for i in range(20):
            t += rng.exponential(2 * DAY)
            ch = int(rng.integers(n_ch))
            fold(agg, FoldEvent(f"{c}-{i}", ch, EVENT_INDEX["sent"], min(t, NOW.timestamp() - 3600)))
            if rng.random() < 0.3:
                fold(agg, FoldEvent(f"{c}-{i}-o", ch, EVENT_INDEX["opened"], min(t + 600, NOW.timestamp() - 60)))
        pk = {"S": customer_pk(cid)}
        requests.append(
            {"PutRequest": {"Item": {PK: pk, SK: {"S": AGG_SK}, "type": {"S": "AGG"}, "state": {"S": agg.to_json()}}}}
        )
        profile = {"timezone": {"S": zones[c % len(zones)]}, "type": {"S": "PROFILE"}}
        requests.append({"PutRequest": {"Item": {PK: pk, SK: {"S": PROFILE_SK}, **profile}}})
    dynamodb.batch_write(requests)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="nbc-bench-audience-")
    from bench.score import configure_env, train_and_publish

    configure_env(f"{tmp}/models")
    os.environ["NBC_EXPLORATION_RATE"] = "0.05"  # the served policy as deployed
    os.environ["NBC_HOLDOUT_SHARE"] = "0.05"
    from model.domain.settings import get_settings

    get_settings.cache_clear()
    from nbc.local.aws import local_aws

    with local_aws():
        from model.adapters import audience as aud
        from model.adapters import states as state_store
        from model.adapters.decision_log import log_decisions
        from model.adapters.model_service import get_predictor

        train_and_publish(f"{tmp}/models", args.trees, rows=4000)
        t0 = time.perf_counter()
        ids = seed_customers(args.customers)
        seed_s = time.perf_counter() - t0
        model = get_predictor().model()
        assert model is not None, "the benchmark model did not load"

        # The parts, timed one by one over one chunk (the same calls aud.run makes).
        sample = ids[: args.chunk]
        options = aud.AudienceOptions(now=NOW)
        t = time.perf_counter()
        states = state_store.get_states(sample)
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        from model.domain.decide import decide

        results = [decide(options.request(c), *states[c], model) for c in sample]
        t_decide = time.perf_counter() - t
        t = time.perf_counter()
        log_decisions(results)
        t_log = time.perf_counter() - t

        # End to end: plan, decide, log and write every customer.
        t = time.perf_counter()
        summary = aud.run(aud.plan(ids, options), f"{tmp}/out", options, model, chunk=args.chunk)
        total_s = time.perf_counter() - t
    rate = summary["customers"] / total_s
    part = t_read + t_decide + t_log
    figures: dict[str, Any] = {
        "customers": summary["customers"],
        "seconds": total_s,
        "rate": rate,
        "read_share": t_read / part,
        "decide_share": t_decide / part,
        "log_share": t_log / part,
        "decide_per_s": len(sample) / t_decide,
        "seed_s": seed_s,
        "policies": summary["policies_now"],
    }
    print(figures)
    if args.no_write:
        return
    load = os.getloadavg()[0]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    shares = f"{t_read / part:.0%} / {t_decide / part:.0%} / {t_log / part:.0%}"
    section = f"""{HEADING}

Measured {datetime.now(UTC):%Y-%m-%d} on {machine}
(load average {load:.1f} at the end: other jobs shared the cores), `python bench/audience.py --customers
{args.customers} --chunk {args.chunk} --trees {args.trees}`: one worker (one process, one thread), an embedded moto
server over HTTP as the store, a {args.trees}-tree model of the real layout, 8 channels x 48 slots per customer,
exploration 5% and holdout 5% as served, every decision logged.

| measure | value |
| --- | ---: |
| customers decided, logged and written | {summary["customers"]:,} in {total_s:,.1f} s |
| **customers per second per worker** | **{rate:,.0f}** |
| decisions alone (no store), per second | {figures["decide_per_s"]:,.0f} |
| time share over one chunk of {args.chunk:,}: state reads / decisions / decision log | {shares} |

In AWS each Distributed Map batch is one such worker (AudienceFunction, 1,769 MB = one vCPU), with DynamoDB in
place of moto; at the default concurrency of 20 batches, 20 x the per-worker rate, if DynamoDB's on-demand
capacity follows (it scales by itself, doubling its peak every 30 minutes from a cold table). The store's share
above is moto's, in this process: DynamoDB's latency is lower and does not hold Python's lock.
"""
    write_section(HEADING, section)


if __name__ == "__main__":
    main()
