"""Simulated customers whose true behaviour is known, a logging policy that contacts them (or decides not to),
and an oracle of the exact value, with and without contact, of any action.

Ground truth (all in truth.json; `Oracle` turns it into exact expected conversions and values):

* every customer lives in one of several IANA time zones, has declared attributes (segment, tenure, age band)
  and joins at day 0 or later (late joiners have no history when first contacted);
* engagement logit  eta = base + affinity[customer, channel] + hour bump around the customer's preferred
  local hour + day-of-week effect[age band] + message effect[segment, message] - fatigue, where the
  channel affinity is part attribute-driven, part idiosyncratic, and fatigue grows with the sends of the
  previous 7 days (overall and on the same channel);
* a send's response funnel: delivered (per channel) -> opened = sigmoid(eta + open offset) -> clicked =
  sigmoid(eta + click offset) -> visited (fixed share) -> converted = sigmoid(conversion offset[segment] +
  message effect / 2 + channel conversion lift); a conversion's value is drawn around the customer's mean
  order value;
* organic conversions (`SimConfig.organic`, on by default): every customer also buys without any contact, a
  Poisson process between 07:00 and 23:00 local with a daily hazard `organic_rate` (a level by segment x a
  per-customer log-normal effect, higher for customers who engage more: the confounding that a model of
  p(convert | contact) mistakes for response). They are `converted` touchpoints on the `web` channel (the
  shop) without decision, campaign or message, like the funnel's conversions (which keep the send's
  channel): last-touch attribution gives every organic conversion that falls within a send's attribution
  window to that send. With them comes persuadability `persuade` (added to the conversion logit once
  visited), negatively correlated with the organic effect: who buys anyway is moved less by a contact. A
  delivered send to a fatigued customer (more than `organic_fatigue_free` sends in the 7 days before it)
  multiplies the organic hazard over the next `suppress_days` (1 day: with at most one decision a day the
  effects of successive sends barely overlap, so they add up) by exp(-organic_fatigue x the excess sends).
  So a contact's lift is usually positive, about 0 when a response is unlikely, and negative for a fatigued
  customer who would have bought anyway;
* each delivered send may trigger an unsubscribe (more likely when fatigued): the channel is closed after it;
* drift (`SimConfig.drift`, off by default): parameters move linearly over the simulated period, phase =
  (t - start) / (end - start) in [0, 1]: the conversion offsets by segment (`seg_conv` -> `seg_conv_end`),
  the organic hazard by segment (x exp(phase x organic_drift)), the channel affinities by age band
  (+ phase x affinity_drift) and the preferred local hours by age band (+ phase x peak_drift).

The logging policy takes at most one decision per customer and day, at 06:00 local, on the days of the
customer's cadence:

* holdout customers (a random `holdout_share`, drawn once) are never contacted: a no-send decision, policy
  "holdout", propensity 1 (the assignment is fixed per customer);
* for the others, with probability `no_send`: a no-send decision, policy "logging", propensity `no_send`;
* else business as usual: email (else the first open channel) at 10:00 local with the campaign of the day
  (policy "logging"), except with probability `exploration` where it draws channel x slot x message uniformly
  among the allowed ones, the slots being 08:00-20:00 local of the decision day and the next
  (`explore_days`: the slots of the served grid's 48-hour horizon, so that every action the served policy can
  take has logged support; policy "explore"; the draw may coincide with business as usual). The propensity
  is (1 - no_send) x the probability of the action within this step, i.e. the exact probability of the
  logged action.

Customers of `no_history_share` never appear in any log (profiles only: no decision, no organic conversion).

Tables (`simulate` returns them, `write` stores them as Parquet next to truth.json):

* touchpoints: event_id, customer_id, channel, event_type, occurred_at, campaign_id, message_id,
  decision_id, value, attributes. A send's events have event_id "<decision_id>-<event type>"; its conversion
  carries no decision, campaign or message (the shop does not know them: the pipeline attributes it by time).
  Organic conversions: event_id "o<day:03>-<customer index:06>-<k>-converted", channel `web`, value > 0.
* profiles: customer_id, timezone, consent (JSON), quiet_hours (null), attributes (JSON).
* decisions: one row per decision, ordered by day and customer:

  ============  ====================================================================================
  decision_id   "d<day:03>-<customer index:06>"; the touchpoints of its send quote it
  customer_id   the customer
  decided_at    06:00 local time of the day (UTC timestamp)
  channel       the channel sent on; NO_SEND = "none" (the marker served decisions log for "don't
                contact now", `recommend_schemas.NONE_CHANNEL`) for a no-send decision
  send_at       the send's hour (UTC timestamp, floored to the hour); null for a no-send
  message_id    the message sent; null for a no-send
  propensity    probability with which the logging policy took this action, in (0, 1]
  policy        "logging" (business as usual, or a no-send draw), "explore" (the uniform draw), "holdout"
  ============  ====================================================================================

* truth.json: the `Truth` for `Oracle.load`.

`SimConfig(organic=False, holdout_share=0, no_send=0)` is the simulator as it was before organic conversions
and no-send decisions, draw for draw (their draws come from a second generator); `organic=False` alone keeps
the no-send decisions. Same seed, same output: every draw comes from two numpy Generators seeded by the
seed, each in a fixed order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from model.domain.catalogue import catalogue
from model.domain.recommend_schemas import NONE_CHANNEL
from model.domain.settings import get_settings
from training.sim_truth import (
    _AGE_AFFINITY,
    _AGE_PEAK,
    _AGE_SHARE,
    _AGE_WEEKEND,
    _CONV_LIFT,
    _DELIVERY,
    _DRIFT_AGE_SCALE,
    _DRIFT_CHANNEL,
    _DRIFT_PEAK,
    _DRIFT_SEG_CONV,
    _DRIFT_SEG_ORGANIC,
    _MSG,
    _OPEN,
    _ORGANIC_FATIGUE,
    _ORGANIC_FATIGUE_FREE,
    _SEG_CONV,
    _SEG_SHARE,
    _SEG_VALUE,
    _SUPPRESS_DAYS,
    _UNSUB,
    AFFINITY_SD,
    DAY,
    PEAK_SD,
    VISIT_SHARE,
    Oracle,
    Truth,
    _sigmoid,
    affinity,
    organic_rate,
    persuadability,
)

DEFAULT_END = date(2026, 11, 1)  # well before "now" so Touchpoint validation accepts every event
TIMEZONES = (
    "America/Los_Angeles",
    "America/Chicago",
    "America/New_York",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Paris",
    "Asia/Kolkata",
    "Australia/Sydney",
)
MESSAGES = ("welcome", "discount", "new_arrivals", "loyalty", "winback")
SEND_HOURS = tuple(range(8, 21))  # local hours outside the default quiet hours 21:00-08:00
BAU_HOUR = 10
BAU_CHANNELS = ("email", "push", "sms", "in_app")  # business as usual: the first open one, else any open channel


def explore_propensity(cfg: SimConfig, n_allowed: np.ndarray, messages: int, span: int) -> np.ndarray:
    """The logger's probability of one explored cell before `no_send`: `exploration` spread uniformly over the
    open channels x the send hours of `span` days x the messages."""
    return np.asarray(cfg.exploration / (n_allowed * len(SEND_HOURS) * span * messages))


def bau_order(chan: dict[str, int]) -> list[int]:
    """Channel indices in business-as-usual preference: BAU_CHANNELS first, then every channel by index (the
    logger sends on the first one open to the customer)."""
    return [chan[x] for x in BAU_CHANNELS if x in chan] + list(range(len(chan)))


DECISION_HOUR = 6  # decisions are taken at 06:00 local for the day ahead
NO_SEND = NONE_CHANNEL  # the decisions table's channel of a no-send decision ("none")
ORGANIC_CHANNEL = "web"  # organic conversions are recorded by the shop
ORGANIC_HOURS = (7, 23)  # local hours [from, to) in which organic conversions happen


@dataclass
class SimConfig:
    customers: int = 20_000
    days: int = 90
    seed: int = 7
    end: date = DEFAULT_END
    exploration: float = 0.3
    late_join_share: float = 0.25
    no_history_share: float = 0.05  # customers who never appear in any log (profiles only)
    organic: bool = True  # conversions without contact (False: a send's own conversions only)
    holdout_share: float = 0.05  # customers never contacted: their decisions are logged as no-sends
    no_send: float = 0.1  # probability that the logging policy decides not to contact (other customers)
    drift: bool = False  # conversion rates, channel and time preferences move over the period
    # Days an exploration send may fall on: 2 = the decision day and the next, the 08:00-20:00 slots of the
    # served grid's default 48-hour horizon from a 06:00 decision, so the log supports every slot the served
    # policy can choose (1: the decision day only, the simulator before 2026-12-02).
    explore_days: int = 2


def _customer_truth(cfg: SimConfig, rng: np.random.Generator, side: np.random.Generator) -> Truth:
    settings = get_settings()
    channels = list(catalogue().names)
    n, c = cfg.customers, len(channels)
    segment = rng.choice(len(_SEG_SHARE), size=n, p=np.array(_SEG_SHARE))
    age = rng.choice(len(_AGE_SHARE), size=n, p=np.array(_AGE_SHARE))
    tz = rng.integers(0, len(TIMEZONES), size=n)
    age_aff = np.array([_AGE_AFFINITY.get(ch, (0.0,) * 5) for ch in channels]).T  # [A, C]
    aff = affinity(age_aff[age], rng.normal(0.0, AFFINITY_SD, size=(n, c)), segment)
    peak = np.array(_AGE_PEAK)[age] + rng.normal(0.0, PEAK_SD, size=n)
    mean_value = np.array(_SEG_VALUE)[segment] * rng.lognormal(0.0, 0.25, size=n)
    organic = persuade = None
    if cfg.organic:
        engaged = aff.mean(axis=1)
        z = side.normal(0.0, 1.0, size=(2, n))
        organic = organic_rate(segment, z[0], engaged, engaged.mean())
        persuade = persuadability(z[0], z[1])
    drift: dict[str, Any] = {}
    if cfg.drift:
        drift = {
            "seg_conv_end": np.array(_SEG_CONV) + np.array(_DRIFT_SEG_CONV),
            "organic_drift": np.array(_DRIFT_SEG_ORGANIC),
            "affinity_drift": np.outer(_DRIFT_AGE_SCALE, [_DRIFT_CHANNEL.get(ch, 0.0) for ch in channels]),
            "peak_drift": np.array(_DRIFT_PEAK),
        }
    start, end = end_of(cfg.days, cfg.end)
    return Truth(
        channels=channels,
        messages=list(MESSAGES),
        timezones=list(TIMEZONES),
        customer_ids=[f"c{i:06d}" for i in range(n)],
        tz=tz,
        segment=segment,
        age=age,
        affinity=aff,
        peak=peak,
        mean_value=mean_value,
        delivery=np.array([_DELIVERY.get(ch, 0.8) for ch in channels]),
        open_offset=np.array([_OPEN.get(ch, 0.0) for ch in channels]),
        conv_lift=np.array([_CONV_LIFT.get(ch, 0.0) for ch in channels]),
        unsub=np.array([_UNSUB.get(ch, 0.003) for ch in channels]),
        msg=np.array(_MSG),
        seg_conv=np.array(_SEG_CONV),
        weekend=np.array(_AGE_WEEKEND),
        costs=np.array([settings.cost_of(ch) for ch in channels]),
        organic_rate=organic,
        persuade=persuade,
        organic_fatigue=_ORGANIC_FATIGUE,
        organic_fatigue_free=_ORGANIC_FATIGUE_FREE,
        suppress_days=_SUPPRESS_DAYS,
        window_days=float(settings.attribution_window_days),
        period=[start.timestamp(), end.timestamp()],
        drift=cfg.drift,
        **drift,
    )


def _local_table(zones: list[str], start: date, days: int) -> np.ndarray:
    """UTC epoch seconds of local (day, hour) per zone: [Z, D, 24] (DST-aware)."""
    out = np.zeros((len(zones), days, 24), dtype=np.float64)
    for z, name in enumerate(zones):
        zone = ZoneInfo(name)
        for d in range(days):
            day = start + timedelta(days=d)
            for h in range(24):
                out[z, d, h] = datetime(day.year, day.month, day.day, h, tzinfo=zone).timestamp()
    return out


_INT_COLS = ("cust", "day", "ch", "hour", "msg", "sends7", "chsends7")
_BOOL_COLS = ("explore", "delivered", "holdout")


def _stack(cols: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate per-day pieces (typed empty arrays when there are none)."""
    out = {}
    for key, parts in cols.items():
        dtype = np.int64 if key in _INT_COLS else bool if key in _BOOL_COLS else np.float64
        out[key] = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    return out


def simulate(cfg: SimConfig) -> dict[str, Any]:
    """Run the simulation; returns {"touchpoints", "profiles", "decisions": pa.Table, "truth": Truth}."""
    rng = np.random.default_rng(cfg.seed)
    side = np.random.default_rng([cfg.seed, 1])  # organic conversions, no-send decisions
    truth = _customer_truth(cfg, rng, side)
    oracle = Oracle(truth)
    n, c, m, hn = cfg.customers, len(truth.channels), len(MESSAGES), len(SEND_HOURS)
    start = cfg.end - timedelta(days=cfg.days)
    local = _local_table(truth.timezones, start, cfg.days + cfg.explore_days - 1)
    chan = {name: i for i, name in enumerate(truth.channels)}
    settings = get_settings()

    join_day = np.where(rng.random(n) < cfg.late_join_share, rng.integers(1, max(2, cfg.days), size=n), 0)
    never = rng.random(n) < cfg.no_history_share
    holdout = (side.random(n) < cfg.holdout_share) & ~never
    cadence = rng.uniform(0.25, 0.7, size=n)  # business-as-usual contact probability per day
    consent = np.ones((n, c), dtype=bool)
    explicit: dict[str, np.ndarray] = {}
    for name in settings.consent_required:
        if name in chan:
            explicit[name] = rng.random(n) < 0.4
            consent[:, chan[name]] = explicit[name]
    opt_from = np.full((n, c), cfg.days + 1, dtype=np.int64)  # first day a channel is closed by an opt-out
    pending = np.full(n, -1, dtype=np.int64)  # channel of a send decided yesterday for today (-1: none)
    ring = np.zeros((8, n, c), dtype=np.float64)  # send timestamps of the last 8 days (<= 1 send a day)
    bau_chs = bau_order(chan)

    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("cust", "day", "ch", "hour", "msg", "ts", "dec", "prop")}
    cols |= {"explore": [], "sends7": [], "chsends7": [], "delivered": []}
    quiet: dict[str, list[np.ndarray]] = {k: [] for k in ("cust", "day", "dec", "prop", "holdout")}
    out_cols: dict[str, list[np.ndarray]] = {k: [] for k in ("row", "type", "ts", "value")}
    n_rows = 0
    etype = {t: i for i, t in enumerate(("sent", "delivered", "opened", "clicked", "visited", "converted"))}
    etype |= {"bounced": 6, "unsubscribed": 7}

    for d in range(cfg.days):
        allowed = consent & (opt_from > d)
        # One send per channel and day: a channel already scheduled for today (yesterday's decision) is not open.
        has = np.flatnonzero(pending >= 0)
        allowed[has, pending[has]] = False
        pending[:] = -1
        n_allowed = allowed.sum(axis=1)
        decide = (join_day <= d) & ~never & (n_allowed > 0) & (rng.random(n) < cadence)
        skip = side.random(n) < cfg.no_send
        for mask, held, p_none in ((decide & holdout, True, 1.0), (decide & ~holdout & skip, False, cfg.no_send)):
            ii = np.flatnonzero(mask)
            quiet["cust"].append(ii)
            quiet["day"].append(np.full(len(ii), d))
            quiet["dec"].append(local[truth.tz[ii], d, DECISION_HOUR])
            quiet["prop"].append(np.full(len(ii), p_none))
            quiet["holdout"].append(np.full(len(ii), held))
        active = decide & ~holdout & ~skip
        idx = np.flatnonzero(active)
        k = len(idx)
        if k == 0:
            continue
        al = allowed[idx]
        # Business as usual: first open channel of bau_chs, at BAU_HOUR, the campaign of the day.
        bau_ch = np.full(k, -1, dtype=np.int64)
        for ch in reversed(bau_chs):
            bau_ch = np.where(al[:, ch], ch, bau_ch)
        bau_msg = d % m
        explore = rng.random(k) < cfg.exploration
        # Uniform draw among allowed channels: rank-select the j-th allowed channel.
        pick = (rng.random(k) * n_allowed[idx]).astype(np.int64)
        cum = np.cumsum(al, axis=1)
        rand_ch = np.argmax(cum > pick[:, None], axis=1)
        span = min(cfg.explore_days, cfg.days - d)  # no send after the simulated period
        rand_hour = rng.integers(0, hn * span, size=k)  # slot index over the days of the span
        rand_msg = rng.integers(0, m, size=k)
        ch_ = np.where(explore, rand_ch, bau_ch)
        hour_i = np.where(explore, rand_hour, SEND_HOURS.index(BAU_HOUR))
        msg_ = np.where(explore, rand_msg, bau_msg)
        uniform = explore_propensity(cfg, n_allowed[idx], m, span)
        is_bau = (ch_ == bau_ch) & (hour_i == SEND_HOURS.index(BAU_HOUR)) & (msg_ == bau_msg)
        prop = (uniform + np.where(is_bau, 1.0 - cfg.exploration, 0.0)) * (1.0 - cfg.no_send)
        hour = np.array(SEND_HOURS)[hour_i % hn]
        tz = truth.tz[idx]
        ts = local[tz, d + hour_i // hn, hour] + rng.integers(0, 600, size=k)  # first 10 minutes of the hour
        dec_ts = local[tz, d, DECISION_HOUR]
        recent = ring[:, idx, :]  # [8, k, C]
        # Sends before this one (a send decided yesterday for today may come after it) within 7 days.
        window = (recent > 0) & (recent < ts[None, :, None]) & (recent >= ts[None, :, None] - 7 * DAY)
        sends7 = window.sum(axis=(0, 2))
        chsends7 = window[:, np.arange(k), ch_].sum(axis=0)
        lh, dow = oracle.local_hour_dow(idx, ts)
        t = truth
        eta, p_cv = oracle.terms(idx, ch_, lh, dow, msg_, sends7, chsends7, ts)
        delivered = rng.random(k) < t.delivery[ch_]
        opened = delivered & (rng.random(k) < _sigmoid(eta + t.open_offset[ch_]))
        clicked = opened & (rng.random(k) < _sigmoid(eta + t.click_offset))
        visited = clicked & (rng.random(k) < VISIT_SHARE)
        converted = visited & (rng.random(k) < p_cv)
        unsub_p = t.unsub[ch_] * np.exp(0.3 * np.maximum(0, sends7 - 2))
        unsub = delivered & (rng.random(k) < unsub_p)
        t_open = ts + rng.exponential(2 * 3600, size=k) + 30
        t_click = t_open + rng.exponential(900, size=k) + 5
        t_visit = t_click + rng.uniform(1, 60, size=k)
        t_conv = t_visit + rng.exponential(DAY, size=k) + 60
        t_unsub = ts + rng.uniform(60, 3000, size=k)  # before the next decision: the log shows it in time
        value = np.round(t.mean_value[idx] * rng.lognormal(-0.08, 0.4, size=k), 2)

        rows = np.arange(n_rows, n_rows + k)
        for mask, name, when, val in (
            (np.ones(k, dtype=bool), "sent", ts, None),
            (delivered, "delivered", ts + 5, None),
            (~delivered, "bounced", ts + 5, None),
            (opened, "opened", t_open, None),
            (clicked, "clicked", t_click, None),
            (visited, "visited", t_visit, None),
            (converted, "converted", t_conv, value),
            (unsub, "unsubscribed", t_unsub, None),
        ):
            out_cols["row"].append(rows[mask])
            out_cols["type"].append(np.full(int(mask.sum()), etype[name], dtype=np.int8))
            out_cols["ts"].append(when[mask])
            out_cols["value"].append(val[mask] if val is not None else np.zeros(int(mask.sum())))
        for key, arr in (
            ("cust", idx),
            ("day", np.full(k, d)),
            ("ch", ch_),
            ("hour", hour),
            ("msg", msg_),
            ("ts", ts),
            ("dec", dec_ts),
            ("prop", prop),
            ("explore", explore),
            ("sends7", sends7),
            ("chsends7", chsends7),
            ("delivered", delivered),
        ):
            cols[key].append(np.asarray(arr))
        n_rows += k

        # State for the following days: send ring, opt-outs (effective from the next day).
        ring[d % 8] = 0.0
        ring[d % 8, idx, ch_] = ts
        # An opt-out closes the channel from the day after the send's day (the unsubscribe comes within the hour).
        later = hour_i >= hn  # sent tomorrow
        opt_from[idx[unsub], ch_[unsub]] = np.minimum(opt_from[idx[unsub], ch_[unsub]], d + 1 + later[unsub])
        pending[idx[later]] = ch_[later]

    sends = _stack(cols)
    events = {k: np.concatenate(v) if v else np.zeros(0) for k, v in out_cols.items()}
    events["row"] = events["row"].astype(np.int64)
    events["type"] = events["type"].astype(np.int8)
    touchpoints = _touchpoints_table(truth, sends, events, etype)
    if truth.organic_rate is not None:
        organic = _organic_conversions(truth, oracle, local, join_day, never, sends, side)
        touchpoints = pa.concat_tables([touchpoints, _organic_table(truth, organic).cast(touchpoints.schema)])
    return {
        "truth": truth,
        "decisions": _decisions_table(truth, sends, MESSAGES, _stack(quiet)),
        "touchpoints": touchpoints,
        "profiles": _profiles_table(truth, explicit, join_day, cfg),
    }


def _organic_conversions(
    truth: Truth,
    oracle: Oracle,
    local: np.ndarray,
    join_day: np.ndarray,
    never: np.ndarray,
    sends: dict[str, np.ndarray],
    side: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Organic conversions: Poisson per customer and day at the hazard of the day (thinned by the suppression
    of the delivered sends whose attribution window holds them). Only days after joining; never for the
    customers without history."""
    n, days = len(truth.customer_ids), local.shape[1]
    noon = local[:, :, 12][truth.tz]  # [N, D] local noon of each day (drift: the hazard of that instant)
    hazard = oracle.organic_hazard(np.arange(n)[:, None], noon)
    hazard = np.where((np.arange(days)[None, :] >= join_day[:, None]) & ~never[:, None], hazard, 0.0)
    counts = side.poisson(hazard)
    cust, day = np.nonzero(counts)
    reps = counts[cust, day]
    cust, day = np.repeat(cust, reps), np.repeat(day, reps)
    k = np.arange(len(cust)) - np.repeat(np.cumsum(reps) - reps, reps)  # index within the customer's day
    hour = side.integers(*ORGANIC_HOURS, size=len(cust))
    ts = local[truth.tz[cust], day, hour] + side.uniform(0.0, 3600.0, size=len(cust))
    value = np.round(truth.mean_value[cust] * side.lognormal(-0.08, 0.4, size=len(cust)), 2)
    keep_draw = side.random(len(cust))
    # log suppression of each delivered send; a conversion at t is under the sends with t - window <= ts < t.
    excess = np.maximum(0, sends["sends7"] - truth.organic_fatigue_free) * sends["delivered"]
    key_span = 1e10  # > any epoch second here: (customer, time) as one sortable float
    keys = sends["cust"] * key_span + sends["ts"]
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    cum = np.concatenate([[0.0], np.cumsum(-truth.organic_fatigue * excess[order])])
    at = cust * key_span + ts
    lo = np.searchsorted(keys, at - min(truth.suppress_days, truth.window_days) * DAY, side="left")
    hi = np.searchsorted(keys, at, side="left")
    keep = keep_draw < np.exp(cum[hi] - cum[lo])
    return {"cust": cust[keep], "day": day[keep], "k": k[keep], "ts": ts[keep], "value": value[keep]}


def _decision_ids(sends: dict[str, np.ndarray]) -> np.ndarray:
    return _day_customer_ids("d", sends["day"], sends["cust"])


def _day_customer_ids(prefix: str, day: np.ndarray, cust: np.ndarray) -> np.ndarray:
    """Ids "<prefix><day:03>-<customer index:06>", one per row (an empty string array for no rows)."""
    if len(day) == 0:
        return np.zeros(0, dtype=str)
    return np.char.add(
        np.char.add(prefix, np.char.zfill(day.astype(str), 3)),
        np.char.add("-", np.char.zfill(cust.astype(str), 6)),
    )


def _ts(values: np.ndarray) -> pa.Array:
    return pa.array((np.asarray(values) * 1e6).astype("int64"), type=pa.timestamp("us", tz="UTC"))


def _decisions_table(
    truth: Truth,
    sends: dict[str, np.ndarray],
    messages: tuple[str, ...],
    quiet: dict[str, np.ndarray] | None = None,
) -> pa.Table:
    ids = np.array(truth.customer_ids)
    table = pa.table(
        {
            "decision_id": _decision_ids(sends),
            "customer_id": ids[sends["cust"]],
            "decided_at": _ts(sends["dec"]),
            "channel": np.array(truth.channels)[sends["ch"]],
            "send_at": _ts(np.floor(sends["ts"] / 3600) * 3600),
            "message_id": np.array(messages)[sends["msg"]],
            "propensity": sends["prop"],
            "policy": np.where(sends["explore"], "explore", "logging"),
        }
    )
    if quiet is None or len(quiet["cust"]) == 0:
        return table
    k = len(quiet["cust"])
    none = pa.table(
        {
            "decision_id": _decision_ids(quiet),
            "customer_id": ids[quiet["cust"]],
            "decided_at": _ts(quiet["dec"]),
            "channel": np.full(k, NO_SEND),
            "send_at": pa.nulls(k, pa.timestamp("us", tz="UTC")),
            "message_id": pa.nulls(k, pa.string()),
            "propensity": quiet["prop"],
            "policy": np.where(quiet["holdout"], "holdout", "logging"),
        }
    )
    both = pa.concat_tables([table.cast(none.schema), none])
    order = np.lexsort((np.concatenate([sends["cust"], quiet["cust"]]), np.concatenate([sends["day"], quiet["day"]])))
    return both.take(order).combine_chunks()


def _touchpoints_table(
    truth: Truth, sends: dict[str, np.ndarray], events: dict[str, np.ndarray], etype: dict[str, int]
) -> pa.Table:
    names = np.array(list(etype))
    row = events["row"]
    order = np.lexsort((events["ts"], row))
    row, kind, ts, value = row[order], events["type"][order], events["ts"][order], events["value"][order]
    dec = _decision_ids(sends)[row]
    kind_name = names[kind]
    conv = kind_name == "converted"
    explore = sends["explore"][row]
    attributes = np.where(kind_name == "sent", np.where(explore, '{"policy":"explore"}', '{"policy":"logging"}'), "{}")
    return pa.table(
        {
            "event_id": np.char.add(np.char.add(dec, "-"), kind_name),
            "customer_id": np.array(truth.customer_ids)[sends["cust"][row]],
            "channel": np.array(truth.channels)[sends["ch"][row]],
            "event_type": kind_name,
            "occurred_at": _ts(np.floor(ts * 1000) / 1000),
            "campaign_id": pa.array(np.char.add("camp-", sends["day"][row].astype(str)), mask=conv),
            "message_id": pa.array(np.array(MESSAGES)[sends["msg"][row]], mask=conv),
            # Conversions come from the shop: no decision id, the pipeline attributes them by time.
            "decision_id": pa.array(dec, mask=conv),
            "value": value,
            "attributes": attributes,
        }
    )


def _organic_table(truth: Truth, organic: dict[str, np.ndarray]) -> pa.Table:
    """Organic conversions as touchpoints, by time: the shop's `converted` events, nothing links them to a send."""
    order = np.lexsort((organic["cust"], organic["ts"]))
    cust, day, k = organic["cust"][order], organic["day"][order], organic["k"][order]
    ids = _day_customer_ids("o", day, cust)
    if len(ids):
        ids = np.char.add(np.char.add(np.char.add(ids, "-"), k.astype(str)), "-converted")
    n = len(order)
    channel = ORGANIC_CHANNEL if ORGANIC_CHANNEL in truth.channels else truth.channels[0]
    return pa.table(
        {
            "event_id": ids,
            "customer_id": np.array(truth.customer_ids)[cust],
            "channel": np.full(n, channel),
            "event_type": np.full(n, "converted"),
            "occurred_at": _ts(np.floor(organic["ts"][order] * 1000) / 1000),
            "campaign_id": pa.nulls(n, pa.string()),
            "message_id": pa.nulls(n, pa.string()),
            "decision_id": pa.nulls(n, pa.string()),
            "value": organic["value"][order],
            "attributes": np.full(n, "{}"),
        }
    )


def _profiles_table(truth: Truth, explicit: dict[str, np.ndarray], join_day: np.ndarray, cfg: SimConfig) -> pa.Table:
    settings = get_settings()
    specs = {a.name: a for a in settings.profile_attributes}
    seg_levels = specs["segment"].levels if "segment" in specs else ["new", "regular", "vip", "lapsed"]
    age_levels = specs["age_band"].levels if "age_band" in specs else ["18-24", "25-34", "35-44", "45-54", "55+"]
    rng = np.random.default_rng(cfg.seed + 1)
    tenure = np.where(join_day > 0, cfg.days - join_day, rng.integers(cfg.days, 2000, size=len(join_day)))
    tenure = np.where(truth.segment == 0, np.minimum(tenure, cfg.days), tenure)  # "new" customers are new
    consent_json, attrs_json = [], []
    for i in range(len(truth.customer_ids)):
        consent_json.append(json.dumps({k: bool(v[i]) for k, v in explicit.items()}))
        attrs: dict[str, str | float] = {}
        if "segment" in specs:
            attrs["segment"] = seg_levels[int(truth.segment[i])]
        if "tenure_days" in specs:
            attrs["tenure_days"] = float(tenure[i])
        if "age_band" in specs:
            attrs["age_band"] = age_levels[int(truth.age[i])]
        attrs_json.append(json.dumps(attrs))
    return pa.table(
        {
            "customer_id": truth.customer_ids,
            "timezone": np.array(truth.timezones)[truth.tz],
            "consent": consent_json,
            "quiet_hours": pa.nulls(len(truth.customer_ids), pa.string()),
            "attributes": attrs_json,
        }
    )


def write(result: dict[str, Any], out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("touchpoints", "profiles", "decisions"):
        pq.write_table(result[name], out / f"{name}.parquet")
    (out / "truth.json").write_text(json.dumps(result["truth"].to_json()))
    return out


def end_of(days: int, end: date = DEFAULT_END) -> tuple[datetime, datetime]:
    start = end - timedelta(days=days)
    return datetime(start.year, start.month, start.day, tzinfo=UTC), datetime(end.year, end.month, end.day, tzinfo=UTC)
