"""The hard rules: ONE definition of the candidate grid and what consent, quiet hours and caps leave of it.

Serving (`model.domain.decide`) and offline evaluation (`training.ope.contexts`) both call `candidate_grid`,
so the policy a model is judged by offline is the policy it serves (a parity test holds them equal).

1. Candidates: channels x hourly send slots (from the next full hour, `horizon_hours` of them) x messages
   (per channel).
2. Rules remove candidates before ranking and are never traded off, in this order: consent (the profile's,
   explicit or configured default, and opt-outs folded into the aggregate), quiet hours in the customer's
   own time zone (DST-aware through zoneinfo), then frequency caps per channel (day before week) and over
   all channels, counted over the window ending at each slot and including the decision's own send. The
   trace says how many candidates each rule removed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from model.domain.aggregate import DAY, Aggregate
from model.domain.catalogue import catalogue
from model.domain.recommend_schemas import DEFAULT_HORIZON_HOURS, RuleCount
from model.domain.schemas import Profile
from model.domain.settings import Settings

HOUR = 3600.0
WEEK = 7 * DAY
__all__ = ["DEFAULT_HORIZON_HOURS", "Grid", "candidate_grid", "send_counts", "send_slots"]


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
    offered: list[str | None] = list(dict.fromkeys(m for ms in per_channel for m in ms))
    m_index = {m: i for i, m in enumerate(offered)}
    valid = np.zeros((len(names), len(offered)), dtype=bool)
    for i, ms in enumerate(per_channel):
        valid[i, [m_index[m] for m in ms]] = True
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

    # Quiet hours in the customer's zone: each slot's local wall time (DST through zoneinfo).
    zone, quiet = profile.zone(), profile.quiet()
    if quiet.start == quiet.end:  # an empty window: every slot is awake
        awake = np.ones(n_slots, dtype=bool)
    else:
        awake = np.array([not quiet.contains(datetime.fromtimestamp(t, zone).time()) for t in slots], dtype=bool)
    n_quiet = int((~awake).sum())
    if n_quiet:
        excluded = int((valid.sum(axis=1) * consent).sum()) * n_quiet
        if excluded:
            trace.append(RuleCount(rule="quiet_hours", label=f"quiet_hours: {quiet.label()}", excluded=excluded))

    # Frequency caps over the day / week ending at each slot, counting the decision's own send. Per channel the
    # day cap applies before the week cap (the trace counts what each one removed), then the totals.
    open_cs = consent[:, None] & awake[None, :]  # (C, S) still open
    caps = settings.caps
    day, week = send_counts(agg, slots, (DAY, WEEK))  # (all channels, S)
    n_msgs = valid.sum(axis=1)
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
    return Grid(names, codes, offered, slots, valid, allowed, trace, candidates)
