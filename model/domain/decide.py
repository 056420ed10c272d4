"""The decision: which channel, when and with what message to contact a customer now (or not at all).

1.-2. The candidate grid and the hard rules (consent, quiet hours, caps): `model.domain.rules`, the one
   definition that offline evaluation calls too. Messages per channel come from the request, else the
   model's message levels, else "no message".
3. One vectorised prediction scores every remaining candidate (the feature groups of model.domain.features,
   broadcast over the grid); expected value = the increment over not contacting, minus the cost, in the units
   of the model's objective (`model.domain.objective`, shared with evaluation). No positive expected value ->
   "don't contact now" (channel ``none``, with why and, when the rules blocked everything, the next slot they
   allow).
4. Measurement: the policy of `model.domain.policy` (holdout, epsilon-greedy with exact propensities).
5. The k recommendations: the best cell per channel first, then per (channel, message), then other hours; each
   with contrastive reasons (`model.domain.reasons`).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from model.domain.aggregate import CONVERTED, SENT, Aggregate
from model.domain.catalogue import catalogue
from model.domain.features import (
    SLOT_FEATURES,
    FeatureLayout,
    channel_features,
    customer_features,
    message_features,
    no_contact_channel_features,
    slot_feature_rows,
)
from model.domain.model_protocol import GridPrediction, Model
from model.domain.objective import cell_values, is_probability, supported_cells, unknown_messages
from model.domain.policy import action_probabilities, greedy_cell, holdout_bucket, tie_key
from model.domain.reasons import Option, contrast_cells, contrastive, heuristic_reason, only_channel
from model.domain.recommend_schemas import (
    NONE_CHANNEL,
    Policy,
    Reason,
    Recommendation,
    RecommendationRequest,
    RecommendationResponse,
    RuleTrace,
)
from model.domain.rules import Grid, candidate_grid
from model.domain.schemas import Profile
from model.domain.send_time import smooth_over_send_time
from model.domain.settings import Settings, get_settings
from model.domain.value import ValuePrior, order_value

COLD_START_EVENTS = 3  # fewer recorded events than this: population-level scores
NEXT_ALLOWED_HOURS = 7 * 24  # how far ahead `next_allowed_at` is searched when the rules block every candidate
HEURISTIC_PRIOR, HEURISTIC_STRENGTH = 0.02, 20.0  # smoothed conversion rate of the fallback heuristic
_RNG = random.Random()  # exploration, not cryptography; seeded once per process, not per request


def build_grid(
    req: RecommendationRequest,
    agg: Aggregate,
    profile: Profile,
    default_messages: Sequence[str],
    now: datetime,
    settings: Settings,
) -> Grid:
    """The request's candidate grid after the hard rules (the shared rules module)."""
    return candidate_grid(req.channels, req.messages, default_messages, req.horizon_hours, agg, profile, now, settings)


def scoring_history(agg: Aggregate) -> Aggregate:
    """What the model scores: the customer's history, or none at all for a cold start (population-level)."""
    return Aggregate.empty() if agg.n_events < COLD_START_EVENTS else agg


def conversion_value(
    agg: Aggregate, settings: Settings, profile: Profile | None = None, prior: ValuePrior | None = None
) -> float:
    """The customer's expected order value (model.domain.value): their own average blended with the model's
    learned prior; without a prior, their average when known, else the configured default."""
    conversions = sum(row[CONVERTED] for row in agg.counts)
    revenue = sum(agg.value)
    attributes = profile.attributes if profile is not None else None
    return order_value(revenue, conversions, attributes, prior, settings.default_conversion_value)


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
    p_none: float = 0.0  # P(outcome | x, don't contact): 0 for a model that never saw no-contact decisions


def feature_groups(
    grid: Grid, agg: Aggregate, profile: Profile, now: datetime, layout: FeatureLayout, levels: Sequence[str]
) -> list[npt.NDArray[np.float64]]:
    """The grid's feature groups at `now`: customer (1 row), channel (C), slot (S), message (M) rows."""
    ts = now.timestamp()
    cust = np.array([customer_features(agg, profile.attributes, layout, ts)])
    ch = np.array([channel_features(agg, code, ts) for code in grid.codes])
    slot = np.array(slot_feature_rows(agg, grid.slots.tolist(), profile.zone()))
    msg = np.array([message_features(m, levels) for m in grid.messages])
    return [cust, ch, slot, msg]


def score(grid: Grid, model: Model | None, agg: Aggregate, profile: Profile, now: datetime) -> Scored:
    """ONE vectorised prediction over the allowed part of the grid (rows and columns with any allowed cell)."""
    shape = grid.allowed.shape
    p = np.zeros(shape)
    if model is None:
        p[:] = heuristic_scores(agg, grid.codes)[:, None, None]
        return Scored(p, None)
    rows_c = np.flatnonzero(grid.allowed.any(axis=(1, 2)))
    rows_s = np.flatnonzero(grid.allowed.any(axis=(0, 2)))
    groups = feature_groups(grid, agg, profile, now, model.layout, model.message_levels)
    cust, ch, slot, msg = groups
    if not (len(rows_c) and len(rows_s)):
        return Scored(p, groups)
    prediction = model.predict_grid([cust, ch[rows_c], slot[rows_s], msg])
    p[np.ix_(rows_c, rows_s)] = prediction.proba[0]
    sub_c = np.full(shape[0], -1, dtype=np.int64)
    sub_c[rows_c] = np.arange(len(rows_c))
    sub_s = np.full(shape[1], -1, dtype=np.int64)
    sub_s[rows_s] = np.arange(len(rows_s))
    return Scored(p, groups, prediction, sub_c, sub_s, no_contact_score(model, groups))


def no_contact_score(model: Model, groups: list[npt.NDArray[np.float64]]) -> float:
    """P(outcome | x, don't contact) from the grid's groups: the first slot and no message, as training's
    "don't contact" rows (features.no_contact_row); 0 for a model trained without such rows."""
    if not model.no_contact:
        return 0.0
    cust, _, slot, _ = groups
    none_ch = np.array([no_contact_channel_features(len(catalogue()))])
    msg = np.array([message_features(None, ())])
    return float(model.predict_grid([cust, none_ch, slot[:1], msg]).proba.ravel()[0])


def _unsupported(model: Model | None, messages: Sequence[str | None]) -> tuple[list[str], list[str]]:
    """The model's channels and messages without training support (none for the heuristic): its manifest's, and
    the grid's messages the model has no level for (`objective.unknown_messages`)."""
    if model is None:
        return [], []
    unknown = unknown_messages(messages, model.message_levels)
    return list(model.unsupported.channels), [*model.unsupported.messages, *unknown]


def diverse(ranked: npt.NDArray[np.int64], shape: tuple[int, ...], k: int) -> list[int]:
    """The first k of `ranked` (flat cells, best first) reordered for variety: the best cell of each channel
    (channels in order of their best), then the best of each (channel, message) left, then the rest."""
    if not len(ranked):
        return []
    c, _, m = np.unravel_index(ranked, shape)
    per_channel = np.sort(np.unique(c, return_index=True)[1])
    per_message = np.sort(np.unique(c * shape[2] + m, return_index=True)[1])
    out: list[int] = []
    taken: set[int] = set()
    for tier in (per_channel, per_message, range(len(ranked))):
        for i in tier:
            if len(out) == k:
                return out
            if int(i) not in taken:
                taken.add(int(i))
                out.append(int(ranked[i]))
    return out


def _reasons(
    model: Model,
    grid: Grid,
    scored: Scored,
    ev: npt.NDArray[np.float64],
    picks: Sequence[tuple[int, int, int]],
    history: Aggregate,
    profile: Profile,
) -> list[list[Reason]]:
    """Contrastive reasons: the first pick's channel vs the runner-up channel, hour vs the best other hour,
    message vs the best other message; every other pick's channel vs the best other channel. All cells are
    explained in one call (path attributions)."""
    if not picks or scored.prediction is None or scored.sub_c is None or scored.sub_s is None:
        return [[] for _ in picks]
    assert scored.groups is not None
    zone = profile.zone()
    cust, ch, slot, msg = scored.groups
    local_hours = slot[:, SLOT_FEATURES.index("local_hour")]
    scores = np.where(grid.allowed, ev, -np.inf)
    # The first choice explains its channel, hour and message; an alternative, its channel (what it is there
    # for): each contrast is one more cell to explain, and the latency bar holds the decision to a few ms.
    contrasts = [contrast_cells(scores, local_hours, pick) for pick in picks]
    contrasts = [cs if i == 0 else {"channel": cs["channel"]} for i, cs in enumerate(contrasts)]
    cells = list(dict.fromkeys([*picks, *(c for cs in contrasts for c in cs.values() if c is not None)]))
    sub_c, sub_s = scored.sub_c, scored.sub_s
    contrib = scored.prediction.explain([(0, int(sub_c[c]), int(sub_s[s]), m) for c, s, m in cells])[:, :-1]
    options = {
        cell: Option(
            channel=grid.channels[cell[0]],
            code=grid.codes[cell[0]],
            send_ts=float(grid.slots[cell[1]]),
            zone=zone,
            message=grid.messages[cell[2]],
            p=float(scored.p[cell]),
            ev=float(ev[cell]),
            values=np.concatenate([cust[0], ch[cell[0]], slot[cell[1]], msg[cell[2]]]),
            contrib=row,
            outcome=model.objective,
        )
        for cell, row in zip(cells, contrib, strict=True)
    }
    closed = [grid.channels[i] for i in np.flatnonzero(~grid.allowed.any(axis=(1, 2))).tolist()]
    out = []
    for pick, cs in zip(picks, contrasts, strict=True):
        a = options[pick]
        why = [only_channel(a, closed)] if cs["channel"] is None else []
        for kind, cell in cs.items():
            if cell is not None:
                why += contrastive(kind, a, options[cell], model.layout, history)
        out.append(why)
    return out


def next_allowed_at(
    req: RecommendationRequest,
    history: Aggregate,
    profile: Profile,
    default_messages: Sequence[str],
    now: datetime,
    settings: Settings,
) -> datetime | None:
    """The first hourly slot within NEXT_ALLOWED_HOURS at which some candidate passes the rules, else None."""
    ahead = req.model_copy(update={"horizon_hours": NEXT_ALLOWED_HOURS})  # past the request's bound on purpose
    grid = build_grid(ahead, history, profile, default_messages, now, settings)
    open_slots = np.flatnonzero(grid.allowed.any(axis=(0, 2)))
    if not len(open_slots):
        return None
    return datetime.fromtimestamp(float(grid.slots[open_slots[0]]), UTC)


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
    scored = score(grid, model, scoring_history(history), profile, now)
    if model is not None:  # each slot's prediction borrows from its neighbours' (model.domain.send_time)
        scored.p = smooth_over_send_time(
            scored.p, grid.slots.astype(np.float64), grid.allowed, s.send_time_smoothing_hours
        )
    value = conversion_value(history, s, profile, model.value_prior if model else None)
    objective = model.objective if model else "conversion"
    # Cells of a channel or message without training support get the prior (no lift), not a tree leaf.
    supported = supported_cells(grid.channels, grid.messages, *_unsupported(model, grid.messages))
    if supported is not None:
        scored.p = np.where(supported, scored.p, scored.p_none)
    # Incremental expected value: what contacting adds over not contacting (p_none), minus the cost (channel +
    # message, model.domain.rules), in the objective's units: the one definition evaluation values cells by.
    ev = cell_values(scored.p, scored.p_none, objective, value, grid.costs, s, supported)

    allowed_flat = np.flatnonzero(grid.allowed.ravel())
    n_allowed = len(allowed_flat)
    key = tie_key(ev.ravel())  # as greedy_cell ranks: last-bit differences are ties
    positive = allowed_flat[key[allowed_flat] > 0]
    ranked = positive[np.argsort(-key[positive], kind="stable")]
    probs, p_none = action_probabilities(ev, grid.allowed, s.exploration_rate)

    if holdout_bucket(req.customer_id) < s.holdout_share:
        policy = Policy.holdout  # never contacted: what the others earn over it is the measured uplift
        chosen = []
        propensity = 1.0
    elif n_allowed and rng.random() < s.exploration_rate:
        policy = Policy.explore
        pick = int(allowed_flat[rng.randrange(n_allowed)])
        propensity = float(probs.flat[pick])
        chosen = [pick, *[f for f in diverse(ranked, ev.shape, req.k) if f != pick][: req.k - 1]]
    else:
        policy = Policy.fallback if model is None else Policy.model
        chosen = diverse(ranked, ev.shape, req.k)
        greedy = greedy_cell(ev, grid.allowed)
        propensity = p_none if greedy is None else float(probs.flat[greedy])

    picks: list[tuple[int, int, int]] = []
    for f in chosen:
        ci, si, mi = np.unravel_index(f, ev.shape)
        picks.append((int(ci), int(si), int(mi)))
    reasons = (
        [[heuristic_reason(grid.channels[p[0]], history, grid.codes[p[0]], float(scored.p[p]))] for p in picks]
        if model is None
        else _reasons(model, grid, scored, ev, picks, scoring_history(history), profile)
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
                # A value model predicts value, not a probability: its expected_value carries the prediction.
                p_convert=min(1.0, max(0.0, float(scored.p[c, sl, m]))) if is_probability(objective) else 0.0,
                expected_value=float(ev[c, sl, m]),
                reasons=why,
            )
        )
    if not recs:
        best = float(ev.ravel()[allowed_flat].max()) if n_allowed else 0.0
        blocked, after = "no positive expected value", None
        if policy == Policy.holdout:
            blocked = "holdout"
        elif not n_allowed:
            blocked = "; ".join(e.label for e in grid.trace if e.excluded) or "no candidates"
            levels = model.message_levels if model else []
            after = next_allowed_at(req, history, profile, levels, now, s)
        recs.append(
            Recommendation(
                channel=NONE_CHANNEL,
                p_convert=0.0,
                expected_value=min(best, 0.0),
                why=blocked,
                next_allowed_at=after,
            )
        )
    return RecommendationResponse(
        decision_id=decision_id or str(uuid.uuid4()),
        customer_id=req.customer_id,
        model_version=model.version if model else None,
        policy=policy,
        cold_start=cold,
        propensity=min(1.0, propensity),
        recommendations=recs,
        rule_trace=RuleTrace(
            candidates=grid.candidates, allowed=n_allowed, positive=len(positive), excluded=grid.trace
        ),
    )
