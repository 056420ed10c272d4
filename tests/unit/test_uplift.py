"""Measured uplift against the holdout: known lift in a synthetic log, interval, and clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from training.sources import Sources
from training.uplift import measured

T0 = datetime(2026, 9, 1, tzinfo=UTC)


def _log(lift: float, n: int = 1200, seed: int = 3) -> Sources:
    """Half the customers in the holdout; each gets 10 daily decisions; organic conversions for everyone and,
    for served customers, extra conversions worth `lift` per decision on average (email costs 0.002)."""
    rng = np.random.default_rng(seed)
    dec, tps = [], []
    for c in range(n):
        cid, hold = f"c{c}", c % 2 == 0
        for d in range(10):
            at = T0 + timedelta(days=d, hours=6)
            did = f"d{c}-{d}"
            dec.append(
                {
                    "decision_id": did,
                    "customer_id": cid,
                    "decided_at": at,
                    "channel": "none" if hold else "email",
                    "policy": "holdout" if hold else "model",
                }
            )
            if not hold:
                tps.append(
                    {
                        "event_id": f"s{did}",
                        "customer_id": cid,
                        "channel": "email",
                        "event_type": "sent",
                        "occurred_at": at + timedelta(hours=1),
                        "value": 0.0,
                    }
                )
            rate = 0.05 + (lift / 20.0 if not hold else 0.0)  # conversions worth 20 each
            if rng.random() < rate:
                tps.append(
                    {
                        "event_id": f"v{did}",
                        "customer_id": cid,
                        "channel": "web",
                        "event_type": "converted",
                        "occurred_at": at + timedelta(hours=5),
                        "value": 20.0,
                    }
                )
    tps.append(
        {
            "event_id": "end",
            "customer_id": "c0",
            "channel": "web",
            "event_type": "visited",
            "occurred_at": T0 + timedelta(days=30),
            "value": 0.0,
        }
    )
    return Sources(pa.Table.from_pylist(tps), None, pa.Table.from_pylist(dec))


def test_uplift_recovers_a_known_lift_with_an_interval() -> None:
    res = measured(_log(lift=0.5), window_days=3)
    assert res["ci"][0] < 0.5 - 0.002 < res["ci"][1]
    assert res["ci"][0] > 0  # separates a real lift from none
    null = measured(_log(lift=0.0, seed=4), window_days=3)
    assert null["ci"][0] < 0 < null["ci"][1]
    assert res["served_decisions"] == res["holdout_decisions"] == 6000


def test_uplift_says_what_is_missing() -> None:
    src = _log(lift=0.1, n=10)
    no_holdout = Sources(
        src.touchpoints, None, src.decisions.filter(pa.compute.equal(src.decisions["policy"], "model"))
    )
    with pytest.raises(ValueError, match="holdout"):
        measured(no_holdout, window_days=3)
    with pytest.raises(ValueError, match="decisions"):
        measured(Sources(src.touchpoints, None, None))
