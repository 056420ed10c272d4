"""The per-customer feature aggregate and the ONE fold that builds it.

``fold(aggregate, event) -> aggregate`` is the single definition of every behavioural feature. The
aggregator Lambda applies it online to each new touchpoint; the training pipeline replays it over the
touchpoint log to get each customer's state just before every send. A parity test holds the two equal.

The fold is order-tolerant by construction: counts and histograms commute, recency is a max, the rolling
send windows and the de-duplication set are pruned relative to the newest event seen (not the wall clock),
so any arrival order of the same events yields the same aggregate; a repeated event is absorbed only while
it is within ``DEDUPE_WINDOW`` of the newest event. That window is a convenience for replays (duplicate rows
in an imported file), not a delivery guarantee: online, each stored touchpoint reaches the fold exactly once
because the aggregator marks it folded in the transaction that writes the aggregate
(``model.adapters.states.fold_touchpoints``), whatever its age or how often the stream delivers it.

For throughput (>= 300k events/s on one core) it updates the accumulator in place and returns it, like a
reducer with an owned accumulator; it touches nothing else and reads no clock.
"""

from __future__ import annotations

import json
from bisect import insort
from typing import Any, NamedTuple

from model.domain.catalogue import Catalogue, catalogue
from model.domain.schemas import EVENT_INDEX, EVENT_TYPES, Touchpoint

DAY = 86400.0
CAP_WINDOW = 7 * DAY  # rolling window kept for frequency caps
DEDUPE_WINDOW = 3 * DAY  # event ids remembered to absorb repeats within a replay (online: exactly-once marks)
SEEN_MAX = 5000  # hard bound on remembered ids (an abuse guard; normal traffic never reaches it)
HOURS_PER_WEEK = 168
HOURS_PER_DAY = 24
_EPOCH_HOW_OFFSET = 72  # 1970-01-01 was a Thursday: shift so that bin 0 is Monday 00:00 UTC

SENT = EVENT_INDEX["sent"]
DELIVERED = EVENT_INDEX["delivered"]
OPENED = EVENT_INDEX["opened"]
CLICKED = EVENT_INDEX["clicked"]
VISITED = EVENT_INDEX["visited"]
CONVERTED = EVENT_INDEX["converted"]
BOUNCED = EVENT_INDEX["bounced"]
COMPLAINED = EVENT_INDEX["complained"]
UNSUBSCRIBED = EVENT_INDEX["unsubscribed"]
SUBSCRIBED = EVENT_INDEX["subscribed"]
ENGAGEMENT = frozenset({OPENED, CLICKED, VISITED, CONVERTED})
N_EVENT_TYPES = len(EVENT_TYPES)


class FoldEvent(NamedTuple):
    """The slice of a touchpoint the fold reads: plain values, cheap to build from columns."""

    event_id: str
    channel: int  # index in the channel catalogue
    event_type: int  # index in EVENT_TYPES
    ts: float  # epoch seconds, UTC
    value: float = 0.0


def fold_event(tp: Touchpoint, cat: Catalogue | None = None) -> FoldEvent:
    cat = cat or catalogue()
    return FoldEvent(
        tp.event_id, cat.index[tp.channel], EVENT_INDEX[tp.event_type], tp.occurred_at.timestamp(), tp.value
    )


def hour_of_week(ts: float) -> int:
    """UTC hour of the week, Monday 00:00 = 0."""
    return (int(ts // 3600) + _EPOCH_HOW_OFFSET) % HOURS_PER_WEEK


class Aggregate:
    """Per-customer state. Lists are indexed by channel (catalogue order) and event type."""

    __slots__ = (
        "counts",
        "first_ts",
        "how",
        "last",
        "last_ts",
        "opt_in",
        "opt_out",
        "recent_sends",
        "seen",
        "sent_hod",
        "value",
    )

    def __init__(self, n_channels: int) -> None:
        self.counts: list[list[int]] = [[0] * N_EVENT_TYPES for _ in range(n_channels)]
        self.last: list[list[float]] = [[0.0] * N_EVENT_TYPES for _ in range(n_channels)]
        self.value: list[float] = [0.0] * n_channels
        self.how: list[int] = [0] * HOURS_PER_WEEK  # engagements by UTC hour of week
        # Sends by UTC hour of day: the exposure behind `how`, so a slot feature can be a response rate by send
        # hour instead of an engagement share dominated by the hours most sends went out at.
        self.sent_hod: list[int] = [0] * HOURS_PER_DAY
        self.recent_sends: list[list[float]] = [[] for _ in range(n_channels)]  # sorted, within CAP_WINDOW
        self.opt_out: list[float] = [0.0] * n_channels  # latest unsubscribe/complaint
        self.opt_in: list[float] = [0.0] * n_channels  # latest subscribe
        self.seen: dict[str, float] = {}
        self.first_ts = 0.0
        self.last_ts = 0.0

    @classmethod
    def empty(cls, cat: Catalogue | None = None) -> Aggregate:
        return cls(len(cat or catalogue()))

    @property
    def n_events(self) -> int:
        return sum(sum(row) for row in self.counts)

    def opted_out(self, channel: int) -> bool:
        return self.opt_out[channel] > self.opt_in[channel]

    def sends_since(self, channel: int, since: float) -> int:
        sends = self.recent_sends[channel]
        return sum(1 for t in sends if t >= since)

    # --- serialisation: channels by name, so a catalogue change never shifts data between channels ---
    def to_dict(self, cat: Catalogue | None = None) -> dict[str, Any]:
        cat = cat or catalogue()
        per_channel = {
            name: {
                "counts": self.counts[i],
                "last": self.last[i],
                "value": self.value[i],
                "recent_sends": self.recent_sends[i],
                "opt_out": self.opt_out[i],
                "opt_in": self.opt_in[i],
            }
            for i, name in enumerate(cat.names)
            if self.counts[i] != [0] * N_EVENT_TYPES or self.opt_out[i] or self.opt_in[i]
        }
        return {
            "v": 1,
            "event_types": list(EVENT_TYPES),
            "channels": per_channel,
            "how": self.how,
            "sent_hod": self.sent_hod,
            "seen": self.seen,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], cat: Catalogue | None = None) -> Aggregate:
        cat = cat or catalogue()
        agg = cls(len(cat))
        types = data.get("event_types", list(EVENT_TYPES))
        remap = [EVENT_INDEX.get(t) for t in types]
        for name, ch in data.get("channels", {}).items():
            i = cat.index.get(name)
            if i is None:
                continue  # channel dropped from the catalogue
            for j, (n, t) in enumerate(zip(ch["counts"], ch["last"], strict=True)):
                k = remap[j]
                if k is not None:
                    agg.counts[i][k] = int(n)
                    agg.last[i][k] = float(t)
            agg.value[i] = float(ch["value"])
            agg.recent_sends[i] = [float(t) for t in ch["recent_sends"]]
            agg.opt_out[i] = float(ch["opt_out"])
            agg.opt_in[i] = float(ch["opt_in"])
        agg.how = [int(x) for x in data.get("how", agg.how)]
        agg.sent_hod = [int(x) for x in data.get("sent_hod", agg.sent_hod)]  # absent in aggregates stored before it
        agg.seen = {str(k): float(v) for k, v in data.get("seen", {}).items()}
        agg.first_ts = float(data.get("first_ts", 0.0))
        agg.last_ts = float(data.get("last_ts", 0.0))
        return agg

    def to_json(self, cat: Catalogue | None = None) -> str:
        return json.dumps(self.to_dict(cat), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, cat: Catalogue | None = None) -> Aggregate:
        return cls.from_dict(json.loads(text), cat)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Aggregate):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return f"Aggregate(events={self.n_events}, first_ts={self.first_ts}, last_ts={self.last_ts})"


def fold(agg: Aggregate, ev: FoldEvent) -> Aggregate:
    """Apply one event to the aggregate (a repeat of an event_id within DEDUPE_WINDOW of the newest event is
    ignored; older repeats are the caller's to prevent, as the aggregator does with its folded marks)."""
    event_id, c, e, ts, value = ev
    seen = agg.seen
    if event_id in seen:
        return agg
    seen[event_id] = ts
    newest = agg.last_ts
    if ts > newest:
        agg.last_ts = newest = ts
    if ts < agg.first_ts or agg.first_ts == 0.0:
        agg.first_ts = ts

    agg.counts[c][e] += 1
    last = agg.last[c]
    if ts > last[e]:
        last[e] = ts
    if e in ENGAGEMENT:
        agg.how[(int(ts // 3600) + _EPOCH_HOW_OFFSET) % HOURS_PER_WEEK] += 1
        if e == CONVERTED:
            agg.value[c] += value
    elif e == SENT:
        agg.sent_hod[int(ts // 3600) % HOURS_PER_DAY] += 1
        sends = agg.recent_sends[c]
        insort(sends, ts)
        if sends[0] < newest - CAP_WINDOW:
            agg.recent_sends[c] = [t for t in sends if t >= newest - CAP_WINDOW]
    elif e in (UNSUBSCRIBED, COMPLAINED):
        if ts > agg.opt_out[c]:
            agg.opt_out[c] = ts
    elif e == SUBSCRIBED and ts > agg.opt_in[c]:
        agg.opt_in[c] = ts

    if len(seen) > 64 and len(seen) & 63 == 0:
        _prune(agg)
    return agg


def _prune(agg: Aggregate) -> None:
    """Forget ids older than the window and sends older than the cap window (relative to the newest event)."""
    horizon = agg.last_ts - DEDUPE_WINDOW
    seen = agg.seen
    if seen and min(seen.values()) < horizon:  # rebuild only when something expired (the common case: not)
        seen = {k: t for k, t in seen.items() if t >= horizon}
    if len(seen) > SEEN_MAX:
        seen = dict(sorted(seen.items(), key=lambda kv: (kv[1], kv[0]))[-SEEN_MAX:])
    agg.seen = seen
    cut = agg.last_ts - CAP_WINDOW
    recent = agg.recent_sends
    for c, sends in enumerate(recent):
        if sends and sends[0] < cut:  # kept sorted by insort, so only the head can be stale
            recent[c] = [t for t in sends if t >= cut]


def normalise(agg: Aggregate) -> Aggregate:
    """Prune to the canonical form: call before storing or comparing so pruning timing never matters."""
    _prune(agg)
    return agg


def replay(events: list[FoldEvent], agg: Aggregate | None = None) -> Aggregate:
    """Fold events in order (offline replay helper); the result is normalised."""
    agg = agg or Aggregate.empty()
    for ev in events:
        fold(agg, ev)
    return normalise(agg)
