"""The decision: which channel, when and with what message to contact a customer now (or not at all).

1. Candidates: allowed channels x hourly send slots (from the next full hour, `horizon_hours` of them) x
   messages (per channel from the request, else the model's message levels, else "no message").
2. Hard rules remove candidates BEFORE ranking and are never traded off: consent (the profile's, and
   opt-outs folded into the aggregate), quiet hours in the customer's own time zone (DST-aware through
   zoneinfo), frequency caps per channel and overall, counted over the window ending at each slot and
   including the decision's own send. The rule trace says how many candidates each rule removed.
3. One vectorised prediction scores every remaining candidate (the feature groups of model.domain.features,
   broadcast over the grid); expected value = p_convert x value - channel cost. No positive expected
   value -> "don't contact now" (channel ``none``).
4. Measurement: a deterministic holdout share (by customer hash) gets a business-as-usual choice; the rest
   follows an epsilon-greedy policy whose propensity for the returned first choice is exact.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from model.domain.aggregate import CONVERTED, DAY, SENT, Aggregate
from model.domain.catalogue import catalogue
from model.domain.features import channel_features, customer_features, message_features, slot_feature_rows
from model.domain.model_protocol import GridPrediction, Model
from model.domain.recommend_schemas import (
    NONE_CHANNEL,
    Policy,
    Reason,
    Recommendation,
    RecommendationRequest,
    RecommendationResponse,
    RuleCount,
    RuleTrace,
)
from model.domain.schemas import Profile
from model.domain.settings import Settings, get_settings

HOUR = 3600.0
COLD_START_EVENTS = 3  # fewer recorded events than this: population-level scores
N_REASONS = 3
HEURISTIC_PRIOR, HEURISTIC_STRENGTH = 0.02, 20.0  # smoothed conversion rate of the fallback heuristic
WEEK = 7 * DAY
_RNG = random.Random()  # exploration, not cryptography; seeded once per process, not per request


@dataclass
class Grid:
    """The candidate grid of one request and what the rules left of it."""

    channels: list[str]
    codes: list[int]
    messages: list[str | None]
    slots: npt.NDArray[np.float64]  # send instants, epoch seconds
    valid: npt.NDArray[np.bool_]  # (C, M): message offered on that channel
    allowed: npt.NDArray[np.bool_]  # (C, S, M) after the hard rules
    trace: list[RuleCount]
    candidates: int


def holdout_bucket(customer_id: str) -> float:
    """A stable number in [0, 1) per customer: the holdout is the customers below `holdout_share`."""
    digest = hashlib.sha256(f"holdout:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def send_slots(now: datetime, horizon_hours: int) -> npt.NDArray[np.float64]:
    """Hourly send instants from `now` rounded up to the next full hour."""
    first = math.ceil(now.timestamp() / HOUR) * HOUR
    return first + HOUR * np.arange(horizon_hours, dtype=np.float64)


def _send_counts(
    agg: Aggregate, slots: npt.NDArray[np.float64], widths: Sequence[float]
) -> list[npt.NDArray[np.int64]]:
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


def build_grid(
    req: RecommendationRequest,
    agg: Aggregate,
    profile: Profile,
    default_messages: Sequence[str],
    now: datetime,
    settings: Settings,
) -> Grid:
    """Candidates and the hard rules (consent, quiet hours, caps) applied in that order."""
    cat = catalogue()
    channels = list(req.channels) if req.channels else list(cat.names)
    codes = [cat.code(c) for c in channels]
    requested = req.messages or {}
    per_channel: list[list[str | None]] = [
        list(requested[c]) if c in requested else (list(default_messages) or [None]) for c in channels
    ]
    messages: list[str | None] = list(dict.fromkeys(m for ms in per_channel for m in ms))
    m_index = {m: i for i, m in enumerate(messages)}
    valid = np.zeros((len(channels), len(messages)), dtype=bool)
    for i, ms in enumerate(per_channel):
        valid[i, [m_index[m] for m in ms]] = True
    slots = send_slots(now, req.horizon_hours)
    n_slots = len(slots)
    per_c = valid.sum(axis=1) * n_slots  # candidates per channel
    candidates = int(per_c.sum())
    trace: list[RuleCount] = []

    # Consent: the profile's (explicit or configured default) and opt-outs seen in the touchpoints.
    consent = np.ones(len(channels), dtype=bool)
    for i, (name, code) in enumerate(zip(channels, codes, strict=True)):
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
    day, week = _send_counts(agg, slots, (DAY, WEEK))  # (all channels, S)
    n_msgs = valid.sum(axis=1)
    hit_day = open_cs & (day[codes] + 1 > caps.per_channel_day)
    open_cs &= ~hit_day
    hit_week = open_cs & (week[codes] + 1 > caps.per_channel_week)
    open_cs &= ~hit_week
    for i in np.flatnonzero(hit_day.any(axis=1) | hit_week.any(axis=1)).tolist():
        name = channels[i]
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
    return Grid(channels, codes, messages, slots, valid, allowed, trace, candidates)


def conversion_value(agg: Aggregate, settings: Settings) -> float:
    """The customer's average order value when known, else the configured default."""
    conversions = sum(row[CONVERTED] for row in agg.counts)
    revenue = sum(agg.value)
    return revenue / conversions if conversions and revenue > 0 else settings.default_conversion_value


def heuristic_scores(agg: Aggregate, codes: Sequence[int]) -> npt.NDArray[np.float64]:
    """Fallback P(convert) per channel: the customer's smoothed conversion rate on it."""
    return np.array(
        [
            (agg.counts[c][CONVERTED] + HEURISTIC_PRIOR * HEURISTIC_STRENGTH)
            / (agg.counts[c][SENT] + HEURISTIC_STRENGTH)
            for c in codes
        ]
    )


@dataclass
class Scored:
    p: npt.NDArray[np.float64]  # (C, S, M); 0 where not allowed
    groups: list[npt.NDArray[np.float64]] | None  # feature groups, None for the heuristic
    prediction: GridPrediction | None = None  # over the scored sub-grid (rows_c x rows_s), for the reasons
    sub_c: npt.NDArray[np.int64] | None = None  # full channel index -> sub-grid index
    sub_s: npt.NDArray[np.int64] | None = None


def score(grid: Grid, model: Model | None, agg: Aggregate, profile: Profile, now: datetime) -> Scored:
    """ONE vectorised prediction over the allowed part of the grid (rows and columns with any allowed cell)."""
    shape = grid.allowed.shape
    p = np.zeros(shape)
    if model is None:
        p[:] = heuristic_scores(agg, grid.codes)[:, None, None]
        return Scored(p, None)
    rows_c = np.flatnonzero(grid.allowed.any(axis=(1, 2)))
    rows_s = np.flatnonzero(grid.allowed.any(axis=(0, 2)))
    ts = now.timestamp()
    zone = profile.zone()
    levels = model.message_levels
    cust = np.array([customer_features(agg, profile.attributes, model.layout, ts)])
    ch = np.array([channel_features(agg, grid.codes[i], ts) for i in range(shape[0])])
    slot = np.array(slot_feature_rows(agg, grid.slots.tolist(), zone))
    msg = np.array([message_features(m, levels) for m in grid.messages])
    groups = [cust, ch, slot, msg]
    if not (len(rows_c) and len(rows_s)):
        return Scored(p, groups)
    prediction = model.predict_grid([cust, ch[rows_c], slot[rows_s], msg])
    p[np.ix_(rows_c, rows_s)] = prediction.proba[0]
    sub_c = np.full(shape[0], -1, dtype=np.int64)
    sub_c[rows_c] = np.arange(len(rows_c))
    sub_s = np.full(shape[1], -1, dtype=np.int64)
    sub_s[rows_s] = np.arange(len(rows_s))
    return Scored(p, groups, prediction, sub_c, sub_s)


def _reasons(model: Model, scored: Scored, picks: Sequence[tuple[int, int, int]]) -> list[list[Reason]]:
    if not picks or scored.prediction is None or scored.sub_c is None or scored.sub_s is None:
        return [[] for _ in picks]
    sub_c, sub_s = scored.sub_c, scored.sub_s
    cells = [(0, int(sub_c[c]), int(sub_s[s]), m) for c, s, m in picks]
    contrib = scored.prediction.explain(cells)[:, :-1]
    names = model.layout.names
    tops = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :N_REASONS]
    return [
        [
            Reason(feature=names[j], description=model.layout.describe(names[j]), contribution=float(row[j]))
            for j in top.tolist()
            if row[j] != 0.0
        ]
        for row, top in zip(contrib, tops, strict=True)
    ]


def _heuristic_reason(p: float) -> list[Reason]:
    return [
        Reason(
            feature="ch_conversion_rate",
            description="the customer's smoothed conversion rate on this channel (heuristic: no model available)",
            contribution=p,
        )
    ]


def decide(
    req: RecommendationRequest,
    agg: Aggregate | None,
    profile: Profile | None,
    model: Model | None,
    *,
    settings: Settings | None = None,
    rng: random.Random | None = None,
    decision_id: str | None = None,
) -> RecommendationResponse:
    """One decision for one customer (pure apart from the random draw; logging is the caller's)."""
    s = settings or get_settings()
    rng = rng or _RNG
    now = req.now or datetime.now(UTC)
    history = agg if agg is not None else Aggregate.empty()
    profile = profile or Profile()
    cold = history.n_events < COLD_START_EVENTS
    grid = build_grid(req, history, profile, model.message_levels if model else [], now, s)
    # Cold start: population-level scores (no history), the hard rules still use what is known.
    scored = score(grid, model, Aggregate.empty() if cold else history, profile, now)
    value = conversion_value(history, s)
    costs = np.array([s.channel_costs.get(c, 0.0) for c in grid.channels])
    ev = scored.p * value - costs[:, None, None]

    allowed_flat = np.flatnonzero(grid.allowed.ravel())
    n_allowed = len(allowed_flat)
    positive = allowed_flat[ev.ravel()[allowed_flat] > 0]
    ranked = positive[np.argsort(-ev.ravel()[positive], kind="stable")]

    eps = s.exploration_rate
    if holdout_bucket(req.customer_id) < s.holdout_share:
        policy = Policy.holdout
        # Business as usual: the first allowed channel in catalogue order, earliest slot, first message.
        order = sorted(range(len(grid.codes)), key=lambda i: grid.codes[i])
        bau: int | None = None
        for i in order:
            cells = np.argwhere(grid.allowed[i])
            if len(cells):
                bau = int(np.ravel_multi_index((i, int(cells[0][0]), int(cells[0][1])), ev.shape))
                break
        chosen = [] if bau is None else [bau]
        propensity = 1.0
    elif n_allowed and rng.random() < eps:
        policy = Policy.explore
        pick = int(allowed_flat[rng.randrange(n_allowed)])
        greedy = int(ranked[0]) if len(ranked) else None
        propensity = eps / n_allowed + (1.0 - eps) * (pick == greedy)
        chosen = [pick, *[int(f) for f in ranked if f != pick][: req.k - 1]]
    else:
        policy = Policy.fallback if model is None else Policy.cold_start if cold else Policy.model
        chosen = [int(f) for f in ranked[: req.k]]
        explore_share = eps if n_allowed else 0.0
        propensity = (1.0 - explore_share) + (explore_share / n_allowed if chosen else 0.0)

    picks: list[tuple[int, int, int]] = []
    for f in chosen:
        ci, si, mi = np.unravel_index(f, ev.shape)
        picks.append((int(ci), int(si), int(mi)))
    reasons = (
        [_heuristic_reason(float(scored.p[p])) for p in picks] if model is None else _reasons(model, scored, picks)
    )
    zone = profile.zone()
    recs = []
    for (c, sl, m), why in zip(picks, reasons, strict=True):
        send = datetime.fromtimestamp(float(grid.slots[sl]), UTC)
        recs.append(
            Recommendation(
                channel=grid.channels[c],
                send_at=send,
                send_at_local=send.astimezone(zone).isoformat(),
                message_id=grid.messages[m],
                p_convert=min(1.0, max(0.0, float(scored.p[c, sl, m]))),
                expected_value=float(ev[c, sl, m]),
                reasons=why,
            )
        )
    if not recs:
        best = float(ev.ravel()[allowed_flat].max()) if n_allowed else 0.0
        recs.append(Recommendation(channel=NONE_CHANNEL, p_convert=0.0, expected_value=min(best, 0.0)))
    return RecommendationResponse(
        decision_id=decision_id or str(uuid.uuid4()),
        customer_id=req.customer_id,
        model_version=model.version if model else None,
        policy=policy,
        propensity=min(1.0, propensity),
        recommendations=recs,
        rule_trace=RuleTrace(
            candidates=grid.candidates, allowed=n_allowed, positive=len(positive), excluded=grid.trace
        ),
    )
