"""Simulated customers whose true behaviour is known, a logging policy that contacts them, and an oracle.

Ground truth (all in truth.json; `Oracle` turns it into exact expected conversions and values):

* every customer lives in one of several IANA time zones, has declared attributes (segment, tenure, age band)
  and joins at day 0 or later (late joiners have no history when first contacted);
* engagement logit  eta = base + affinity[customer, channel] + hour bump around the customer's preferred
  local hour + day-of-week effect[age band] + message effect[segment, message] - fatigue, where the
  channel affinity is part attribute-driven, part idiosyncratic, and fatigue grows with the sends of the
  previous 7 days (overall and on the same channel);
* funnel: delivered (per channel) -> opened = sigmoid(eta + open offset) -> clicked = sigmoid(eta + click
  offset) -> visited (fixed share) -> converted = sigmoid(conversion offset[segment] + message effect /2 +
  channel conversion lift); a conversion's value is drawn around the customer's mean order value;
* each delivered send may trigger an unsubscribe (more likely when fatigued): the channel is closed after it.

The logging policy (business as usual) contacts a customer on a day with the customer's cadence; it sends
email (else the first open channel) at 10:00 local with the campaign of the day, except with probability
`exploration` where it draws channel x hour x message uniformly among the allowed ones. Each decision
records the exact probability of the action it took.

Same seed, same output: every draw comes from one numpy Generator in a fixed order.
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
from model.domain.settings import get_settings

DAY = 86400.0
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
DECISION_HOUR = 6  # decisions are taken at 06:00 local for the day ahead
VISIT_SHARE = 0.7

# Per-channel truth, in catalogue order of the default channels (other channels get neutral values).
_DELIVERY = {
    "email": 0.97,
    "sms": 0.99,
    "push": 0.9,
    "in_app": 0.75,
    "web": 0.8,
    "direct_mail": 0.95,
    "call_center": 0.55,
    "paid_social": 0.6,
}
_OPEN = {
    "email": -0.4,
    "sms": 0.8,
    "push": -0.2,
    "in_app": 0.2,
    "web": -0.6,
    "direct_mail": 0.6,
    "call_center": 1.5,
    "paid_social": -1.4,
}
_CONV_LIFT = {"direct_mail": 0.6, "call_center": 1.6}  # channels that persuade more once engaged
_UNSUB = {"email": 0.004, "sms": 0.01, "push": 0.006, "call_center": 0.02, "direct_mail": 0.002}
# Channel preference by age band (rows: 18-24, 25-34, 35-44, 45-54, 55+), same channel order as _DELIVERY.
_AGE_AFFINITY = {
    "email": (-0.6, -0.2, 0.2, 0.4, 0.5),
    "sms": (0.3, 0.4, 0.2, 0.0, -0.3),
    "push": (0.9, 0.6, 0.1, -0.4, -0.9),
    "in_app": (0.8, 0.5, 0.0, -0.5, -1.0),
    "web": (0.2, 0.1, 0.0, -0.1, -0.3),
    "direct_mail": (-1.0, -0.7, -0.2, 0.4, 0.9),
    "call_center": (-1.2, -0.8, -0.3, 0.2, 0.8),
    "paid_social": (0.7, 0.3, -0.2, -0.6, -1.0),
}
_AGE_PEAK = (20.0, 19.0, 12.5, 9.5, 9.0)  # preferred local hour by age band
# Message effect by segment (rows: new, regular, vip, lapsed; columns: MESSAGES).
_MSG = (
    (1.0, 0.2, -0.2, -0.6, -0.6),
    (-0.5, 0.5, 0.2, 0.1, -0.4),
    (-0.6, -0.3, 0.8, 0.6, -0.5),
    (-0.4, 0.4, -0.3, -0.5, 1.0),
)
_SEG_CONV = (-1.6, -1.2, -0.8, -1.8)  # conversion offset by segment
_SEG_VALUE = (40.0, 55.0, 120.0, 35.0)  # mean order value by segment
_SEG_SHARE = (0.2, 0.45, 0.1, 0.25)
_AGE_SHARE = (0.14, 0.26, 0.24, 0.19, 0.17)
# Weekend effect by age band (Sat/Sun vs weekdays).
_AGE_WEEKEND = (0.3, 0.15, -0.2, -0.1, 0.2)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


@dataclass
class Truth:
    """Ground-truth parameters: population tables plus one row per customer."""

    channels: list[str]
    messages: list[str]
    timezones: list[str]
    customer_ids: list[str]
    tz: np.ndarray  # [N] index into timezones
    segment: np.ndarray  # [N] index into segment levels
    age: np.ndarray  # [N] index into age levels
    affinity: np.ndarray  # [N, C] logit
    peak: np.ndarray  # [N] preferred local hour
    mean_value: np.ndarray  # [N]
    delivery: np.ndarray  # [C]
    open_offset: np.ndarray  # [C]
    conv_lift: np.ndarray  # [C]
    unsub: np.ndarray  # [C]
    msg: np.ndarray  # [S, M]
    seg_conv: np.ndarray  # [S]
    weekend: np.ndarray  # [A]
    costs: np.ndarray  # [C]
    base: float = -0.3
    hour_amp: float = 1.3
    hour_width: float = 2.5
    click_offset: float = -1.0
    fatigue_total: float = 0.25
    fatigue_channel: float = 0.45

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, val in self.__dict__.items():
            out[key] = val.tolist() if isinstance(val, np.ndarray) else val
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Truth:
        arrays = {"tz", "segment", "age", "affinity", "peak", "mean_value", "delivery", "open_offset"}
        arrays |= {"conv_lift", "unsub", "msg", "seg_conv", "weekend", "costs"}
        kwargs: dict[str, Any] = {k: (np.asarray(v) if k in arrays else v) for k, v in data.items()}
        return cls(**kwargs)


class Oracle:
    """The TRUE expected conversion and value of any (customer, channel, send time, message) given its state.

    State = the sends of the 7 days before the send (overall and on that channel) and whether the channel is
    opted out; callers compute it from the touchpoint log (e.g. from the aggregate), as the simulator did.
    """

    def __init__(self, truth: Truth) -> None:
        self.truth = truth
        self.index = {cid: i for i, cid in enumerate(truth.customer_ids)}
        self.channel_index = {c: i for i, c in enumerate(truth.channels)}
        self.message_index = {m: i for i, m in enumerate(truth.messages)}
        self._zones = [ZoneInfo(z) for z in truth.timezones]
        self._offsets: dict[tuple[int, int], int] = {}

    @classmethod
    def load(cls, path: str | Path) -> Oracle:
        return cls(Truth.from_json(json.loads(Path(path).read_text())))

    def customers(self, ids: Any) -> np.ndarray:
        return np.array([self.index[str(c)] for c in ids], dtype=np.int64)

    def local_hour_dow(self, cust: np.ndarray, send_ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Local hour and weekday (Monday = 0) of each send, DST-aware (offsets cached per zone and hour)."""
        tz = self.truth.tz[cust]
        hours = (np.asarray(send_ts, dtype=np.float64) // 3600).astype(np.int64)
        offs = np.empty(len(hours), dtype=np.int64)
        for z, h in set(zip(tz.tolist(), hours.tolist(), strict=True)):
            if (z, h) not in self._offsets:
                off = datetime.fromtimestamp(h * 3600, UTC).astimezone(self._zones[z]).utcoffset()
                self._offsets[(z, h)] = int(off.total_seconds()) if off else 0
        offs[:] = [self._offsets[(z, h)] for z, h in zip(tz.tolist(), hours.tolist(), strict=True)]
        local = np.asarray(send_ts, dtype=np.float64) + offs
        local_hour = (local // 3600 % 24).astype(np.int64)
        dow = ((local // DAY).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
        return local_hour, dow

    def terms(
        self,
        cust: np.ndarray,
        channel: np.ndarray,
        local_hour: np.ndarray,
        dow: np.ndarray,
        message: np.ndarray,
        sends_7d: np.ndarray,
        ch_sends_7d: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The engagement logit and the conversion probability once visited (the simulator draws from these)."""
        t = self.truth
        diff = np.abs(local_hour - t.peak[cust])
        diff = np.minimum(diff, 24 - diff)
        weekend = (np.asarray(dow) >= 5).astype(np.float64)
        fatigue = t.fatigue_total * np.maximum(0, sends_7d - 2) + t.fatigue_channel * np.maximum(0, ch_sends_7d - 1)
        seg = t.segment[cust]
        eta = (
            t.base
            + t.affinity[cust, channel]
            + t.hour_amp * np.exp(-0.5 * (diff / t.hour_width) ** 2)
            + t.weekend[t.age[cust]] * weekend
            + t.msg[seg, message]
            - fatigue
        )
        p_cv = _sigmoid(t.seg_conv[seg] + 0.5 * t.msg[seg, message] + t.conv_lift[channel])
        return eta, p_cv

    def p_convert(
        self,
        cust: np.ndarray,
        channel: np.ndarray,
        local_hour: np.ndarray,
        dow: np.ndarray,
        message: np.ndarray,
        sends_7d: np.ndarray,
        ch_sends_7d: np.ndarray,
        opted_out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Probability that the send converts (arrays broadcast; indices into the truth tables)."""
        t = self.truth
        eta, p_cv = self.terms(cust, channel, local_hour, dow, message, sends_7d, ch_sends_7d)
        p = t.delivery[channel] * _sigmoid(eta + t.open_offset[channel]) * _sigmoid(eta + t.click_offset)
        p = p * VISIT_SHARE * p_cv
        if opted_out is not None:
            p = np.where(opted_out, 0.0, p)
        return np.asarray(p)

    def expected_value(self, cust: np.ndarray, channel: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Expected net value of a send: p x mean order value - channel cost."""
        t = self.truth
        return np.asarray(p * t.mean_value[cust] - t.costs[channel])


@dataclass
class SimConfig:
    customers: int = 20_000
    days: int = 90
    seed: int = 7
    end: date = DEFAULT_END
    exploration: float = 0.3
    late_join_share: float = 0.25
    no_history_share: float = 0.05  # customers who are never contacted (profiles only)


def _customer_truth(cfg: SimConfig, rng: np.random.Generator) -> Truth:
    settings = get_settings()
    channels = list(catalogue().names)
    n, c = cfg.customers, len(channels)
    segment = rng.choice(len(_SEG_SHARE), size=n, p=np.array(_SEG_SHARE))
    age = rng.choice(len(_AGE_SHARE), size=n, p=np.array(_AGE_SHARE))
    tz = rng.integers(0, len(TIMEZONES), size=n)
    age_aff = np.array([_AGE_AFFINITY.get(ch, (0.0,) * 5) for ch in channels]).T  # [A, C]
    affinity = age_aff[age] + rng.normal(0.0, 0.45, size=(n, c))
    affinity[segment == 2] += 0.3  # VIPs engage more everywhere
    peak = np.array(_AGE_PEAK)[age] + rng.normal(0.0, 1.5, size=n)
    mean_value = np.array(_SEG_VALUE)[segment] * rng.lognormal(0.0, 0.25, size=n)
    return Truth(
        channels=channels,
        messages=list(MESSAGES),
        timezones=list(TIMEZONES),
        customer_ids=[f"c{i:06d}" for i in range(n)],
        tz=tz,
        segment=segment,
        age=age,
        affinity=affinity,
        peak=peak,
        mean_value=mean_value,
        delivery=np.array([_DELIVERY.get(ch, 0.8) for ch in channels]),
        open_offset=np.array([_OPEN.get(ch, 0.0) for ch in channels]),
        conv_lift=np.array([_CONV_LIFT.get(ch, 0.0) for ch in channels]),
        unsub=np.array([_UNSUB.get(ch, 0.003) for ch in channels]),
        msg=np.array(_MSG),
        seg_conv=np.array(_SEG_CONV),
        weekend=np.array(_AGE_WEEKEND),
        costs=np.array([settings.channel_costs.get(ch, 0.0) for ch in channels]),
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


def simulate(cfg: SimConfig) -> dict[str, Any]:
    """Run the simulation; returns {"touchpoints", "profiles", "decisions": pa.Table, "truth": Truth}."""
    rng = np.random.default_rng(cfg.seed)
    truth = _customer_truth(cfg, rng)
    oracle = Oracle(truth)
    n, c, m, hn = cfg.customers, len(truth.channels), len(MESSAGES), len(SEND_HOURS)
    start = cfg.end - timedelta(days=cfg.days)
    local = _local_table(truth.timezones, start, cfg.days)
    chan = {name: i for i, name in enumerate(truth.channels)}
    settings = get_settings()

    join_day = np.where(rng.random(n) < cfg.late_join_share, rng.integers(1, max(2, cfg.days), size=n), 0)
    never = rng.random(n) < cfg.no_history_share
    cadence = rng.uniform(0.25, 0.7, size=n)  # business-as-usual contact probability per day
    consent = np.ones((n, c), dtype=bool)
    explicit: dict[str, np.ndarray] = {}
    for name in settings.consent_required:
        if name in chan:
            explicit[name] = rng.random(n) < 0.4
            consent[:, chan[name]] = explicit[name]
    opted_out = np.zeros((n, c), dtype=bool)
    opt_day = np.full((n, c), -1, dtype=np.int64)
    ring = np.zeros((8, n, c), dtype=np.float64)  # send timestamps of the last 8 days (<= 1 send a day)
    bau_order = [chan[x] for x in ("email", "push", "sms", "in_app") if x in chan] + list(range(c))

    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("cust", "day", "ch", "hour", "msg", "ts", "dec", "prop")}
    cols |= {"explore": [], "sends7": [], "chsends7": []}
    out_cols: dict[str, list[np.ndarray]] = {k: [] for k in ("row", "type", "ts", "value")}
    n_rows = 0
    etype = {t: i for i, t in enumerate(("sent", "delivered", "opened", "clicked", "visited", "converted"))}
    etype |= {"bounced": 6, "unsubscribed": 7}

    for d in range(cfg.days):
        allowed = consent & ~opted_out
        n_allowed = allowed.sum(axis=1)
        active = (join_day <= d) & ~never & (n_allowed > 0) & (rng.random(n) < cadence)
        idx = np.flatnonzero(active)
        k = len(idx)
        if k == 0:
            continue
        al = allowed[idx]
        # Business as usual: first open channel of bau_order, at BAU_HOUR, the campaign of the day.
        bau_ch = np.full(k, -1, dtype=np.int64)
        for ch in reversed(bau_order):
            bau_ch = np.where(al[:, ch], ch, bau_ch)
        bau_msg = d % m
        explore = rng.random(k) < cfg.exploration
        # Uniform draw among allowed channels: rank-select the j-th allowed channel.
        pick = (rng.random(k) * n_allowed[idx]).astype(np.int64)
        cum = np.cumsum(al, axis=1)
        rand_ch = np.argmax(cum > pick[:, None], axis=1)
        rand_hour = rng.integers(0, hn, size=k)
        rand_msg = rng.integers(0, m, size=k)
        ch_ = np.where(explore, rand_ch, bau_ch)
        hour_i = np.where(explore, rand_hour, SEND_HOURS.index(BAU_HOUR))
        msg_ = np.where(explore, rand_msg, bau_msg)
        uniform = cfg.exploration / (n_allowed[idx] * hn * m)
        is_bau = (ch_ == bau_ch) & (hour_i == SEND_HOURS.index(BAU_HOUR)) & (msg_ == bau_msg)
        prop = uniform + np.where(is_bau, 1.0 - cfg.exploration, 0.0)
        hour = np.array(SEND_HOURS)[hour_i]
        tz = truth.tz[idx]
        ts = local[tz, d, hour] + rng.integers(0, 600, size=k)  # within the first 10 minutes of the hour
        dec_ts = local[tz, d, DECISION_HOUR]
        recent = ring[:, idx, :]  # [8, k, C]
        window = (recent > 0) & (recent >= ts[None, :, None] - 7 * DAY)
        sends7 = window.sum(axis=(0, 2))
        chsends7 = window[:, np.arange(k), ch_].sum(axis=0)
        lh, dow = oracle.local_hour_dow(idx, ts)
        t = truth
        eta, p_cv = oracle.terms(idx, ch_, lh, dow, msg_, sends7, chsends7)
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
        ):
            cols[key].append(np.asarray(arr))
        n_rows += k

        # State for the following days: send ring, opt-outs (effective from the next day).
        ring[d % 8] = 0.0
        ring[d % 8, idx, ch_] = ts
        newly = unsub & ~opted_out[idx, ch_]
        opted_out[idx[newly], ch_[newly]] = True
        opt_day[idx[newly], ch_[newly]] = d

    sends = {k: np.concatenate(v) if v else np.array([]) for k, v in cols.items()}
    events = {k: np.concatenate(v) for k, v in out_cols.items()}
    return {
        "truth": truth,
        "decisions": _decisions_table(truth, sends, MESSAGES),
        "touchpoints": _touchpoints_table(truth, sends, events, etype),
        "profiles": _profiles_table(truth, explicit, join_day, cfg),
    }


def _decision_ids(sends: dict[str, np.ndarray]) -> np.ndarray:
    return np.char.add(
        np.char.add("d", np.char.zfill(sends["day"].astype(str), 3)),
        np.char.add("-", np.char.zfill(sends["cust"].astype(str), 6)),
    )


def _ts(values: np.ndarray) -> pa.Array:
    return pa.array((np.asarray(values) * 1e6).astype("int64"), type=pa.timestamp("us", tz="UTC"))


def _decisions_table(truth: Truth, sends: dict[str, np.ndarray], messages: tuple[str, ...]) -> pa.Table:
    ids = np.array(truth.customer_ids)
    return pa.table(
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
