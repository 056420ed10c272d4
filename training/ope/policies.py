"""Policies as action distributions pi(a | x) over each held-out decision's candidate grid.

Every policy gives, per decision, probabilities over the grid's cells [D, C, S, M] and over "don't contact"
[D]. The model's policy is the SERVED one: scores from the compiled scorer that serving loads, expected value
as `decide` computes it, and the epsilon-greedy probabilities of `model.domain.policy` (exploration
included). Baselines are deterministic rules (one cell per decision) or uniform random.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model.domain.features import message_features, no_contact_channel_features
from model.domain.policy import action_probabilities
from model.scoring.predictor import group_widths
from model.scoring.tree_scorer import TreeScorer
from training.ope.contexts import Contexts, message_rows


@dataclass
class PolicyDist:
    """pi over the grid [D, C, S, M] and over "don't contact" [D]; rows sum to 1."""

    cells: np.ndarray
    none: np.ndarray

    def channel_mix(self) -> np.ndarray:
        """[D, C] probability of each channel."""
        return np.asarray(self.cells.sum(axis=(2, 3)))


def grid_scores(
    booster: Any, ctx: Contexts, messages: list[str], layout: Any, encode_levels: list[str] | None = None
) -> np.ndarray:
    """The model's P(outcome) (or value) on every cell [D, C, S, M], through the compiled scorer serving uses.

    `messages` are the grid's messages (its M axis); `encode_levels` the message levels of the scored model when
    they differ from them (another version's manifest): each message is then encoded as that model would.
    """
    scorer = TreeScorer.from_dump(booster.dump_model())
    scorer.prepare(group_widths(layout))
    if encode_levels is None:
        msg = message_rows(messages).astype(np.float64)
    else:
        ids: list[str | None] = list(messages) or [None]
        msg = np.array([message_features(mid, encode_levels) for mid in ids], dtype=np.float64)
    d, c, s = len(ctx), ctx.chan.shape[1], ctx.slot.shape[1]
    out = np.empty((d, c, s, len(msg)))
    for i in range(d):
        groups = [
            ctx.cust[i][None].astype(np.float64),
            ctx.chan[i].astype(np.float64),
            ctx.slot[i].astype(np.float64),
            msg,
        ]
        out[i] = scorer.transform(scorer.grid_raw(groups))[0]
    return out


def served(ev: np.ndarray, allowed: np.ndarray, eps: float) -> PolicyDist:
    """The serving policy: epsilon-greedy over the allowed cells by expected value (model.domain.policy)."""
    cells = np.zeros(ev.shape)
    none = np.zeros(len(ev))
    for i in range(len(ev)):
        cells[i], none[i] = action_probabilities(ev[i], allowed[i], eps)
    return PolicyDist(cells, none)


def uniform(allowed: np.ndarray) -> PolicyDist:
    """Uniformly random over the allowed cells ("don't contact" only when nothing is allowed)."""
    n = allowed.reshape(len(allowed), -1).sum(axis=1)
    cells = allowed / np.maximum(n, 1)[:, None, None, None]
    return PolicyDist(cells.astype(np.float64), (n == 0).astype(np.float64))


def deterministic(shape: tuple[int, ...], c: np.ndarray, s: np.ndarray, m: np.ndarray) -> PolicyDist:
    """One cell per decision (c = -1: don't contact)."""
    cells = np.zeros(shape)
    pick = c >= 0
    idx = np.flatnonzero(pick)
    cells[idx, c[pick], s[pick], m[pick]] = 1.0
    return PolicyDist(cells, (~pick).astype(np.float64))


def argmax_policy(score: np.ndarray, allowed: np.ndarray, allow_none: bool) -> PolicyDist:
    """The best allowed cell by `score`; "don't contact" when none is allowed (or none is positive)."""
    d = len(score)
    flat = np.where(allowed, score, -np.inf).reshape(d, -1)
    best = flat.argmax(axis=1)
    best_score = flat[np.arange(d), best]
    c, s, m = (np.asarray(a) for a in np.unravel_index(best, allowed.shape[1:]))
    none = ~np.isfinite(best_score) | ((best_score <= 0) if allow_none else False)
    c = np.where(none, -1, c)
    return deterministic(allowed.shape, c, s, m)


def rule_policy(ctx: Contexts, channel_score: np.ndarray, hour_pref: np.ndarray, msg_pref: np.ndarray) -> PolicyDist:
    """Channel by a per-decision score [D, C]; then its best allowed slot by local hour and best message."""
    allowed = ctx.allowed
    d = len(ctx)
    ch_ok = allowed.any(axis=(2, 3))
    score = np.where(ch_ok, channel_score, -np.inf)
    c = score.argmax(axis=1)
    ok = np.isfinite(score.max(axis=1))
    rows = np.arange(d)
    slot_ok = allowed[rows, c].any(axis=2)  # [D, S]
    hour = np.where(np.isfinite(hour_pref), hour_pref, -1e9)[ctx.local_hour]
    s = np.where(slot_ok, hour, -np.inf).argmax(axis=1)
    msg_ok = allowed[rows, c, s]  # [D, M]
    pref = np.where(np.isfinite(msg_pref), msg_pref, -1e9)
    m = np.where(msg_ok, pref[None, : msg_ok.shape[1]], -np.inf).argmax(axis=1)
    return deterministic(allowed.shape, np.where(ok, c, -1), s, m)


def no_contact_scores(booster: Any, ctx: Contexts, layout: Any) -> np.ndarray:
    """[D] P(outcome | x, don't contact): the first slot and no message, as serving (decide.no_contact_score)."""
    scorer = TreeScorer.from_dump(booster.dump_model())
    scorer.prepare(group_widths(layout))
    none_ch = np.array([no_contact_channel_features(ctx.chan.shape[1])], dtype=np.float64)
    msg = np.array([message_features(None, ())], dtype=np.float64)
    out = np.empty(len(ctx))
    for i in range(len(ctx)):
        groups = [ctx.cust[i][None].astype(np.float64), none_ch, ctx.slot[i][:1].astype(np.float64), msg]
        out[i] = float(scorer.transform(scorer.grid_raw(groups)).ravel()[0])
    return out
