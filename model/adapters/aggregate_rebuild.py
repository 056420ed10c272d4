"""Rebuild a customer's aggregate from its stored touchpoints with the aggregator's fold (`nbc aggregate rebuild`).

The invariant of docs/decisions.md §8 is that the stored aggregate equals the fold of the customer's stored
touchpoints, each touchpoint folded once and marked `agg_version` in the transaction that wrote the aggregate.
A rebuild restores it in two steps, each as safe against a running aggregator as the aggregator itself:

1. The touchpoints already marked are replayed through the fold into a fresh aggregate, written in one
   transaction conditional on the aggregate's version (and on no live erasure tombstone). The version is read
   BEFORE the touchpoints: a fold that commits in between changes it, the write fails, and the rebuild reads
   again, so a touchpoint marked meanwhile is never left out.
2. Touchpoints not marked yet (in flight, or given up by the aggregator) are handed to `states.fold_touchpoints`,
   the aggregator's own exactly-once path, which folds and marks them; a concurrent aggregator folds each of
   them once between the two of them.

Touchpoints that DynamoDB's TTL has removed (older than touchpoint_ttl_days) no longer count after a rebuild,
as they would not in a replay for training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from model.adapters import aws, dynamodb, erasure, states
from model.adapters.table import AGG_SK, FOLDED, PK, SK, customer_pk, touchpoint_sk
from model.domain.aggregate import Aggregate, FoldEvent, replay
from model.domain.settings import get_settings

Item = dict[str, Any]
Outcome = Literal["changed", "unchanged", "erased", "empty"]
CUSTOMER_PREFIX, TP_PREFIX = customer_pk(""), touchpoint_sk("")


@dataclass
class Rebuilt:
    """What a rebuild did for one customer."""

    outcome: Outcome  # changed / unchanged against the aggregate stored before; erased; empty: nothing stored
    touchpoints: int = 0  # stored touchpoints read
    folded_late: int = 0  # of which were not folded yet and were folded (and marked) by this rebuild
    unreadable: int = 0  # stored touchpoints the fold cannot read (a channel no longer in the catalogue, ...)
    aggregate: Aggregate | None = None


def _ddb() -> Any:
    return aws.client("dynamodb")


def _stored_touchpoints(customer_id: str) -> list[Item]:
    """Every stored touchpoint of the customer (consistent reads of the base table, all pages)."""
    pages = (
        _ddb()
        .get_paginator("query")
        .paginate(
            TableName=get_settings().table_name,
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :tp)",
            ExpressionAttributeNames={"#pk": PK, "#sk": SK},
            ExpressionAttributeValues={":pk": {"S": customer_pk(customer_id)}, ":tp": {"S": TP_PREFIX}},
            ConsistentRead=True,
        )
    )
    return [item for page in pages for item in page.get("Items", [])]


def _events(items: list[Item]) -> tuple[list[FoldEvent], int]:
    """The fold's events of stored touchpoints in time order, and how many the fold cannot read."""
    events, unreadable = [], 0
    for item in items:
        try:
            event = states.fold_event_of_item(dynamodb.from_image(item))
        except (KeyError, TypeError, ValueError):
            event = None
        if event is None:
            unreadable += 1
        else:
            events.append(event)
    events.sort(key=lambda e: (e.ts, e.event_id))
    return events, unreadable


def rebuild_customer(customer_id: str) -> Rebuilt:
    """Recompute the customer's aggregate from its stored touchpoints; see the module's docstring."""
    for attempt in range(states.AGG_ATTEMPTS):
        now = datetime.now(UTC)
        if erasure.erased_customers([customer_id], now):
            return Rebuilt("erased")
        key = {PK: {"S": customer_pk(customer_id)}, SK: {"S": AGG_SK}}
        stored_item = _ddb().get_item(TableName=get_settings().table_name, Key=key, ConsistentRead=True).get("Item")
        before = Aggregate.from_json(stored_item["state"]["S"]) if stored_item else None
        version = int(stored_item["version"]["N"]) if stored_item else 0
        items = _stored_touchpoints(customer_id)  # after the version (see above)
        marked = [it for it in items if FOLDED in it]
        late = [it["event_id"]["S"] for it in items if FOLDED not in it]
        events, unreadable = _events(marked)
        # Nothing marked but an aggregate stored: it counts touchpoints no longer stored, and becomes empty.
        rebuilt = replay(events) if marked or before is not None else None
        if rebuilt is not None and rebuilt != before:
            # The aggregate's own item format and version condition (states'), plus the tombstone check.
            put = states.aggregate_put(customer_id, rebuilt, version)
            reasons = dynamodb.transact([erasure.not_erased(customer_id, now), put])
            if reasons is not None:
                if reasons[0].get("Code") == "ConditionalCheckFailed":
                    return Rebuilt("erased")
                dynamodb.backoff(min(attempt, 4))  # the aggregator wrote meanwhile: read again
                continue
        after = rebuilt if rebuilt is not None else before
        if late:
            outcome = states.fold_touchpoints(customer_id, late)
            if outcome.erased:
                return Rebuilt("erased")
            after = outcome.aggregate
            unreadable += outcome.unreadable
        if after is None:
            return Rebuilt("empty", touchpoints=len(items))
        changed: Outcome = "unchanged" if after == before else "changed"
        return Rebuilt(changed, len(items), len(late), unreadable, after)
    raise dynamodb.StoreUnavailableError(f"aggregate rebuild lost {states.AGG_ATTEMPTS} races in a row")


def customers_with_data() -> Iterator[str]:
    """The ids of customers with an aggregate or a touchpoint: a Scan of keys only (an operator's command; the
    functions never scan)."""
    seen: set[str] = set()
    pages = (
        _ddb()
        .get_paginator("scan")
        .paginate(
            TableName=get_settings().table_name,
            ProjectionExpression="#pk, #sk",
            FilterExpression="#sk = :agg OR begins_with(#sk, :tp)",
            ExpressionAttributeNames={"#pk": PK, "#sk": SK},
            ExpressionAttributeValues={":agg": {"S": AGG_SK}, ":tp": {"S": TP_PREFIX}},
        )
    )
    for page in pages:
        for item in page.get("Items", []):
            pk = item[PK]["S"]
            if pk.startswith(CUSTOMER_PREFIX) and pk not in seen:
                seen.add(pk)
                yield pk.removeprefix(CUSTOMER_PREFIX)
