"""The Dask client the `--engine dask` stages share: an existing scheduler's address, or a local cluster.

Without an address, a LocalCluster of `workers` processes with one thread each (LightGBM and the replay are
single-threaded per task; processes sidestep the GIL) starts with the command and stops with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def client(scheduler: str | None = None, workers: int = 2) -> Iterator[Any]:
    """A distributed.Client connected to `scheduler`, or to a local cluster of `workers` processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as connected:
            yield connected
        return
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as local,
    ):
        yield local


def worker_count(connected: Any) -> int:
    """How many workers the client's scheduler has now."""
    return max(1, len(connected.scheduler_info().get("workers", {})))
