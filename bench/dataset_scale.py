"""Dataset build at scale: local engine vs the Dask engine, throughput and peak memory per worker.

    python bench/dataset_scale.py --source DIR [--workers 2] [--partitions 8] [--engines local,dask]
    python bench/dataset_scale.py --customers 5000 --days 60   # simulate the source first (into a temp folder)
    python bench/dataset_scale.py --source DIR --replicate 37    # 37 renamed clones of DIR (>= 10M touchpoints)

Each engine runs in a fresh process. The local engine reports its own peak resident memory (VmHWM); the Dask
engine starts a local cluster of `--workers` processes (one thread each) and every worker reports its peak
resident memory after the build, so "peak per worker" is measured, not estimated. From the Dask run's
throughput per worker the script projects the time of 1 billion touchpoints on N workers (the build is
embarrassingly parallel by partition once the source is bucketed; the projection ignores the shuffle's
network cost, which a cluster run should measure). Prints one JSON line per engine and the projection; the
numbers go to bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    """This process's peak resident memory since exec (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_local(source: str) -> dict[str, Any]:
    from training import dataset, sources

    start = time.perf_counter()
    src = sources.load(source)
    ts = dataset.build(src.touchpoints, src.profiles, src.decisions)
    seconds = time.perf_counter() - start
    return {
        "engine": "local",
        "seconds": seconds,
        "touchpoints": ts.stats["touchpoints"],
        "rows": len(ts.y),
        "peak_mb": peak_rss_mb(),
    }


def run_dask(source: str, workers: int, partitions: int) -> dict[str, Any]:
    from training import dask_cluster, dask_dataset, sources

    with dask_cluster.client(None, workers) as client:
        start = time.perf_counter()
        dset = dask_dataset.build(client, sources.read_partitioned(source, partitions))
        seconds = time.perf_counter() - start
        per_worker = client.run(peak_rss_mb)
    return {
        "engine": "dask",
        "workers": workers,
        "partitions": partitions,
        "seconds": seconds,
        "touchpoints": dset.stats["touchpoints"],
        "rows": dset.count("train") + dset.count("valid") + dset.count("eval"),
        "peak_mb_per_worker": sorted(per_worker.values()),
        "driver_peak_mb": peak_rss_mb(),
    }


def replicate(source: Path, copies: int, out: Path) -> Path:
    """A scaled-up source: `copies` clones of a simulated one, each clone's customers, events and decisions renamed
    (suffix -r<k>), written clone by clone (one Parquet row group each, so memory stays one clone's worth). The
    clones behave alike, which is fine for throughput and memory, not for model quality."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    for stem, ids in (
        ("touchpoints", ("event_id", "customer_id", "decision_id")),
        ("profiles", ("customer_id",)),
        ("decisions", ("decision_id", "customer_id")),
    ):
        path = source / f"{stem}.parquet"
        if not path.is_file():
            continue
        table = pq.read_table(path)
        with pq.ParquetWriter(out / f"{stem}.parquet", table.schema) as writer:
            for k in range(copies):
                clone = table
                for name in ids:
                    col = clone.column(name)
                    renamed = pc.binary_join_element_wise(col, pa.scalar(f"-r{k}"), "")
                    clone = clone.set_column(clone.schema.get_field_index(name), name, renamed)
                writer.write_table(clone)
    return out


def child(args: argparse.Namespace) -> None:
    local = args.engine == "local"
    out = run_local(args.source) if local else run_dask(args.source, args.workers, args.partitions)
    print(json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--source", help="a folder with touchpoints.parquet (and profiles, decisions)")
    parser.add_argument("--customers", type=int, default=2000, help="simulate this many customers (no --source)")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=0, help="default: 4 per worker")
    parser.add_argument("--engines", default="local,dask")
    parser.add_argument("--replicate", type=int, default=1, help="scale the source up: this many renamed clones")
    parser.add_argument("--engine", help=argparse.SUPPRESS)  # the child process's engine
    args = parser.parse_args()
    args.partitions = args.partitions or 4 * args.workers
    if args.engine:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source
        if source is None:
            from training.simulate import SimConfig, simulate, write

            source = str(write(simulate(SimConfig(customers=args.customers, days=args.days)), Path(tmp) / "sim"))
        if args.replicate > 1:
            source = str(replicate(Path(source), args.replicate, Path(tmp) / "scaled"))
        results = []
        for engine in args.engines.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--engine",
                engine,
                "--source",
                source,
                "--workers",
                str(args.workers),
                "--partitions",
                str(args.partitions),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    for res in results:
        if res["engine"] == "dask" and res["seconds"] > 0:
            per_worker = res["touchpoints"] / res["seconds"] / res["workers"]
            projection = {n: round(1e9 / (per_worker * n) / 3600, 2) for n in (2, 8, 32, 128)}
            print(
                json.dumps({"touchpoints_per_s_per_worker": round(per_worker), "hours_for_1e9_by_workers": projection})
            )


if __name__ == "__main__":
    main()
