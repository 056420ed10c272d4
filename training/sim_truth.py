"""The simulator's ground truth: the population's parameters, each customer's hidden traits (`Truth`, stored as
truth.json) and the `Oracle` that turns them into exact expected conversions and values of any action.

`training.simulate` draws a population from these tables and runs a logging policy on it (its docstring describes
the model); `bench/ceiling.py` redraws the hidden traits from the same prior (`affinity`, `organic_rate`,
`persuadability` and the spreads below).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

DAY = 86400.0
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
# Organic conversions: mean daily hazard by segment, the per-customer log-normal spread, the log-hazard per
# unit of mean channel affinity (engaged customers also buy more on their own), and the suppression a
# delivered send to a fatigued customer puts on the hazard for the next _SUPPRESS_DAYS.
_SEG_ORGANIC = (0.015, 0.018, 0.036, 0.006)
_ORGANIC_SD = 1.4
_ORGANIC_ENGAGED = 1.5
_ORGANIC_FATIGUE = 2.0
_ORGANIC_FATIGUE_FREE = 2
_SUPPRESS_DAYS = 1.0
_PERSUADE_SD = 1.8  # spread of persuadability (conversion logit once visited) across customers
_PERSUADE_RHO = 0.9  # its negative correlation with the organic random effect
AFFINITY_SD = 0.45  # per-customer spread of each channel affinity around its age band's
PEAK_SD = 1.5  # per-customer spread of the preferred local hour around its age band's (hours)
VIP = 2  # segment index of the VIPs
VIP_AFFINITY = 0.3  # VIPs engage more everywhere
# Drift: where the parameters are at the end of the period (linear from the start).
_DRIFT_SEG_CONV = (0.5, -0.6, 0.3, -0.5)  # added to the conversion offset by segment
_DRIFT_SEG_ORGANIC = (0.6, -0.5, 0.4, -0.6)  # log multiplier of the organic hazard by segment
_DRIFT_CHANNEL = {
    "email": -0.8,
    "sms": 0.3,
    "push": 0.6,
    "in_app": 0.5,
    "web": 0.2,
    "direct_mail": -0.5,
    "call_center": -0.4,
    "paid_social": 0.8,
}
_DRIFT_AGE_SCALE = (1.3, 1.15, 1.0, 0.85, 0.7)  # channel drift x this, by age band
_DRIFT_PEAK = (-4.0, -3.0, 3.0, 3.0, 2.5)  # hours added to the preferred local hour, by age band


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def affinity(age_affinity: np.ndarray, noise: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Channel affinities [N, C]: the age band's, plus each customer's own `noise` (sd AFFINITY_SD), VIPs higher."""
    out = age_affinity + noise
    out[segment == VIP] += VIP_AFFINITY
    return np.asarray(out)


def organic_rate(segment: np.ndarray, z0: np.ndarray, engaged: np.ndarray, engaged_mean: float) -> np.ndarray:
    """Daily organic hazard: the segment's level x a log-normal effect (standard normal `z0`, mean 1 on the hazard
    scale), higher for customers who engage more (`engaged`: mean channel affinity, centred on `engaged_mean`)."""
    effect = _ORGANIC_SD * z0 - 0.5 * _ORGANIC_SD**2
    return np.asarray(np.array(_SEG_ORGANIC)[segment] * np.exp(effect + _ORGANIC_ENGAGED * (engaged - engaged_mean)))


def persuadability(z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
    """Added to the conversion logit once visited. Sure things: who buys anyway (high organic effect `z0`) is less
    moved by a contact; `z1` is the independent part."""
    return np.asarray(_PERSUADE_SD * (-_PERSUADE_RHO * z0 + np.sqrt(1.0 - _PERSUADE_RHO**2) * z1))


_ARRAYS = {"tz", "segment", "age", "affinity", "peak", "mean_value", "delivery", "open_offset", "conv_lift"}
_ARRAYS |= {"unsub", "msg", "seg_conv", "weekend", "costs", "organic_rate", "seg_conv_end", "organic_drift"}
_ARRAYS |= {"affinity_drift", "peak_drift", "persuade"}


@dataclass
class Truth:
    """Ground-truth parameters: population tables plus one row per customer.

    The fields after `fatigue_channel` came with organic conversions and drift; a truth.json written before
    them loads with their defaults (no organic conversions, no drift).
    """

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
    organic_rate: np.ndarray | None = None  # [N] daily organic conversion hazard (at the start); None: none
    persuade: np.ndarray | None = None  # [N] added to the conversion logit once visited (comes with organic)
    organic_fatigue: float = _ORGANIC_FATIGUE  # hazard x exp(-this x excess sends) after a fatiguing send
    organic_fatigue_free: int = _ORGANIC_FATIGUE_FREE  # sends in the 7 days before a send that do not fatigue
    window_days: float = 7.0  # attribution window: the horizon of p_organic and p_convert
    suppress_days: float = _SUPPRESS_DAYS  # how long a fatiguing send suppresses the organic hazard
    period: list[float] = field(default_factory=lambda: [0.0, 1.0])  # [start, end) epoch seconds
    drift: bool = False
    seg_conv_end: np.ndarray | None = None  # [S] conversion offset at the end of the period (drift)
    organic_drift: np.ndarray | None = None  # [S] log multiplier of the organic hazard at the end (drift)
    affinity_drift: np.ndarray | None = None  # [A, C] added to the affinity at the end (drift)
    peak_drift: np.ndarray | None = None  # [A] hours added to the preferred hour at the end (drift)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, val in self.__dict__.items():
            out[key] = val.tolist() if isinstance(val, np.ndarray) else val
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Truth:
        kwargs: dict[str, Any] = {k: (np.asarray(v) if k in _ARRAYS and v is not None else v) for k, v in data.items()}
        return cls(**kwargs)


class Oracle:
    """The TRUE expected conversions and values of any (customer, channel, send time, message) given its state.

    State = the sends of the 7 days before the send (overall and on that channel) and whether the channel is
    opted out; callers compute it from the touchpoint log (e.g. from the aggregate), as the simulator did.
    Arrays broadcast; customers, channels and messages are indices into the truth tables. With drift, pass
    the send instants (`send_ts`, epoch seconds): the parameters at that instant are used (a ValueError
    otherwise); without drift they are optional.

    With q = p_response, d = delivery, lam = organic_hazard (per day), H = lam x window and
    L = lam x suppress_days x (1 - exp(-organic_fatigue x excess sends)), the organic hazard a delivered
    fatiguing send takes away:

    * `p_response`: probability that the send's own funnel converts (what the simulator draws per send);
    * `p_organic(cust, ts)`: probability of at least one conversion within the attribution window after ts
      WITHOUT a contact: 1 - exp(-H);
    * `p_convert`: probability of at least one conversion (the send's or organic) within the attribution
      window WITH the contact: 1 - (d - q) exp(L - H) - (1 - d) exp(-H); on a closed channel (opted_out) the
      send is not delivered: p_organic;
    * `expected_value(cust, channel, p)`: p x mean order value - cost; with p_convert: the value WITH contact;
    * `lift`: expected extra conversions within the window caused by the contact, q - d L (can be < 0);
    * `incremental_value`: lift x mean order value - cost, the expected conversion value of the action minus
      that of not contacting, net of cost: what the action earns over "don't contact" (0 on this scale).
      Values count every conversion, so lifts add up over sends; (p_convert - p_organic) is the lift in
      "converted at least once" (the conversion objective's), smaller when the customer may buy twice.

    Without organic conversions (SimConfig.organic=False, or a truth.json from before them) p_organic is 0,
    p_convert is p_response and incremental_value is expected_value(p_convert): "with contact" and
    "incremental" coincide, as before. A send is valued as if no later send fell in its window.
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

    def phase(self, ts: Any) -> np.ndarray:
        """Where `ts` (epoch seconds) lies in the simulated period: 0 at its start, 1 at its end (clipped)."""
        if ts is None:
            raise ValueError("this truth drifts: pass the send instants (send_ts, epoch seconds)")
        start, end = self.truth.period
        return np.asarray(np.clip((np.asarray(ts, dtype=np.float64) - start) / max(end - start, 1.0), 0.0, 1.0))

    def terms(
        self,
        cust: np.ndarray,
        channel: np.ndarray,
        local_hour: np.ndarray,
        dow: np.ndarray,
        message: np.ndarray,
        sends_7d: np.ndarray,
        ch_sends_7d: np.ndarray,
        send_ts: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The engagement logit and the conversion probability once visited (the simulator draws from these)."""
        t = self.truth
        affinity = t.affinity[cust, channel]
        peak = t.peak[cust]
        seg = t.segment[cust]
        seg_conv = t.seg_conv[seg]
        if t.drift:
            assert t.affinity_drift is not None
            assert t.peak_drift is not None
            assert t.seg_conv_end is not None
            phase = self.phase(send_ts)
            age = t.age[cust]
            affinity = affinity + phase * t.affinity_drift[age, channel]
            peak = peak + phase * t.peak_drift[age]
            seg_conv = seg_conv + phase * (t.seg_conv_end[seg] - t.seg_conv[seg])
        diff = np.abs(local_hour - peak)
        diff = np.minimum(diff, 24 - diff)
        weekend = (np.asarray(dow) >= 5).astype(np.float64)
        fatigue = t.fatigue_total * np.maximum(0, sends_7d - 2) + t.fatigue_channel * np.maximum(0, ch_sends_7d - 1)
        eta = (
            t.base
            + affinity
            + t.hour_amp * np.exp(-0.5 * (diff / t.hour_width) ** 2)
            + t.weekend[t.age[cust]] * weekend
            + t.msg[seg, message]
            - fatigue
        )
        if t.persuade is not None:
            seg_conv = seg_conv + t.persuade[cust]
        p_cv = _sigmoid(seg_conv + 0.5 * t.msg[seg, message] + t.conv_lift[channel])
        return eta, p_cv

    def p_response(
        self,
        cust: np.ndarray,
        channel: np.ndarray,
        local_hour: np.ndarray,
        dow: np.ndarray,
        message: np.ndarray,
        sends_7d: np.ndarray,
        ch_sends_7d: np.ndarray,
        opted_out: np.ndarray | None = None,
        *,
        send_ts: np.ndarray | None = None,
    ) -> np.ndarray:
        """Probability that the send's own funnel converts (delivered, opened, clicked, visited, bought)."""
        t = self.truth
        eta, p_cv = self.terms(cust, channel, local_hour, dow, message, sends_7d, ch_sends_7d, send_ts)
        p = t.delivery[channel] * _sigmoid(eta + t.open_offset[channel]) * _sigmoid(eta + t.click_offset)
        p = p * VISIT_SHARE * p_cv
        if opted_out is not None:
            p = np.where(opted_out, 0.0, p)
        return np.asarray(p)

    def organic_hazard(self, cust: np.ndarray, ts: np.ndarray | None = None) -> np.ndarray:
        """Daily hazard of an organic conversion (no contact) at `ts`; 0 without organic conversions."""
        t = self.truth
        cust = np.asarray(cust)
        if t.organic_rate is None:
            shape = cust.shape if ts is None else np.broadcast(cust, np.asarray(ts)).shape
            return np.zeros(shape)
        rate = t.organic_rate[cust]
        if t.drift:
            assert t.organic_drift is not None
            rate = rate * np.exp(self.phase(ts) * t.organic_drift[t.segment[cust]])
        return np.asarray(rate, dtype=np.float64)

    def p_organic(self, cust: np.ndarray, ts: np.ndarray | None = None, window_days: float | None = None) -> np.ndarray:
        """Probability of at least one conversion within the attribution window after `ts`, without contact."""
        window = self.truth.window_days if window_days is None else window_days
        return np.asarray(-np.expm1(-self.organic_hazard(cust, ts) * window))

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
        *,
        send_ts: np.ndarray | None = None,
    ) -> np.ndarray:
        """Probability of at least one conversion within the attribution window WITH this contact.

        Without organic conversions: the send's own conversion (`p_response`), 0 on a closed channel.
        """
        t = self.truth
        q = self.p_response(cust, channel, local_hour, dow, message, sends_7d, ch_sends_7d, send_ts=send_ts)
        if t.organic_rate is None:
            return q if opted_out is None else np.asarray(np.where(opted_out, 0.0, q))
        rate = self.organic_hazard(cust, send_ts)
        h = rate * t.window_days
        s = np.exp(-t.organic_fatigue * np.maximum(0, np.asarray(sends_7d) - t.organic_fatigue_free))
        lost = rate * min(t.suppress_days, t.window_days) * (1.0 - s)  # hazard a delivered send takes away
        d = t.delivery[channel]
        p = 1.0 - (d - q) * np.exp(lost - h) - (1.0 - d) * np.exp(-h)
        if opted_out is not None:
            p = np.where(opted_out, -np.expm1(-h), p)
        return np.asarray(p)

    def expected_value(self, cust: np.ndarray, channel: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Expected net value of a send: p x mean order value - channel cost (p_convert: the value with contact)."""
        t = self.truth
        return np.asarray(p * t.mean_value[cust] - t.costs[channel])

    def lift(
        self,
        cust: np.ndarray,
        channel: np.ndarray,
        local_hour: np.ndarray,
        dow: np.ndarray,
        message: np.ndarray,
        sends_7d: np.ndarray,
        ch_sends_7d: np.ndarray,
        opted_out: np.ndarray | None = None,
        *,
        send_ts: np.ndarray | None = None,
    ) -> np.ndarray:
        """Expected extra conversions within the attribution window that the contact causes over not
        contacting: its own response minus the organic conversions it suppresses (negative when that is
        more); 0 on a closed channel. Expected counts add up over sends, so a policy's lift is their sum."""
        t = self.truth
        q = self.p_response(cust, channel, local_hour, dow, message, sends_7d, ch_sends_7d, send_ts=send_ts)
        if t.organic_rate is not None:
            s = np.exp(-t.organic_fatigue * np.maximum(0, np.asarray(sends_7d) - t.organic_fatigue_free))
            rate = self.organic_hazard(cust, send_ts)
            q = q - t.delivery[channel] * rate * min(t.suppress_days, t.window_days) * (1.0 - s)
        if opted_out is not None:
            q = np.where(opted_out, 0.0, q)
        return np.asarray(q)

    def incremental_value(
        self,
        cust: np.ndarray,
        channel: np.ndarray,
        send_ts: np.ndarray | None,
        message: np.ndarray,
        sends_7d: np.ndarray,
        ch_sends_7d: np.ndarray,
        opted_out: np.ndarray | None = None,
        *,
        local_hour: np.ndarray | None = None,
        dow: np.ndarray | None = None,
    ) -> np.ndarray:
        """Value of the action minus the value of not contacting, minus its cost: `lift` x mean order value -
        cost, in expected conversion value within the window. "Don't contact" is worth exactly 0 on this scale.

        Local hour and weekday are computed from `send_ts` unless given (then `send_ts` may be None when the
        truth does not drift). A closed channel (opted_out) lifts nothing: -cost. Without organic conversions
        this is expected_value(p_convert), as before.
        """
        if local_hour is None or dow is None:
            if send_ts is None:
                raise ValueError("pass send_ts, or local_hour and dow")
            shape = np.broadcast(np.asarray(cust), np.asarray(send_ts)).shape
            hours, days = self.local_hour_dow(
                np.broadcast_to(cust, shape).ravel(), np.broadcast_to(send_ts, shape).ravel()
            )
            local_hour, dow = hours.reshape(shape), days.reshape(shape)
        lift = self.lift(cust, channel, local_hour, dow, message, sends_7d, ch_sends_7d, opted_out, send_ts=send_ts)
        t = self.truth
        return np.asarray(lift * t.mean_value[cust] - t.costs[channel])
