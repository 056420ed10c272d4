"""Contrastive reasons: why this channel over the runner-up, this hour over the next best, this message.

One attribution method on every scoring path: the model's per-feature path contributions (Saabas) of the
chosen cell and of a contrast cell. A feature is a reason when its value differs between the two cells and
its contribution favours the chosen one; the text quotes the customer's own numbers (from the aggregate the
model scored), and a feature is never cited when the customer has no history behind it (no sends on either
channel, no engagement at any hour, ...). Customer-level features (attributes, totals, fatigue) have the same
value in both cells, so they are never a contrastive reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from model.domain.aggregate import CLICKED, CONVERTED, OPENED, SENT, VISITED, Aggregate
from model.domain.features import CHANNEL_FEATURES, MESSAGE_FEATURES, NEVER, SLOT_FEATURES, FeatureLayout
from model.domain.recommend_schemas import Reason

FloatArray = npt.NDArray[np.float64]
Cell = tuple[int, int, int]  # (channel, slot, message) indices of the grid
PER_KIND = {"channel": 2, "hour": 2, "message": 1}  # features cited per contrast
GROUPS = {"channel": CHANNEL_FEATURES, "hour": SLOT_FEATURES, "message": MESSAGE_FEATURES}
# Features whose better side everyone agrees on (+1: more is better, -1: less is better). A tree may still credit
# the worse side (an interaction, a threshold learned from few customers); such a credit is not cited, as
# "10:00 over 09:00: responds at 0.3x vs 1.5x" would mislead.
DIRECTION = {
    "ch_open_rate": 1,
    "ch_click_rate": 1,
    "ch_conversion_rate": 1,
    "ch_engagement_share": 1,
    "hour_engagement_share": 1,
    "dow_engagement_share": 1,
    "hour_response_lift": 1,
    "ch_days_since_engaged": -1,
    "ch_sends_1d": -1,
    "ch_sends_7d": -1,
    "ch_bounced": -1,
}
_MESSAGE_AT = len(CHANNEL_FEATURES) + len(SLOT_FEATURES)  # the groups' order after the customer's (features.py)


@dataclass(frozen=True)
class Option:
    """One grid cell as a reason speaks of it: what it is, its scores, its feature values and contributions."""

    channel: str
    code: int  # catalogue index
    send_ts: float  # epoch seconds
    zone: ZoneInfo
    message: str | None
    p: float
    ev: float
    values: FloatArray  # the model's feature row
    contrib: FloatArray  # per-feature contributions (log-odds), without the bias
    outcome: str = "conversion"  # what `p` predicts: the model's objective (click, visit, conversion or value)

    @property
    def score(self) -> str:
        """The prediction in words: "visit 4.1%", or for a value model "predicted value 12.30"."""
        return f"predicted value {money(self.p)}" if self.outcome == "value" else f"{self.outcome} {pct(self.p)}"

    @cached_property
    def local(self) -> datetime:
        return datetime.fromtimestamp(self.send_ts, self.zone)

    @property
    def utc_hour(self) -> int:
        return int(self.send_ts // 3600) % 24

    @property
    def utc_dow(self) -> int:
        return (int(self.send_ts // 3600) // 24 + 3) % 7  # as the slot features count it (Monday = 0)


def contrast_cells(scores: FloatArray, local_hours: npt.NDArray[np.float64], pick: Cell) -> dict[str, Cell | None]:
    """The cells a pick is contrasted with: the best allowed cell of another channel (the runner-up
    channel), of the same channel and message at another local hour (else another slot), and of the same
    channel and slot with another message; None where there is none. `scores` is the expected value where
    the rules allow the cell, -inf elsewhere."""
    c, s, m = pick
    n_c = scores.shape[0]
    per_channel = scores.reshape(n_c, -1)
    best = per_channel.max(axis=1)
    best[c] = -np.inf
    out: dict[str, Cell | None] = {"channel": None, "hour": None, "message": None}
    if np.isfinite(best).any():
        rc = int(np.argmax(best))
        rs, rm = np.unravel_index(int(np.argmax(per_channel[rc])), scores.shape[1:])
        out["channel"] = (rc, int(rs), int(rm))
    hours = scores[c, :, m].copy()
    other_hour = np.where(local_hours != local_hours[s], hours, -np.inf)
    if not np.isfinite(other_hour).any():
        other_hour = hours
        other_hour[s] = -np.inf
    if np.isfinite(other_hour).any():
        out["hour"] = (c, int(np.argmax(other_hour)), m)
    messages = scores[c, s, :].copy()
    messages[m] = -np.inf
    if np.isfinite(messages).any():
        out["message"] = (c, s, int(np.argmax(messages)))
    return out


def contrastive(kind: str, a: Option, b: Option, layout: FeatureLayout, agg: Aggregate) -> list[Reason]:
    """Why `a` over (or rather than) `b` for one kind of choice: the features of that choice's group whose
    values differ and whose contributions favour `a`, strongest first, each in words with the numbers."""
    start = len(layout.customer) + {"channel": 0, "hour": len(CHANNEL_FEATURES), "message": _MESSAGE_AT}[kind]
    head = _headline(kind, a, b)
    if _tie(a, b):  # equal to the shown precision: feature credits would explain noise
        return [_totals(kind, a, b, head)]
    reasons: list[Reason] = []
    diffs = []
    for j, name in enumerate(GROUPS[kind], start):
        va, vb = float(a.values[j]), float(b.values[j])
        if _same(va, vb) or (va - vb) * DIRECTION.get(name, 0) < 0:
            continue
        diff = float(a.contrib[j] - b.contrib[j])
        if diff > 0:
            diffs.append((diff, j, name))
    for diff, j, name in sorted(diffs, reverse=True):
        phrase = PHRASES[name](a, b, agg, j)
        if phrase is None:  # no history behind it: never cited
            continue
        reasons.append(
            Reason.model_construct(  # built from checked values: pydantic's validation would double the cost
                kind=kind,
                feature=name,
                description=layout.describe(name),
                contribution=diff,
                text=f"{head}: {phrase}" if not reasons else phrase,  # the comparison is said once per kind
                value=_finite(a.values[j]),
                versus=_label(kind, b, a),
                versus_value=_finite(b.values[j]),
            )
        )
        if len(reasons) == PER_KIND[kind]:
            break
    if not reasons:  # nothing in this group speaks for it: the totals alone
        reasons.append(_totals(kind, a, b, head))
    return reasons


def _tie(a: Option, b: Option) -> bool:
    return pct(a.p) == pct(b.p) and money(a.ev) == money(b.ev)


def _totals(kind: str, a: Option, b: Option, head: str) -> Reason:
    """The comparison of the two options' totals, without feature credits (a tie says so)."""
    if _tie(a, b):
        la, lb = _label(kind, a, b), _label(kind, b, a)
        head = f"{la} and {lb} are as good for this customer ({a.score}, expected value {money(a.ev)})"
    return Reason.model_construct(
        kind=kind,
        feature="expected_value",
        description="the expected value of contacting (incremental conversion value minus cost)",
        contribution=float(a.contrib.sum() - b.contrib.sum()),
        text=head,
        value=a.ev,
        versus=_label(kind, b, a),
        versus_value=b.ev,
    )


def only_channel(a: Option, closed: Sequence[str]) -> Reason:
    """The reason when a single channel is open: the request's only channel, or the rules closed the others."""
    text = (
        f"{a.channel} is the only channel the rules leave open (closed: {', '.join(closed)})"
        if closed
        else f"{a.channel} is the only channel requested"
    )
    return Reason(
        kind="rules",
        feature="channel",
        description="the channels the hard rules leave open",
        contribution=0.0,
        text=text,
        value=float(a.code),
    )


def heuristic_reason(channel: str, agg: Aggregate, code: int, p: float) -> Reason:
    """The fallback heuristic's one signal, with the counts behind it."""
    sent, conv = agg.counts[code][SENT], agg.counts[code][CONVERTED]
    history = f"{_n(conv, 'conversion')} after {_n(sent, channel + ' send')}" if sent else f"no {channel} sends yet"
    return Reason(
        kind="heuristic",
        feature="ch_conversion_rate",
        description="the customer's smoothed conversion rate on this channel (heuristic: no model available)",
        contribution=p,
        text=f"{channel}: {history}, smoothed conversion rate {pct(p)} (no model is loaded)",
        value=p,
    )


# ------------------------------------------------------------------ words and numbers


def pct(p: float) -> str:
    return f"{100 * p:.1f}%" if p >= 0.01 else f"{100 * p:.2f}%"


def money(x: float) -> str:
    return f"{x:,.2f}"


def _n(count: float, noun: str) -> str:
    n = round(count)
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _same(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _label(kind: str, o: Option, other: Option) -> str:
    if kind == "channel":
        return o.channel
    if kind == "message":
        return o.message or "no message"
    local = o.local
    return local.strftime("%H:%M") if local.date() == other.local.date() else local.strftime("%a %H:%M")


def _headline(kind: str, a: Option, b: Option) -> str:
    la, lb = _label(kind, a, b), _label(kind, b, a)
    if kind == "hour":
        la, lb = f"{la} local", lb
    if kind == "message":
        la, lb = f"message {la}", lb
    word = "over" if a.ev >= b.ev else "rather than"
    scores = f"{a.score} vs {b.score.split(' ')[-1]}"
    return f"{la} {word} {lb} ({scores}, expected value {money(a.ev)} vs {money(b.ev)})"


def _days(d: float) -> str:
    if d >= NEVER:
        return "never"
    if d < 1:
        return "today"
    return f"{d:.0f} day{'' if round(d) == 1 else 's'} ago"


def _count(event: int, what: str) -> Callable[[Option, Option, Aggregate, int], str | None]:
    def phrase(a: Option, b: Option, agg: Aggregate, j: int) -> str | None:
        sa, sb = agg.counts[a.code][SENT], agg.counts[b.code][SENT]
        if not (sa or sb):
            return None
        ea, eb = agg.counts[a.code][event], agg.counts[b.code][event]
        return f"{_n(ea, a.channel + ' ' + what)} in {_n(sa, 'send')} vs {eb:,} in {sb:,} on {b.channel}"

    return phrase


def _engagement_share(a: Option, b: Option, agg: Aggregate, j: int) -> str | None:
    def engaged(code: int) -> int:
        row = agg.counts[code]
        return row[OPENED] + row[CLICKED] + row[VISITED] + row[CONVERTED]

    total = sum(engaged(c) for c in range(len(agg.counts)))
    if not total:
        return None
    return (
        f"{engaged(a.code) / total:.0%} of the customer's engagement is on {a.channel} vs "
        f"{engaged(b.code) / total:.0%} on {b.channel}"
    )


def _channel_days(what: str) -> Callable[[Option, Option, Aggregate, int], str | None]:
    def phrase(a: Option, b: Option, agg: Aggregate, j: int) -> str | None:
        da, db = float(a.values[j]), float(b.values[j])
        if _days(da) == _days(db):  # never on both, or the same day count in words
            return None
        return f"{what} on {a.channel} {_days(da)}, on {b.channel} {_days(db)}"

    return phrase


def _channel_number(noun: str, window: str) -> Callable[[Option, Option, Aggregate, int], str | None]:
    def phrase(a: Option, b: Option, agg: Aggregate, j: int) -> str | None:
        na, nb = float(a.values[j]), float(b.values[j])
        if not (na or nb):  # no sends / bounces at all: nothing to cite
            return None
        return f"{_n(na, a.channel + ' ' + noun)}{window} vs {int(nb):,} on {b.channel}"

    return phrase


def _channel_itself(a: Option, b: Option, agg: Aggregate, j: int) -> str | None:
    return f"{a.channel} does better than {b.channel} for customers like this one"


def _hour_itself(a: Option, b: Option, agg: Aggregate, j: int) -> str | None:
    return f"sends at {a.local:%H:%M} local do better than at {b.local:%H:%M} for customers like this one"


def _dow_itself(a: Option, b: Option, agg: Aggregate, j: int) -> str | None:
    return f"sends on {a.local:%A} do better than on {b.local:%A} for customers like this one"


def _hour_engagement(a: Option, b: Option, agg: Aggregate, j: int) -> str | None:
    if not sum(agg.how):
        return None
    ea = sum(agg.how[d * 24 + a.utc_hour] for d in range(7))
    eb = sum(agg.how[d * 24 + b.utc_hour] for d in range(7))
    return f"the customer engaged {_n(ea, 'time')} around {a.local:%H:%M} vs {eb:,} around {b.local:%H:%M}"


def _dow_engagement(a: Option, b: Option, agg: Aggregate, j: int) -> str | None:
    if not sum(agg.how):
        return None
    ea = sum(agg.how[a.utc_dow * 24 : a.utc_dow * 24 + 24])
    eb = sum(agg.how[b.utc_dow * 24 : b.utc_dow * 24 + 24])
    return f"the customer engaged {_n(ea, 'time')} on {a.local:%A}s vs {eb:,} on {b.local:%A}s"


def _response_lift(a: Option, b: Option, agg: Aggregate, j: int) -> str | None:
    if not sum(agg.sent_hod):
        return None
    return (
        f"the customer responds at {float(a.values[j]):.1f}x their usual rate to sends around {a.local:%H:%M} "
        f"vs {float(b.values[j]):.1f}x around {b.local:%H:%M}"
    )


def _message_itself(a: Option, b: Option, agg: Aggregate, j: int) -> str | None:
    return f"{a.message or 'no message'} does better than {b.message or 'no message'} for customers like this one"


PHRASES: dict[str, Callable[[Option, Option, Aggregate, int], str | None]] = {
    "channel": _channel_itself,
    "ch_sent": _channel_number("message", " sent so far"),
    "ch_open_rate": _count(OPENED, "open"),
    "ch_click_rate": _count(CLICKED, "click"),
    "ch_conversion_rate": _count(CONVERTED, "conversion"),
    "ch_engagement_share": _engagement_share,
    "ch_days_since_engaged": _channel_days("last engaged"),
    "ch_days_since_sent": _channel_days("last contacted"),
    "ch_sends_1d": _channel_number("send", " in the last day"),
    "ch_sends_7d": _channel_number("send", " in the last 7 days"),
    "ch_bounced": _channel_number("bounce", ""),
    "local_hour": _hour_itself,
    "local_dow": _dow_itself,
    "hour_engagement_share": _hour_engagement,
    "dow_engagement_share": _dow_engagement,
    "hour_response_lift": _response_lift,
    "message": _message_itself,
}
