"""The held-out decisions to evaluate policies on, each with its candidate grid as SERVING builds it.

For every evaluated logged decision, the replay hands over the customer's aggregate and profile at the
decision instant; the grid and the hard rules come from `model.domain.rules.candidate_grid` and the feature
groups from `model.domain.decide.feature_groups` (cold start included), exactly as `decide` computes them
for a request with the default channels, horizon and messages. A parity test holds the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from model.domain.aggregate import CLICKED, CONVERTED, OPENED, VISITED, Aggregate
from model.domain.decide import conversion_value, feature_groups, scoring_history
from model.domain.features import FeatureLayout, local_time, message_features
from model.domain.objective import realised_value
from model.domain.recommend_schemas import DEFAULT_HORIZON_HOURS
from model.domain.rules import WEEK, candidate_grid, send_counts
from model.domain.schemas import Profile
from model.domain.settings import Settings
from model.domain.value import ValuePrior

TraceRow = tuple[str, str, int]  # (rule, label, candidates excluded)


@dataclass
class Contexts:
    """Held-out decisions with their candidate grid (C channels x S slots x M messages), in feature groups."""

    decision_id: list[str]
    customer_id: list[str]
    decided_at: np.ndarray  # [D]
    propensity: np.ndarray  # [D] logged propensity of the logged action (NaN: unknown)
    logged_channel: np.ndarray  # [D] catalogue index, -1 for a logged "don't contact" decision
    logged_slot: np.ndarray  # [D] index into the slot grid, -1 if outside it
    logged_message: np.ndarray  # [D] index into the message levels, -1 if not a level
    reward: np.ndarray  # [D] outcome value (window or attributed, as the labels) - channel cost of the logged action
    converted: np.ndarray  # [D] 0/1
    cust: np.ndarray  # [D, Fc] customer features at the decision instant (empty history on a cold start)
    chan: np.ndarray  # [D, C, Fch] channel features at the decision instant
    slot: np.ndarray  # [D, S, Fs]
    slot_ts: np.ndarray  # [D, S]
    allowed: np.ndarray  # [D, C, S, M] what the hard rules left (consent, quiet hours, caps)
    consent: np.ndarray  # [D, C] consent and not opted out
    trace: list[list[TraceRow]]  # [D] the rule trace, as serving reports it
    ch_sends_7d: np.ndarray  # [D, C, S] sends on the channel in the 7 days up to the slot
    engaged: np.ndarray  # [D, C] engagement counts per channel
    last_engaged: np.ndarray  # [D, C] last engagement per channel (epoch s, 0 = never)
    value_hat: np.ndarray  # [D] the customer's average order value so far (default when none)
    local_hour: np.ndarray  # [D, S]
    local_dow: np.ndarray  # [D, S]

    def __len__(self) -> int:
        return len(self.decision_id)


OUTCOME_COLUMN = {"click": "clicks", "visit": "visits"}  # the logged outcome a click / visit reward counts
_PARTS = (
    "cust",
    "chan",
    "slot",
    "slot_ts",
    "allowed",
    "consent",
    "trace",
    "ch_sends_7d",
    "engaged",
    "last_engaged",
    "value_hat",
    "local_hour",
    "local_dow",
)


class ContextBuilder:
    """Collects the candidate grid of each evaluated decision during the replay (one per worker)."""

    def __init__(
        self,
        eval_dec: pl.DataFrame,
        layout: FeatureLayout,
        messages: list[str],
        settings: Settings,
        prior: ValuePrior | None = None,
    ) -> None:
        self.dec = eval_dec
        self.layout = layout
        self.messages = messages
        self.settings = settings
        self.prior = prior
        self.ids: list[int] = []
        self.parts: dict[str, list[Any]] = {k: [] for k in _PARTS}

    def fresh(self) -> ContextBuilder:
        """An empty builder with the same configuration (for a replay worker)."""
        return ContextBuilder(self.dec, self.layout, self.messages, self.settings, self.prior)

    def merge(self, ids: list[int], parts: dict[str, list[Any]]) -> None:
        self.ids.extend(ids)
        for key, val in parts.items():
            self.parts[key].extend(val)

    def add(self, ctx: int, agg: Aggregate, profile: Profile, now: float) -> None:
        p = self.parts
        self.ids.append(ctx)
        when = datetime.fromtimestamp(now, UTC)
        grid = candidate_grid(None, None, self.messages, DEFAULT_HORIZON_HOURS, agg, profile, when, self.settings)
        cust, chan, slot, _ = feature_groups(grid, scoring_history(agg), profile, when, self.layout, self.messages)
        zone = profile.zone()
        locals_ = [local_time(float(t), zone) for t in grid.slots]
        p["cust"].append(cust[0])
        p["chan"].append(chan)
        p["slot"].append(slot)
        p["slot_ts"].append(grid.slots)
        p["allowed"].append(grid.allowed)
        p["consent"].append(
            [profile.has_consent(n) and not agg.opted_out(c) for n, c in zip(grid.channels, grid.codes, strict=True)]
        )
        p["trace"].append([(r.rule, r.label, r.excluded) for r in grid.trace])
        p["ch_sends_7d"].append(send_counts(agg, grid.slots, (WEEK,))[0])
        p["local_hour"].append([lt.hour for lt in locals_])
        p["local_dow"].append([lt.weekday() for lt in locals_])
        p["engaged"].append([r[OPENED] + r[CLICKED] + r[VISITED] + r[CONVERTED] for r in agg.counts])
        p["last_engaged"].append([max(r[OPENED], r[CLICKED], r[VISITED], r[CONVERTED]) for r in agg.last])
        p["value_hat"].append(conversion_value(agg, self.settings, profile, self.prior))  # as serving estimates it

    def finish(self, costs: np.ndarray, objective: str = "conversion") -> Contexts:
        """The contexts, with each logged decision's reward in the objective's units (model.domain.objective)."""
        order = np.array(self.ids)
        dec = self.dec[order.tolist()]
        p = {k: np.asarray(v) for k, v in self.parts.items() if k != "trace"}
        slot_ts = p["slot_ts"]
        send_at = dec["send_at"].fill_null(-1.0).to_numpy()
        hit = slot_ts == (np.floor(send_at / 3600) * 3600)[:, None]
        logged_slot = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
        msg_index = {m: i for i, m in enumerate(self.messages)}
        ch = dec["ch"].to_numpy()
        none = ch == len(costs)  # a logged "don't contact" decision (holdout, no-send): reward = its outcome
        return Contexts(
            decision_id=dec["decision_id"].to_list(),
            customer_id=dec["customer_id"].to_list(),
            decided_at=dec["decided_at"].to_numpy(),
            propensity=dec["propensity"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
            logged_channel=np.where(none, -1, ch),
            logged_slot=logged_slot,
            logged_message=np.array([msg_index.get(m, -1) if m is not None else -1 for m in dec["message_id"]])
            if self.messages
            else np.zeros(len(dec), dtype=np.int64),
            reward=realised_value(
                dec[OUTCOME_COLUMN.get(objective, "conversions")].to_numpy(),
                dec["conv_value"].to_numpy(),
                objective,
                np.append(costs, 0.0)[ch],
                self.settings,
            ),
            converted=(dec["conversions"].to_numpy() > 0).astype(np.float64),
            cust=p["cust"].astype(np.float32),
            chan=p["chan"].astype(np.float32),
            slot=p["slot"].astype(np.float32),
            slot_ts=slot_ts,
            allowed=p["allowed"].astype(bool),
            consent=p["consent"].astype(bool),
            trace=self.parts["trace"],
            ch_sends_7d=p["ch_sends_7d"].astype(np.int16),
            engaged=p["engaged"].astype(np.float64),
            last_engaged=p["last_engaged"].astype(np.float64),
            value_hat=p["value_hat"].astype(np.float64),
            local_hour=p["local_hour"].astype(np.int64),
            local_dow=p["local_dow"].astype(np.int64),
        )


def message_rows(messages: list[str]) -> np.ndarray:
    """The message group's rows of the grid ("no message" when the model has no message levels)."""
    ids: list[str | None] = list(messages) or [None]
    return np.array([message_features(mid, messages) for mid in ids], dtype=np.float32)


def candidate_matrix(ctx: Contexts, i: int, messages: list[str], layout: FeatureLayout) -> np.ndarray:
    """All candidate rows of decision i in feature order, [C, S, M, F]: the four groups broadcast."""
    msg = message_rows(messages)
    c, s, m = ctx.chan.shape[1], ctx.slot.shape[1], len(msg)
    out = np.concatenate(
        [
            np.broadcast_to(ctx.cust[i][None, None, None, :], (c, s, m, ctx.cust.shape[1])),
            np.broadcast_to(ctx.chan[i][:, None, None, :], (c, s, m, ctx.chan.shape[2])),
            np.broadcast_to(ctx.slot[i][None, :, None, :], (c, s, m, ctx.slot.shape[2])),
            np.broadcast_to(msg[None, None, :, :], (c, s, m, msg.shape[1])),
        ],
        axis=3,
    )
    if out.shape[3] != len(layout.names):
        raise ValueError(f"candidate rows have {out.shape[3]} features, the layout {len(layout.names)}")
    return out
