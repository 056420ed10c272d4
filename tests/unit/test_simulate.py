"""The simulator: deterministic, valid touchpoints and propensities, outcomes that follow its oracle."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import pyarrow.compute as pc
import pytest

from model.domain.schemas import Profile, Touchpoint
from training.simulate import MESSAGES, SEND_HOURS, Oracle, SimConfig, simulate, write

CFG = SimConfig(customers=400, days=30, seed=11)


@pytest.fixture(scope="module")
def sim() -> dict:
    return simulate(CFG)


def test_same_seed_same_output(sim: dict) -> None:
    again = simulate(CFG)
    for name in ("touchpoints", "profiles", "decisions"):
        assert sim[name].equals(again[name]), name
    assert json.dumps(sim["truth"].to_json()) == json.dumps(again["truth"].to_json())
    other = simulate(SimConfig(customers=400, days=30, seed=12))
    assert not sim["touchpoints"].equals(other["touchpoints"])


def test_touchpoints_and_profiles_validate(sim: dict) -> None:
    tps = sim["touchpoints"].to_pylist()
    assert len({t["event_id"] for t in tps}) == len(tps)
    for rec in tps[:: max(1, len(tps) // 500)]:
        rec = {k: v for k, v in rec.items() if v is not None}
        rec["attributes"] = json.loads(rec["attributes"])
        Touchpoint.model_validate(rec)
    latest = pc.max(sim["touchpoints"]["occurred_at"]).as_py()
    assert latest < datetime(2026, 11, 22, tzinfo=UTC)
    for rec in sim["profiles"].to_pylist()[:50]:
        Profile.model_validate(
            {
                "timezone": rec["timezone"],
                "consent": json.loads(rec["consent"]),
                "attributes": json.loads(rec["attributes"]),
            }
        )
    assert len(set(sim["profiles"]["timezone"].to_pylist())) >= 5  # several time zones


def test_decisions_have_valid_propensities(sim: dict) -> None:
    dec = sim["decisions"]
    prop = dec["propensity"].to_numpy()
    assert ((prop > 0) & (prop <= 1)).all()
    policy = np.array(dec["policy"].to_pylist())
    # Business as usual (email at 10:00, campaign of the day) carries 1 - exploration + its uniform share.
    assert prop[policy == "logging"].min() > 1 - CFG.exploration
    assert prop[policy == "explore"].min() >= CFG.exploration / (8 * len(SEND_HOURS) * len(MESSAGES)) - 1e-12
    sent = sim["touchpoints"].filter(pc.equal(sim["touchpoints"]["event_type"], "sent"))
    assert set(sent["decision_id"].to_pylist()) == set(dec["decision_id"].to_pylist())
    assert (dec["decided_at"].to_numpy() < dec["send_at"].to_numpy()).all()


def test_opt_outs_stop_sends_and_some_customers_have_no_history(sim: dict) -> None:
    tps = sim["touchpoints"].to_pylist()
    out_at: dict[tuple[str, str], datetime] = {}
    for t in tps:
        if t["event_type"] == "unsubscribed":
            out_at[(t["customer_id"], t["channel"])] = t["occurred_at"]
    assert out_at, "the simulation should produce opt-outs"
    for t in tps:
        when = out_at.get((t["customer_id"], t["channel"]))
        if t["event_type"] == "sent" and when is not None:
            assert t["occurred_at"] < when
    contacted = {t["customer_id"] for t in tps}
    assert len(contacted) < CFG.customers


def test_outcomes_follow_the_oracle() -> None:
    """Observed conversions of the logged sends match the oracle's expected conversions (4 sigma)."""
    sim = simulate(SimConfig(customers=1500, days=30, seed=5))
    oracle = Oracle(sim["truth"])
    tps = sim["touchpoints"].to_pylist()
    converted = {t["event_id"].rsplit("-", 1)[0] for t in tps if t["event_type"] == "converted"}
    sends = sorted((t for t in tps if t["event_type"] == "sent"), key=lambda t: t["occurred_at"])
    history: dict[str, list[tuple[float, str]]] = defaultdict(list)
    rows = []
    for t in sends:
        ts = t["occurred_at"].timestamp()
        past = [(s, ch) for s, ch in history[t["customer_id"]] if s >= ts - 7 * 86400]
        rows.append((t, ts, len(past), sum(1 for _, ch in past if ch == t["channel"])))
        history[t["customer_id"]].append((ts, t["channel"]))
    cust = oracle.customers([r[0]["customer_id"] for r in rows])
    send_ts = np.array([r[1] for r in rows])
    hour, dow = oracle.local_hour_dow(cust, send_ts)
    p = oracle.p_convert(
        cust,
        np.array([oracle.channel_index[r[0]["channel"]] for r in rows]),
        hour,
        dow,
        np.array([oracle.message_index[r[0]["message_id"]] for r in rows]),
        np.array([r[2] for r in rows]),
        np.array([r[3] for r in rows]),
    )
    observed = np.array([r[0]["decision_id"] in converted for r in rows], dtype=float)
    assert abs(observed.sum() - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum())
    assert p.std() > 0.5 * p.mean()  # behaviour really differs across customers and actions


def test_write(tmp_path, sim: dict) -> None:
    out = write(sim, tmp_path / "sim")
    assert {p.name for p in out.iterdir()} == {
        "touchpoints.parquet",
        "profiles.parquet",
        "decisions.parquet",
        "truth.json",
    }
    oracle = Oracle.load(out / "truth.json")
    assert len(oracle.index) == CFG.customers
