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
    import distributed

    Client: Any = distributed.Client  # noqa: N806 (untyped classes, typed as Any here)
    LocalCluster: Any = distributed.LocalCluster  # noqa: N806
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


def delayed(fn: Any, **kwargs: Any) -> Any:
    """dask.delayed, typed for this code base (dask ships no type hints)."""
    import dask

    wrap: Any = dask.delayed  # type: ignore[attr-defined]
    return wrap(fn, **kwargs)


def compute(*objs: Any) -> tuple[Any, ...]:
    """dask.compute of several objects at once, as a tuple."""
    import dask

    run: Any = dask.compute  # type: ignore[attr-defined]
    return tuple(run(*objs))


def stacked(blocks: list[tuple[Any, int]], width: int) -> tuple[Any, Any]:
    """Dask arrays (X [n, width] float32, y [n] float64) of row blocks that stay where they are: each block is
    (a Delayed (X, y) pair computed on a worker, its row count)."""
    import dask.array as da
    import numpy as np

    from_delayed: Any = da.from_delayed
    concatenate: Any = da.concatenate
    xs = [from_delayed(pair[0], shape=(n, width), dtype=np.float32) for pair, n in blocks]
    ys = [from_delayed(pair[1], shape=(n,), dtype=np.float64) for pair, n in blocks]
    return concatenate(xs), concatenate(ys)
