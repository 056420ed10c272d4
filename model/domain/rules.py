"""The hard rules: ONE definition of the candidate grid and what consent, quiet hours and caps leave of it.

Serving (`model.domain.decide`) and offline evaluation (`training.ope.contexts`) both call `candidate_grid`,
so the policy a model is judged by offline is the policy it serves (a parity test holds them equal).

1. Candidates: channels x hourly send slots (from the next full hour, `horizon_hours` of them) x messages
   (per channel). With a message catalogue (settings ``messages``) a message is a candidate only on the
   channels the catalogue lists for it; "no message" is not subject to the catalogue.
2. Rules remove candidates before ranking and are never traded off, in this order: consent (the profile's,
   explicit or the channel's configured opt-in requirement, and opt-outs folded into the aggregate), quiet
   hours in the customer's own time zone (DST-aware through zoneinfo), then frequency caps per channel (day
   before week) and over all channels, counted over the window ending at each slot and including the
   decision's own send, then the catalogue's dates of each message (``message_window``). The trace says how
   many candidates each rule removed.

Quiet hours per channel: a channel with its own window (``[channels.X] quiet_hours``) uses it instead of the
default window; the customer's own profile window is the floor: it always applies, on every channel. A
channel without its own window uses the customer's window, else the default (as before channels had any).

Cost of a candidate (`Grid.costs`): the channel's cost of one contact plus the message's catalogue cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Protocol

import numpy as np
import numpy.typing as npt

from model.domain.aggregate import DAY, Aggregate
from model.domain.catalogue import catalogue
from model.domain.recommend_schemas import DEFAULT_HORIZON_HOURS, RuleCount
from model.domain.schemas import Profile
from model.domain.settings import Settings

HOUR = 3600.0
WEEK = 7 * DAY
__all__ = ["DEFAULT_HORIZON_HOURS", "Grid", "candidate_grid", "message_costs", "send_counts", "send_slots"]


class QuietWindow(Protocol):
    """A daily local window (the profile's QuietHours or a configured TimeWindow)."""

    @property
    def start(self) -> time: ...

    @property
    def end(self) -> time: ...

    def contains(self, local: time) -> bool: ...

    def label(self) -> str: ...


@dataclass
class Grid:
    """The candidate grid of one decision and what the rules left of it."""

    channels: list[str]
    codes: list[int]
    messages: list[str | None]
    slots: npt.NDArray[np.float64]  # send instants, epoch seconds
    valid: npt.NDArray[np.bool_]  # (C, M): message offered on that channel
    allowed: npt.NDArray[np.bool_]  # (C, S, M) after the hard rules
    trace: list[RuleCount]
    candidates: int
    costs: npt.NDArray[np.float64]  # (C, 1, M): channel cost + message cost of one contact


def message_costs(messages: Sequence[str | None], settings: Settings) -> npt.NDArray[np.float64]:
    """(M,) the catalogue cost of each message (0 for no message or a message outside the catalogue)."""
    cat = settings.message_catalogue
    return np.array([cat[m].cost if m is not None and m in cat else 0.0 for m in messages], dtype=np.float64)


def _awake(window: QuietWindow | None, local: Sequence[time]) -> npt.NDArray[np.bool_]:
    """(S,) True where the slot's local time is outside `window` (None or an empty window: every slot)."""
    if window is None or window.start == window.end:
        return np.ones(len(local), dtype=bool)
    return np.array([not window.contains(t) for t in local], dtype=bool)


def send_slots(now: datetime, horizon_hours: int) -> npt.NDArray[np.float64]:
    """Hourly send instants from `now` rounded up to the next full hour."""
    first = math.ceil(now.timestamp() / HOUR) * HOUR
    return first + HOUR * np.arange(horizon_hours, dtype=np.float64)


def send_counts(agg: Aggregate, slots: npt.NDArray[np.float64], widths: Sequence[float]) -> list[npt.NDArray[np.int64]]:
    """Per width: (channels, slots), each channel's recorded sends in (t - width, t] for every slot instant t."""
    lengths = [len(s) for s in agg.recent_sends]
    if not any(lengths):
        return [np.zeros((len(lengths), len(slots)), dtype=np.int64) for _ in widths]
    sends = np.fromiter((t for s in agg.recent_sends for t in s), dtype=np.float64, count=sum(lengths))
    channel = np.repeat(np.arange(len(lengths)), lengths)
    before = sends[:, None] <= slots[None, :]  # (sends, slots)
    out = []
    for width in widths:
        counts = np.zeros((len(lengths), len(slots)), dtype=np.int64)
        np.add.at(counts, channel, (before & (sends[:, None] > slots[None, :] - width)).astype(np.int64))
        out.append(counts)
    return out


def candidate_grid(
    channels: Sequence[str] | None,
    messages: dict[str, list[str]] | None,
    default_messages: Sequence[str],
    horizon_hours: int,
    agg: Aggregate,
    profile: Profile,
    now: datetime,
    settings: Settings,
) -> Grid:
    """Candidates and the hard rules (consent, quiet hours, caps) applied in that order.

    `channels` None means every channel of the catalogue; a channel without an entry in `messages` is offered
    `default_messages` (the model's message levels), or no message at all when there are none.
    """
    cat = catalogue()
    names = list(channels) if channels else list(cat.names)
    codes = [cat.code(c) for c in names]
    requested = messages or {}
    per_channel: list[list[str | None]] = [
        list(requested[c]) if c in requested else (list(default_messages) or [None]) for c in names
    ]
    listed = settings.message_catalogue
    # With a catalogue, a message is offered only on its channels (a request naming another is refused earlier).
    on_channel = [
        [m is None or not listed or (m in listed and c in listed[m].channels) for m in ms]
        for c, ms in zip(names, per_channel, strict=True)
    ]
    offered: list[str | None] = list(dict.fromkeys(m for ms in per_channel for m in ms))
    m_index = {m: i for i, m in enumerate(offered)}
    valid = np.zeros((len(names), len(offered)), dtype=bool)
    for i, ms in enumerate(per_channel):
        valid[i, [m_index[m] for m, ok in zip(ms, on_channel[i], strict=True) if ok]] = True
    slots = send_slots(now, horizon_hours)
    n_slots = len(slots)
    per_c = valid.sum(axis=1) * n_slots  # candidates per channel
    candidates = int(per_c.sum())
    trace: list[RuleCount] = []

    # Consent: the profile's (explicit or configured default) and opt-outs seen in the touchpoints.
    consent = np.ones(len(names), dtype=bool)
    for i, (name, code) in enumerate(zip(names, codes, strict=True)):
        if not profile.has_consent(name):
            consent[i] = False
            trace.append(RuleCount(rule="no_consent", label=f"no_consent: {name}", excluded=int(per_c[i])))
        elif agg.opted_out(code):
            consent[i] = False
            trace.append(RuleCount(rule="opted_out", label=f"opted_out: {name}", excluded=int(per_c[i])))

    # Quiet hours in the customer's zone: each slot's local wall time (DST through zoneinfo). A channel's own
    # window replaces the default; the customer's own window (profile) applies on every channel.
    zone = profile.zone()
    local = [datetime.fromtimestamp(t, zone).time() for t in slots]
    own: QuietWindow | None = profile.quiet_hours
    default: QuietWindow = own if own is not None else settings.default_quiet
    awake_default = _awake(default, local)
    awake = np.tile(awake_default, (len(names), 1))  # (C, S)
    n_msgs = valid.sum(axis=1)
    n_quiet = int((~awake_default).sum())
    own_window = [settings.quiet_window(name) for name in names]
    shared = np.array([w is None for w in own_window], dtype=bool)
    excluded = int((n_msgs * consent * shared).sum()) * n_quiet
    if excluded:
        trace.append(RuleCount(rule="quiet_hours", label=f"quiet_hours: {default.label()}", excluded=excluded))
    for i, window in enumerate(own_window):
        if window is None:
            continue
        awake[i] = _awake(window, local) & _awake(own, local)
        excluded = int((~awake[i]).sum()) * int(n_msgs[i]) * int(consent[i])
        if excluded:
            label = f"quiet_hours: {names[i]} {window.label()}" + (f" + {own.label()}" if own is not None else "")
            trace.append(RuleCount(rule="quiet_hours", label=label, excluded=excluded))

    # Frequency caps over the day / week ending at each slot, counting the decision's own send. Per channel the
    # day cap applies before the week cap (the trace counts what each one removed), then the totals.
    open_cs = consent[:, None] & awake  # (C, S) still open
    caps = settings.caps
    day, week = send_counts(agg, slots, (DAY, WEEK))  # (all channels, S)
    hit_day = open_cs & (day[codes] + 1 > caps.per_channel_day)
    open_cs &= ~hit_day
    hit_week = open_cs & (week[codes] + 1 > caps.per_channel_week)
    open_cs &= ~hit_week
    for i in np.flatnonzero(hit_day.any(axis=1) | hit_week.any(axis=1)).tolist():
        name = names[i]
        for hit, label in (
            (hit_day[i], f"cap: {name} {caps.per_channel_day}/day"),
            (hit_week[i], f"cap: {name} {caps.per_channel_week}/week"),
        ):
            if hit.any():
                trace.append(RuleCount(rule="cap", label=label, excluded=int(hit.sum() * n_msgs[i])))
    for limit, counts, label in (
        (caps.total_day, day.sum(axis=0), f"cap: total {caps.total_day}/day"),
        (caps.total_week, week.sum(axis=0), f"cap: total {caps.total_week}/week"),
    ):
        hit = open_cs & (counts + 1 > limit)[None, :]
        if hit.any():
            open_cs &= ~hit
            trace.append(RuleCount(rule="cap", label=label, excluded=int((hit.sum(axis=1) * n_msgs).sum())))

    allowed = open_cs[:, :, None] & valid[:, None, :]

    # The catalogue's dates: a message outside its window at a slot is not sent then.
    for j, m in enumerate(offered):
        entry = listed.get(m) if m is not None else None
        if entry is None:
            continue
        closed = np.array([not entry.covers(float(t)) for t in slots], dtype=bool)
        hit = allowed[:, :, j] & closed[None, :]
        if hit.any():
            allowed[:, :, j] &= ~hit
            trace.append(RuleCount(rule="message_window", label=f"message_window: {m}", excluded=int(hit.sum())))

    channel_costs = np.array([settings.cost_of(c) for c in names], dtype=np.float64)
    costs = channel_costs[:, None, None] + message_costs(offered, settings)[None, None, :]
    return Grid(names, codes, offered, slots, valid, allowed, trace, candidates, costs)
