"""The simulator: deterministic, valid touchpoints and propensities, outcomes that follow its oracle, organic
conversions and no-send decisions, drift."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pytest

from model.domain.schemas import Profile, Touchpoint
from training.sim_truth import DAY, Oracle
from training.simulate import (
    MESSAGES,
    NO_SEND,
    SEND_HOURS,
    SimConfig,
    simulate,
    write,
)

CFG = SimConfig(customers=400, days=30, seed=11)


@pytest.fixture(scope="module")
def sim() -> dict[str, Any]:
    return simulate(CFG)


def _sends(tps: list[dict[str, Any]], oracle: Oracle) -> dict[str, np.ndarray]:
    """Every logged send with its state (sends of the 7 days before it, overall and on its channel)."""
    sends = sorted((t for t in tps if t["event_type"] == "sent"), key=lambda t: t["occurred_at"])
    history: dict[str, list[tuple[float, str]]] = defaultdict(list)
    ts, total, same = [], [], []
    for t in sends:
        now = t["occurred_at"].timestamp()
        past = [(s, ch) for s, ch in history[t["customer_id"]] if s >= now - 7 * DAY]
        ts.append(now)
        total.append(len(past))
        same.append(sum(1 for _, ch in past if ch == t["channel"]))
        history[t["customer_id"]].append((now, t["channel"]))
    cust = oracle.customers([t["customer_id"] for t in sends])
    send_ts = np.array(ts)
    hour, dow = oracle.local_hour_dow(cust, send_ts)
    return {
        "decision_id": np.array([t["decision_id"] for t in sends]),
        "customer_id": np.array([t["customer_id"] for t in sends]),
        "cust": cust,
        "ch": np.array([oracle.channel_index[t["channel"]] for t in sends], dtype=np.int64),
        "msg": np.array([oracle.message_index[t["message_id"]] for t in sends], dtype=np.int64),
        "ts": send_ts,
        "hour": hour,
        "dow": dow,
        "sends7": np.array(total),
        "chsends7": np.array(same),
    }


State = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _state(s: dict[str, np.ndarray]) -> State:
    return s["cust"], s["ch"], s["hour"], s["dow"], s["msg"], s["sends7"], s["chsends7"]


def _join_day(sim: dict[str, Any], days: int) -> np.ndarray:
    """Day each customer joined, from the profiles (tenure_days < the period for late joiners)."""
    tenure = np.array([json.loads(a)["tenure_days"] for a in sim["profiles"]["attributes"].to_pylist()])
    return np.asarray(days - np.minimum(tenure, days).astype(np.int64))


def _organic(tps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tps if t["event_type"] == "converted" and t["event_id"].startswith("o")]


def test_same_seed_same_output(sim: dict[str, Any]) -> None:
    again = simulate(CFG)
    for name in ("touchpoints", "profiles", "decisions"):
        assert sim[name].equals(again[name]), name
    assert json.dumps(sim["truth"].to_json()) == json.dumps(again["truth"].to_json())
    other = simulate(SimConfig(customers=400, days=30, seed=12))
    assert not sim["touchpoints"].equals(other["touchpoints"])
    drift = SimConfig(customers=150, days=20, seed=3, drift=True)
    a, b = simulate(drift), simulate(drift)
    for name in ("touchpoints", "profiles", "decisions"):
        assert a[name].equals(b[name]), name
    assert json.dumps(a["truth"].to_json()) == json.dumps(b["truth"].to_json())
    assert not a["touchpoints"].equals(simulate(SimConfig(customers=150, days=20, seed=3))["touchpoints"])


def test_touchpoints_and_profiles_validate(sim: dict[str, Any]) -> None:
    tps = sim["touchpoints"].to_pylist()
    assert len({t["event_id"] for t in tps}) == len(tps)
    organic = _organic(tps)
    assert organic
    for rec in tps[:: max(1, len(tps) // 500)] + organic[:50]:
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


def test_decisions_have_valid_propensities(sim: dict[str, Any]) -> None:
    dec = sim["decisions"]
    prop = dec["propensity"].to_numpy()
    assert ((prop > 0) & (prop <= 1)).all()
    policy = np.array(dec["policy"].to_pylist())
    channel = np.array(dec["channel"].to_pylist())
    sent_rows = channel != NO_SEND
    # Business as usual (email at 10:00, campaign of the day) carries 1 - exploration + its uniform share, times
    # the probability of deciding to send at all.
    bau = prop[(policy == "logging") & sent_rows]
    assert bau.min() > (1 - CFG.exploration) * (1 - CFG.no_send)
    slots = len(SEND_HOURS) * CFG.explore_days
    floor = (1 - CFG.no_send) * CFG.exploration / (8 * slots * len(MESSAGES))
    assert prop[policy == "explore"].min() >= floor - 1e-12
    sent = sim["touchpoints"].filter(pc.equal(sim["touchpoints"]["event_type"], "sent"))
    assert set(sent["decision_id"].to_pylist()) == set(
        dec.filter(pc.not_equal(dec["channel"], NO_SEND))["decision_id"].to_pylist()
    )
    assert (dec["decided_at"].to_numpy()[sent_rows] < dec["send_at"].to_numpy()[sent_rows]).all()
    # At most one decision per customer and day, ordered by day and customer.
    ids = dec["decision_id"].to_pylist()
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_exploration_covers_the_served_grids_slots(sim: dict[str, Any]) -> None:
    """Exploration sends fall on 08:00-20:00 local of the decision day and the next (the served grid's default
    48 hours from a 06:00 decision), so the log has support for every slot the served policy can choose."""
    dec = sim["decisions"].filter(pc.equal(sim["decisions"]["policy"], "explore"))
    decided = dec["decided_at"].to_numpy().astype("datetime64[s]").astype(np.int64)
    send = dec["send_at"].to_numpy().astype("datetime64[s]").astype(np.int64)
    ahead = send - decided
    assert ((ahead > 0) & (ahead < 48 * 3600)).all()
    next_day = ahead > 18 * 3600  # 06:00 -> past midnight
    assert 0.3 < next_day.mean() < 0.7  # about half of them on the next day
    # Business as usual stays on the decision day.
    bau = sim["decisions"].filter(pc.equal(sim["decisions"]["policy"], "logging"))
    bau = bau.filter(pc.not_equal(bau["channel"], NO_SEND))
    gap = bau["send_at"].to_numpy().astype("datetime64[s]").astype(np.int64) - bau["decided_at"].to_numpy().astype(
        "datetime64[s]"
    ).astype(np.int64)
    assert (gap < 18 * 3600).all()


def test_no_send_decisions_are_logged_with_their_propensity(sim: dict[str, Any]) -> None:
    dec = sim["decisions"].to_pylist()
    quiet = [d for d in dec if d["channel"] == NO_SEND]
    assert {d["policy"] for d in quiet} == {"holdout", "logging"}
    for d in quiet:
        assert d["send_at"] is None
        assert d["message_id"] is None
        assert 0 < d["propensity"] <= 1
        assert d["propensity"] == (1.0 if d["policy"] == "holdout" else CFG.no_send)
    # The logging policy's own no-sends come at about the configured rate among the non-holdout decisions.
    rest = [d for d in dec if d["policy"] != "holdout"]
    share = sum(d["channel"] == NO_SEND for d in rest) / len(rest)
    assert abs(share - CFG.no_send) < 4 * np.sqrt(CFG.no_send * (1 - CFG.no_send) / len(rest))
    # Holdout customers: decisions, never a send; nobody else is in the holdout.
    holdout = {d["customer_id"] for d in dec if d["policy"] == "holdout"}
    assert holdout
    assert all(d["channel"] == NO_SEND for d in dec if d["customer_id"] in holdout)
    tps = sim["touchpoints"].to_pylist()
    assert not {t["customer_id"] for t in tps if t["event_type"] == "sent"} & holdout
    assert not {t["decision_id"] for t in tps} & {d["decision_id"] for d in quiet}  # no touchpoint quotes them


def test_organic_conversions_also_without_any_contact(sim: dict[str, Any]) -> None:
    tps = sim["touchpoints"].to_pylist()
    dec = sim["decisions"].to_pylist()
    holdout = {d["customer_id"] for d in dec if d["policy"] == "holdout"}
    organic = _organic(tps)
    assert {t["channel"] for t in organic} == {"web"}
    assert all(t["decision_id"] is None and t["campaign_id"] is None and t["value"] > 0 for t in organic)
    converted = {t["customer_id"] for t in organic}
    assert converted & holdout, "never-contacted customers convert too"
    assert converted - holdout, "and contacted ones convert without their sends"
    # Customers without history stay silent: no decision, no touchpoint.
    assert len({t["customer_id"] for t in tps} | {d["customer_id"] for d in dec}) < CFG.customers


def test_organic_conversions_follow_the_hazard() -> None:
    """Nobody contacted: the organic conversions match the oracle's daily hazard x days since joining (4 sigma)."""
    cfg = SimConfig(customers=3000, days=28, seed=4, holdout_share=1.0)
    res = simulate(cfg)
    oracle = Oracle(res["truth"])
    tps = res["touchpoints"].to_pylist()
    assert tps
    assert all(t["event_type"] == "converted" for t in tps)
    ids = set(res["decisions"]["customer_id"].to_pylist())  # customers with history (all in the holdout)
    decided = oracle.customers(sorted(ids))
    exposure = (cfg.days - _join_day(res, cfg.days))[decided]
    expected = float((oracle.organic_hazard(decided) * exposure).sum())
    observed = sum(t["customer_id"] in ids for t in tps)
    assert abs(observed - expected) < 4 * np.sqrt(expected)


def test_outcomes_follow_the_oracle() -> None:
    """Conversions of the logged sends (their own funnel) match the oracle's p_response (4 sigma)."""
    res = simulate(SimConfig(customers=1500, days=30, seed=5))
    oracle = Oracle(res["truth"])
    tps = res["touchpoints"].to_pylist()
    converted = {t["event_id"].rsplit("-", 1)[0] for t in tps if t["event_type"] == "converted"}
    s = _sends(tps, oracle)
    p = oracle.p_response(*_state(s))
    observed = np.array([d in converted for d in s["decision_id"]], dtype=float)
    assert abs(observed.sum() - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum())
    assert p.std() > 0.5 * p.mean()  # behaviour really differs across customers and actions


def test_holdout_and_contacted_differ_by_the_true_lift() -> None:
    """Conversions per customer, contacted minus holdout, match the oracle's lift summed over the logged sends.

    Raw difference (4 sigma), and adjusted for each customer's known organic baseline (4 sigma + 10%): the
    organic hazard varies a lot across customers, the adjustment takes that noise out.
    """
    cfg = SimConfig(customers=3000, days=28, seed=21, holdout_share=0.5)
    res = simulate(cfg)
    oracle = Oracle(res["truth"])
    tps = res["touchpoints"].to_pylist()
    dec = res["decisions"]
    policy = np.array(dec["policy"].to_pylist())
    customers = np.array(dec["customer_id"].to_pylist())
    holdout = sorted(set(customers[policy == "holdout"]))
    contacted = sorted(set(customers) - set(holdout))
    conversions = Counter(t["customer_id"] for t in tps if t["event_type"] == "converted")
    s = _sends(tps, oracle)
    assert set(s["customer_id"]) <= set(contacted)
    true_lift = float(oracle.lift(*_state(s)).sum()) / len(contacted)  # extra conversions per customer
    baseline = oracle.organic_hazard(np.arange(cfg.customers)) * (cfg.days - _join_day(res, cfg.days))
    y_h = np.array([conversions[c] for c in holdout], dtype=float)
    y_c = np.array([conversions[c] for c in contacted], dtype=float)
    raw = y_c.mean() - y_h.mean()
    se_raw = np.sqrt(y_c.var() / len(y_c) + y_h.var() / len(y_h))
    assert abs(raw - true_lift) < 4 * se_raw
    r_h = y_h - baseline[oracle.customers(holdout)]
    r_c = y_c - baseline[oracle.customers(contacted)]
    assert abs(r_h.mean()) < 4 * r_h.std() / np.sqrt(len(r_h))  # the holdout converts at its organic rate
    adjusted = r_c.mean() - r_h.mean()
    se = np.sqrt(r_c.var() / len(r_c) + r_h.var() / len(r_h))
    assert abs(adjusted - true_lift) < 4 * se + 0.1 * abs(true_lift)
    assert true_lift > 4 * se  # contacting does lift, on average
    # ... though not every send: some lift ~nothing, fatigued customers' sends lose more than they bring.
    per_send = oracle.lift(*_state(s))
    assert (per_send < 0).mean() > 0.05
    assert (per_send > 0).mean() > 0.5
    assert (per_send[s["sends7"] <= 2] >= 0).all()


def test_oracle_with_and_without_organic() -> None:
    res = simulate(SimConfig(customers=300, days=20, seed=2))
    oracle = Oracle(res["truth"])
    s = _sends(res["touchpoints"].to_pylist(), oracle)
    state = _state(s)
    cust, ch = s["cust"], s["ch"]
    q = oracle.p_response(*state)
    p0 = oracle.p_organic(cust, s["ts"])
    p1 = oracle.p_convert(*state)
    assert (p0 > 0).all()
    assert (p1 >= q).all()
    assert (p1 <= 1).all()
    rested = s["sends7"] <= 2  # no fatigue: the contact only adds its response
    assert np.allclose((p1 - p0)[rested], (q * (1 - p0))[rested])
    lift = oracle.lift(*state)
    value = oracle.incremental_value(cust, ch, s["ts"], s["msg"], s["sends7"], s["chsends7"])
    t = res["truth"]
    assert np.allclose(value, lift * t.mean_value[cust] - t.costs[ch])
    same = oracle.incremental_value(
        cust, ch, None, s["msg"], s["sends7"], s["chsends7"], local_hour=s["hour"], dow=s["dow"]
    )
    assert np.array_equal(value, same)
    closed = np.ones(len(cust), dtype=bool)
    assert np.allclose(oracle.p_convert(*state, closed), p0)
    assert np.allclose(
        oracle.incremental_value(cust, ch, s["ts"], s["msg"], s["sends7"], s["chsends7"], closed), -t.costs[ch]
    )
    # organic=False: p_convert is the send's own conversion, incremental = expected value with contact.
    old = simulate(SimConfig(customers=300, days=20, seed=2, organic=False, holdout_share=0.0, no_send=0.0))
    assert old["truth"].organic_rate is None
    assert not _organic(old["touchpoints"].to_pylist())
    assert (np.array(old["decisions"]["channel"].to_pylist()) != NO_SEND).all()
    o2 = Oracle(old["truth"])
    s2 = _sends(old["touchpoints"].to_pylist(), o2)
    st2 = _state(s2)
    assert np.array_equal(o2.p_convert(*st2), o2.p_response(*st2))
    assert (o2.p_organic(s2["cust"], s2["ts"]) == 0).all()
    assert np.allclose(
        o2.incremental_value(s2["cust"], s2["ch"], s2["ts"], s2["msg"], s2["sends7"], s2["chsends7"]),
        o2.expected_value(s2["cust"], s2["ch"], o2.p_convert(*st2)),
    )


def test_drift_moves_rates_between_first_and_last_week() -> None:
    def columns(res: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Event type, event id, customer id and week of the period (0 = first) of every touchpoint."""
        tp = res["touchpoints"]
        kind, eid, cid = (
            tp[c].to_numpy(zero_copy_only=False).astype(str) for c in ("event_type", "event_id", "customer_id")
        )
        week = (tp["occurred_at"].cast("int64").to_numpy() / 1e6 - res["truth"].period[0]) // (7 * DAY)
        return kind, eid, cid, week

    def response_ratio(res: dict[str, Any]) -> float:
        """Conversions per send (the sends' own), last week over first week."""
        kind, eid, _, week = columns(res)
        sends = np.char.rpartition(eid[kind == "sent"], "-")[:, 0]
        converted = np.isin(sends, np.char.rpartition(eid[kind == "converted"], "-")[:, 0])
        first, last = week[kind == "sent"] == 0, week[kind == "sent"] == 3
        return float(converted[last].mean() / converted[first].mean())

    cfg = SimConfig(customers=2000, days=28, seed=9)
    drifting = simulate(replace(cfg, drift=True))
    # Fatigue builds up over the first week in both runs; drift (email falls out of favour) adds to it.
    assert response_ratio(drifting) < 0.75 * response_ratio(simulate(cfg))

    oracle = Oracle(drifting["truth"])
    with pytest.raises(ValueError, match="send_ts"):
        oracle.organic_hazard(np.arange(3))
    start, end = drifting["truth"].period
    assert oracle.phase(start) == 0
    assert oracle.phase(end) == 1
    cust = np.arange(cfg.customers)
    ratio = oracle.organic_hazard(cust, np.full(len(cust), end)) / oracle.organic_hazard(
        cust, np.full(len(cust), start)
    )
    assert np.allclose(ratio, np.exp(drifting["truth"].organic_drift[drifting["truth"].segment]))

    # Organic conversions by segment (nobody contacted): the growing segment overtakes the shrinking one.
    quiet = simulate(SimConfig(customers=6000, days=28, seed=9, holdout_share=1.0, drift=True))
    truth = quiet["truth"]
    grow, shrink = int(np.argmax(truth.organic_drift)), int(np.argmin(truth.organic_drift))
    _, _, cid, week = columns(quiet)
    seg = truth.segment[np.char.lstrip(cid, "c").astype(np.int64)]
    counts = np.array([[np.sum((seg == g) & (week == w)) for w in (0, 3)] for g in (grow, shrink)], dtype=float)
    change = (counts[0, 1] / counts[0, 0]) / (counts[1, 1] / counts[1, 0])  # exposure changes cancel out
    expected = np.exp((truth.organic_drift[grow] - truth.organic_drift[shrink]) * 3 / 4)
    assert abs(np.log(change) - np.log(expected)) < 4 * np.sqrt((1 / counts).sum())
    assert change > 1.5


def test_opt_outs_stop_sends_and_some_customers_have_no_history(sim: dict[str, Any]) -> None:
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


def test_write(tmp_path: Path, sim: dict[str, Any]) -> None:
    out = write(sim, tmp_path / "sim")
    assert {p.name for p in out.iterdir()} == {
        "touchpoints.parquet",
        "profiles.parquet",
        "decisions.parquet",
        "truth.json",
    }
    oracle = Oracle.load(out / "truth.json")
    assert len(oracle.index) == CFG.customers
    assert oracle.truth.organic_rate is not None
    assert np.array_equal(oracle.truth.organic_rate, sim["truth"].organic_rate)
    assert oracle.truth.window_days == sim["truth"].window_days


def test_truth_json_from_before_organic_conversions_loads(sim: dict[str, Any]) -> None:
    data = sim["truth"].to_json()
    for key in ("organic_rate", "persuade", "organic_fatigue", "organic_fatigue_free", "suppress_days"):
        data.pop(key)
    for key in ("window_days", "period", "drift", "seg_conv_end", "organic_drift", "affinity_drift", "peak_drift"):
        data.pop(key)
    oracle = Oracle(type(sim["truth"]).from_json(data))
    assert oracle.truth.organic_rate is None
    assert not oracle.truth.drift
    assert (oracle.p_organic(np.arange(5)) == 0).all()
