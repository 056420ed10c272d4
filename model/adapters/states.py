"""The per-customer aggregate and the state scoring reads (aggregate + profile).

The aggregate is folded exactly once per stored touchpoint: the transaction that writes the aggregate
(conditional on its version) also marks each folded touchpoint with `agg_version` (conditional on it being
unmarked), so the stored aggregate equals a replay of the customer's stored touchpoints through the fold
(docs/decisions.md §8-10).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from model.adapters.dynamodb import (
    TRANSACT_MAX,
    Item,
    StoreUnavailableError,
    backoff,
    batch_get,
    batch_write,
    chunks,
    client,
    condition_failed,
    from_image,
    item_key,
    table_name,
    transact,
    ts_key,
    utc_now,
)
from model.adapters.erasure import CustomerErasedError, not_erased, tombstone_lives
from model.adapters.profiles import profile_from
from model.adapters.table import AGG_SK, ERASED_SK, FOLDED, PK, PROFILE_SK, SK, customer_pk, touchpoint_sk
from model.domain.aggregate import Aggregate, FoldEvent, fold, normalise
from model.domain.catalogue import catalogue
from model.domain.schemas import EVENT_INDEX, Profile

AGG_ATTEMPTS = 20  # optimistic-concurrency retries of the aggregate

State = tuple[Aggregate | None, Profile | None]


def get_states(customer_ids: Sequence[str]) -> dict[str, State]:
    """Aggregate and profile of each customer, (None, None) for an unknown one, in BatchGetItem calls of 100
    keys. Eventually consistent: half the read cost, and a state a few hundred milliseconds old is as good
    for a recommendation."""
    unique = list(dict.fromkeys(customer_ids))
    by_pk = {customer_pk(cid): cid for cid in unique}
    aggs: dict[str, Aggregate] = {}
    profiles: dict[str, Profile] = {}
    keys = [item_key(cid, sk) for cid in unique for sk in (AGG_SK, PROFILE_SK)]
    for item in batch_get(keys, consistent=False):
        cid = by_pk.get(item[PK]["S"])
        if cid is None:
            continue
        if item[SK]["S"] == AGG_SK:
            aggs[cid] = Aggregate.from_json(item["state"]["S"])
        elif item[SK]["S"] == PROFILE_SK:
            profiles[cid] = profile_from(from_image(item))
    return {cid: (aggs.get(cid), profiles.get(cid)) for cid in unique}


def get_state(customer_id: str) -> State:
    """The scoring path's read: one customer's aggregate and profile in one BatchGetItem."""
    return get_states([customer_id])[customer_id]


def aggregate_put(customer_id: str, agg: Aggregate, version: int) -> Item:
    """The transaction action writing `agg` as version + 1, conditional on the stored version being `version`."""
    put: Item = {
        "TableName": table_name(),
        "Item": {
            **item_key(customer_id, AGG_SK),
            "type": {"S": "AGG"},
            "state": {"S": agg.to_json()},
            "version": {"N": str(version + 1)},
            "updated_at": {"S": ts_key(utc_now())},
        },
    }
    if version:
        put.update(
            ConditionExpression="#v = :v",
            ExpressionAttributeNames={"#v": "version"},
            ExpressionAttributeValues={":v": {"N": str(version)}},
        )
    else:
        put.update(ConditionExpression="attribute_not_exists(#pk)", ExpressionAttributeNames={"#pk": PK})
    return {"Put": put}


def _mark_folded(key: Item, version: int) -> Item:
    """The transaction action marking a stored, not yet folded touchpoint as folded by aggregate `version`."""
    return {
        "Update": {
            "TableName": table_name(),
            "Key": key,
            "UpdateExpression": "SET #f = :v",
            "ConditionExpression": "attribute_exists(#pk) AND attribute_not_exists(#f)",
            "ExpressionAttributeNames": {"#f": FOLDED, "#pk": PK},
            "ExpressionAttributeValues": {":v": {"N": str(version)}},
        }
    }


def fold_event_of_item(doc: dict[str, Any]) -> FoldEvent | None:
    """The fold's view of a stored touchpoint (plain dict); None when its channel left the catalogue."""
    channel = catalogue().index.get(str(doc["channel"]))
    if channel is None:
        return None
    ts = datetime.fromisoformat(str(doc["occurred_at"])).timestamp()
    return FoldEvent(str(doc["event_id"]), channel, EVENT_INDEX[doc["event_type"]], ts, float(doc.get("value") or 0))


@dataclass
class FoldOutcome:
    """What `fold_touchpoints` did for one customer."""

    folded: int = 0  # touchpoints folded into the aggregate by this call
    skipped: int = 0  # already folded (a redelivery), or no longer stored (erased, expired)
    unreadable: int = 0  # stored touchpoints the fold cannot read (marked folded, not counted)
    erased: bool = False  # the customer has a live tombstone: nothing folded, leftovers deleted
    aggregate: Aggregate | None = None


def fold_touchpoints(customer_id: str, event_ids: Iterable[str]) -> FoldOutcome:
    """Fold the customer's stored touchpoints with these event ids into its aggregate, each exactly once.

    Reads (consistently, in one BatchGetItem) the tombstone, the aggregate and the touchpoints; folds the
    stored payload of every touchpoint not yet marked `agg_version`, and writes in ONE transaction the
    aggregate (conditional on its version), the marks (conditional on the touchpoints existing unmarked) and
    the tombstone check. Whatever the redelivery, order, age of the events or concurrency, every stored
    touchpoint is folded once: a redelivered record finds its touchpoint marked, a concurrent writer makes the
    transaction fail and the loop read again. A touchpoint no longer stored (erased, expired) is not folded.
    For a customer with a live tombstone nothing is folded and whatever of it the read found is deleted.
    """
    ids = list(dict.fromkeys(event_ids))
    keys = [item_key(customer_id, ERASED_SK), item_key(customer_id, AGG_SK)]
    keys += [item_key(customer_id, touchpoint_sk(e)) for e in ids]
    outcome = FoldOutcome()
    for attempt in range(AGG_ATTEMPTS):
        now = utc_now()
        by_sk = {it[SK]["S"]: it for it in batch_get(keys)}
        if tombstone_lives(by_sk.get(ERASED_SK), now):
            leftovers = [
                {"DeleteRequest": {"Key": {PK: it[PK], SK: it[SK]}}} for k, it in by_sk.items() if k != ERASED_SK
            ]
            batch_write(leftovers)  # only a writer that ignores tombstones could have left any
            return FoldOutcome(folded=outcome.folded, skipped=len(ids) - outcome.folded, erased=True)
        stored = by_sk.get(AGG_SK)
        agg = Aggregate.from_json(stored["state"]["S"]) if stored else Aggregate.empty()
        version = int(stored["version"]["N"]) if stored else 0
        todo = [by_sk[sk] for e in ids if (sk := touchpoint_sk(e)) in by_sk and FOLDED not in by_sk[sk]]
        outcome.skipped = len(ids) - outcome.folded - len(todo)
        outcome.aggregate = agg if stored else None
        raced = False
        for chunk in chunks(todo, TRANSACT_MAX - 2):  # + the aggregate and the tombstone check
            for item in chunk:
                try:
                    event = fold_event_of_item(from_image(item))
                except (KeyError, TypeError, ValueError):
                    event = None
                    outcome.unreadable += 1
                if event is not None:
                    fold(agg, event)
            normalise(agg)
            actions = [not_erased(customer_id, now), aggregate_put(customer_id, agg, version)]
            actions += [_mark_folded({PK: it[PK], SK: it[SK]}, version + 1) for it in chunk]
            if transact(actions) is not None:
                raced = True  # another aggregator, an erasure: read again
                break
            version += 1
            outcome.folded += len(chunk)
            outcome.aggregate = agg
        if not raced:
            return outcome
        outcome.unreadable = 0
        backoff(min(attempt, 4))
    raise StoreUnavailableError(f"aggregate update lost {AGG_ATTEMPTS} races in a row")


def apply_to_aggregate(customer_id: str, events: Iterable[FoldEvent]) -> Aggregate:
    """Fold the given events (not stored touchpoints) into the aggregate with optimistic concurrency on its
    `version`: seeding and tests. The stream path is `fold_touchpoints`, which folds stored touchpoints exactly
    once; this one de-duplicates only through the fold's window of recent ids. CustomerErasedError for an
    erased customer."""
    ddb, table, key = client(), table_name(), item_key(customer_id, AGG_SK)
    events = list(events)
    for attempt in range(AGG_ATTEMPTS):
        item = ddb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        if item:
            agg, version = Aggregate.from_json(item["state"]["S"]), int(item["version"]["N"])
        else:
            agg, version = Aggregate.empty(), 0
        for ev in events:
            fold(agg, ev)
        normalise(agg)
        reasons = transact([not_erased(customer_id), aggregate_put(customer_id, agg, version)])
        if reasons is None:
            return agg
        if condition_failed(reasons[0]):
            raise CustomerErasedError(customer_id)
        backoff(min(attempt, 4))  # another writer won: re-read and fold again
    raise StoreUnavailableError(f"aggregate update lost {AGG_ATTEMPTS} races in a row")
