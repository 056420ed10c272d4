"""`nbc train --engine dask`: load, dataset, training and evaluation on a Dask cluster, for `pipeline.run`.

The cluster is the one at `--scheduler`, or a local one of `--workers` processes started for the command. The
source is read partitioned by customer hash, the training set is built and kept per partition on the workers
(training/dask_dataset.py), LightGBM trains with lightgbm.dask on those rows (training/train.py:
`train_distributed`, or `train_distributed_funnel` where the local engine trains the funnel) and the
evaluation combines per-partition sums (training/dask_evaluate.py). Only the booster and the report come back;
publication is the pipeline's, as for the local engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from training import dask_cluster, dask_dataset, dask_evaluate, sources, train
from training.sources import SourceError

Tick = Callable[[str, int, int], None]
PARTITIONS_PER_WORKER = 4


def check(dset: dask_dataset.DistributedSet) -> None:
    """After the build: rows to train on, positives among them, and held-out rows to evaluate on."""
    if dset.count("train") == 0:
        raise SourceError(
            "no training rows: the temporal split held out or purged every labelled send; use --split customer, "
            "a shorter --window-days, or more history"
        )
    if sum(r["train_positives"] for r in dset.rows) == 0:
        raise SourceError(
            f"none of the {dset.count('train'):,} training sends has a positive label for --objective "
            f"{dset.objective}: nothing to learn; check that outcomes are mapped and fall within --window-days"
        )
    if dset.count("eval") == 0:
        raise SourceError("no held-out sends to evaluate on: use --split customer or more history")


def run_stages(
    source: str | sources.Sources, opts: Any, tick: Tick, timings: dict[str, float]
) -> tuple[dask_dataset.DistributedSet, train.TrainResult, dict[str, Any]]:
    """Every stage before publication on the cluster; `opts` is pipeline.Options. Returns the distributed
    training set's description, the trained booster and the report (with `engine` per stage)."""
    if not isinstance(source, str):
        raise ValueError("--engine dask reads the source on the cluster: give its path or URI, not tables")
    with dask_cluster.client(opts.scheduler, opts.workers) as client:
        workers = dask_cluster.worker_count(client)
        partitions = opts.partitions or PARTITIONS_PER_WORKER * workers
        t0 = time.perf_counter()
        tick("load", 0, 1)
        src = sources.read_partitioned(source, partitions, opts.decisions)
        tick("load", 1, 1)
        timings["load"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        tick("dataset", 0, 1)
        dset = dask_dataset.build(
            client,
            src,
            objective=opts.objective,
            window_days=opts.window_days,
            split=opts.split,
            eval_fraction=opts.eval_fraction,
            max_contexts=opts.max_contexts,
            as_of=opts.as_of,
            labels=opts.labels,
        )
        check(dset)
        tick("dataset", 1, 1)
        timings["dataset"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        tick("train", 0, 1)
        # the local engine's choice (pipeline.py): the funnel for the conversion objective unless --no-funnel
        fit = (
            train.train_distributed_funnel
            if opts.funnel and dset.objective == "conversion"
            else train.train_distributed
        )
        result = fit(dset, client, rounds=opts.rounds, early_stopping=opts.early_stopping, params=opts.params)
        tick("train", 1, 1)
        timings["train"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        tick("evaluate", 0, 1)
        rep = dask_evaluate.evaluate(client, dset, result.booster, opts.simulated_truth)
        tick("evaluate", 1, 1)
        timings["evaluate"] = time.perf_counter() - t0
    rep["training"] = {
        "engine": result.engine,
        "model": result.model,
        "seconds": result.seconds,
        "best_iteration": result.best_iteration,
        "rows_train": dset.count("train"),
        "rows_valid": dset.count("valid"),
        "rows_eval": dset.count("eval"),
    }
    rep["engine"] = {
        "dataset": "dask",
        "train": "dask",
        "evaluate": "dask",
        "partitions": dset.partitions,
        "partitions_with_rows": len(dset.parts),
        "workers": workers,
        "scheduler": "external" if opts.scheduler else "local cluster",
    }
    return dset, result, rep
