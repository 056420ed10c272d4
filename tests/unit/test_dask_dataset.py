"""The Dask engine's dataset: exact distributed quantiles, and the same training rows as the local build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from training import dataset, sources
from training.dask_cluster import compute, delayed
from training.dask_dataset import build
from training.dask_quantile import order_statistic, quantile
from training.simulate import SimConfig, simulate, write
from training.split import Split


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantile_equals_numpy_on_the_concatenated_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # timestamps with ties (rounded), an empty partition and a block of identical values
    arrays = [np.round(rng.normal(1.7e9, 1e6, size=n)) for n in (0, 1, 500, 2000)]
    arrays.append(np.full(60_000, 1.7e9))
    parts = [delayed(a) for a in arrays]
    values = np.concatenate(arrays)
    for q in (0.0, 0.15, 0.5, 0.8, 1.0):
        assert quantile(parts, q) == float(np.quantile(values, q))
    for rank in (0, 17, len(values) // 2, len(values) - 1):
        assert order_statistic(parts, rank) == float(np.sort(values)[rank])
    with pytest.raises(ValueError, match="rank"):
        order_statistic(parts, len(values))


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(simulate(SimConfig(customers=300, days=30, seed=5)), tmp_path_factory.mktemp("sim"))


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from training.dask_cluster import client as cluster_client

    with cluster_client(None, 2) as connected:
        yield connected


def _rows(x: np.ndarray, y: np.ndarray, split: np.ndarray, meta: pl.DataFrame) -> pl.DataFrame:
    """One row per training row keyed by send id: features (as bytes, NaN-safe), label, split."""
    return pl.DataFrame(
        {
            "send_id": meta["send_id"],
            "x": [r.tobytes() for r in x],
            "y": y,
            "split": split.astype(str),
        }
    ).sort("send_id")


@pytest.mark.xdist_group("dask_dataset")  # one worker: the module's Dask cluster starts once, not per worker
@pytest.mark.parametrize(("split", "max_contexts"), [("temporal", 150), ("customer", 5000)])
def test_partitioned_build_gives_the_local_rows(sim_dir: Path, client: Any, split: Split, max_contexts: int) -> None:
    src = sources.load(str(sim_dir))
    local = dataset.build(
        src.touchpoints,
        src.profiles,
        src.decisions,
        split=split,
        max_contexts=max_contexts,
    )
    parts_src = sources.read_partitioned(str(sim_dir), 5)
    dist = build(client, parts_src, split=split, max_contexts=max_contexts)
    parts = [p for p in compute(*dist.parts) if p is not None]
    assert len(parts) > 1  # the rows really are spread over partitions
    for part in parts:  # each partition holds whole customers: no customer in two partitions
        others = set().union(*(set(p.meta["customer_id"]) for p in parts if p is not part))
        assert not set(part.meta["customer_id"]) & others
    x = np.vstack([p.X for p in parts])
    y = np.concatenate([p.y for p in parts])
    part_split = np.concatenate([p.split for p in parts])
    meta = pl.concat([p.meta for p in parts])
    assert len(y) == len(local.y) == dist.count("train") + dist.count("valid") + dist.count("eval")
    assert _rows(x, y, part_split, meta).equals(_rows(local.X, local.y, local.split, local.meta))
    assert dist.levels == local.levels
    assert dist.stats == local.stats
    assert dist.period == local.period
    assert local.contexts is not None
    ids = sorted(i for p in parts if p.contexts is not None for i in p.contexts.decision_id)
    assert ids == sorted(local.contexts.decision_id)  # the same held-out decisions, sampled by the same hash cut
    held_out = local.meta.filter(pl.Series(local.split == "eval"))["decision_id"].n_unique()
    assert len(ids) == min(max_contexts, held_out)  # the cap holds when it binds
    # The same order-value prior, learned from the same conversions (training/value_prior.py), so the same value
    # estimates in the contexts.
    assert local.value_prior is not None
    assert dist.value_prior is not None
    assert dist.value_prior.attribute == local.value_prior.attribute
    assert dist.value_prior.conversions == local.value_prior.conversions
    assert dist.value_prior.overall == pytest.approx(local.value_prior.overall)
    assert dist.value_prior.means == pytest.approx(local.value_prior.means)
    assert dist.value_prior.credibility == pytest.approx(local.value_prior.credibility)
    by_id: dict[str, float] = {}
    for p in parts:
        if p.contexts is not None:
            by_id |= dict(zip(p.contexts.decision_id, p.contexts.value_hat.tolist(), strict=True))
    assert [by_id[d] for d in local.contexts.decision_id] == pytest.approx(local.contexts.value_hat.tolist())
