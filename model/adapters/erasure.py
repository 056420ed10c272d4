"""A customer's erasure and its tombstone, and the writes that respect it.

After an erasure, nothing of the customer is written while its tombstone lives (ERASURE_TOMBSTONE_DAYS): every
writer of a customer's items checks the tombstone in the same transaction as its write (`not_erased`, or
`put_unless_erased` for puts of many customers' items) (docs/decisions.md §8-10).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Literal

from model.adapters.dynamodb import (
    MAX_ATTEMPTS,
    TRANSACT_MAX,
    Item,
    StoreUnavailableError,
    backoff,
    batch_get,
    batch_write,
    client,
    condition_failed,
    item_key,
    table_name,
    transact,
    ts_key,
    utc_now,
)
from model.adapters.table import ERASED_SK, PK, SK, TTL, customer_pk

# An erasure's tombstone outlives every copy of the customer's data still in flight: stream records (24 h
# retention, MaximumRecordAgeInSeconds 86400) and SQS messages (touchpoint queue 4 days, its DLQ 14 days, the
# SQS maximum). Until it expires nothing of the customer is written; afterwards the id is a new customer.
ERASURE_TOMBSTONE_DAYS = 15

PutOutcome = Literal["stored", "erased", "exists"]


class CustomerErasedError(RuntimeError):
    """The customer was erased less than ERASURE_TOMBSTONE_DAYS ago: nothing of it may be written until then."""

    def __init__(self, customer_id: str) -> None:
        super().__init__("the customer was erased; no data of it is accepted while the erasure tombstone lives")
        self.customer_id = customer_id


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def tombstone_item(customer_id: str, at: datetime) -> Item:
    """The erasure tombstone: when, and until when nothing of the customer is accepted (TTL)."""
    return {
        **item_key(customer_id, ERASED_SK),
        "type": {"S": "ERASED"},
        "erased_at": {"S": ts_key(at)},
        TTL: {"N": str(_epoch(at + timedelta(days=ERASURE_TOMBSTONE_DAYS)))},
    }


def tombstone_lives(tombstone: Item | None, now: datetime) -> bool:
    """A tombstone counts until its TTL, even if DynamoDB has not deleted it yet (that takes up to days)."""
    return tombstone is not None and int(tombstone[TTL]["N"]) > _epoch(now)


def not_erased(customer_id: str, now: datetime | None = None) -> Item:
    """A transaction action that fails when the customer has a live tombstone: put it beside every write of a
    customer's items, so that no write can land after an erasure has begun."""
    return {
        "ConditionCheck": {
            "TableName": table_name(),
            "Key": item_key(customer_id, ERASED_SK),
            "ConditionExpression": "attribute_not_exists(#pk) OR #ttl <= :now",
            "ExpressionAttributeNames": {"#pk": PK, "#ttl": TTL},
            "ExpressionAttributeValues": {":now": {"N": str(_epoch(now or utc_now()))}},
        }
    }


def erased_customers(customer_ids: Iterable[str], now: datetime | None = None) -> set[str]:
    """The customers among these with a live erasure tombstone (one BatchGetItem per 100)."""
    now = now or utc_now()
    unique = list(dict.fromkeys(customer_ids))
    by_pk = {customer_pk(c): c for c in unique}
    found = batch_get([item_key(c, ERASED_SK) for c in unique])
    return {by_pk[it[PK]["S"]] for it in found if tombstone_lives(it, now) and it[PK]["S"] in by_pk}


def put_unless_erased(
    entries: Sequence[tuple[str, Item]], *, only_new: bool, now: datetime | None = None
) -> list[tuple[PutOutcome, Item | None]]:
    """Put items of customers, each in a transaction with its customer's tombstone check; per entry:
    ("stored", None), ("erased", None) when the customer has a live tombstone, or, with `only_new` (the put is
    conditional on the key's absence), ("exists", the item already stored under that key).

    Entries are grouped by customer into transactions of at most 100 actions (one check per customer and
    transaction). A failed condition cancels its whole transaction: the reasons say which entries failed, and
    the others are tried again in the next round. The keys must be distinct.
    """
    now = now or utc_now()
    table = table_name()
    out: list[tuple[PutOutcome, Item | None] | None] = [None] * len(entries)
    erased: set[str] = set()
    todo = sorted(range(len(entries)), key=lambda i: entries[i][0])
    for attempt in range(MAX_ATTEMPTS):
        retry: list[int] = []
        for chunk in _customer_chunks(todo, entries):
            actions: list[Item] = []
            owners: list[str | int] = []  # per action: the customer of a tombstone check, or the entry of a put
            checked: set[str] = set()
            for i in chunk:
                customer, item = entries[i]
                if customer not in checked:
                    checked.add(customer)
                    actions.append(not_erased(customer, now))
                    owners.append(customer)
                put: Item = {"TableName": table, "Item": item}
                if only_new:
                    put.update(
                        ConditionExpression="attribute_not_exists(#pk)",
                        ExpressionAttributeNames={"#pk": PK},
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
                actions.append({"Put": put})
                owners.append(i)
            reasons = transact(actions)
            if reasons is None:
                for i in chunk:
                    out[i] = ("stored", None)
                continue
            for owner, reason in zip(owners, reasons, strict=False):
                if not condition_failed(reason):
                    continue
                if isinstance(owner, str):
                    erased.add(owner)
                elif reason.get("Item"):
                    out[owner] = ("exists", reason["Item"])
            for i in chunk:
                if entries[i][0] in erased:
                    out[i] = ("erased", None)
                elif out[i] is None:
                    retry.append(i)
        todo = retry
        if not todo:
            return [o for o in out if o is not None]
        backoff(min(attempt, 4))
    raise StoreUnavailableError(f"{len(todo)} items kept losing races after {MAX_ATTEMPTS} rounds")


def _customer_chunks(order: Sequence[int], entries: Sequence[tuple[str, Item]]) -> Iterator[list[int]]:
    """Consecutive runs of `order` (sorted by customer) whose puts plus one check per customer fit a transaction."""
    chunk: list[int] = []
    customers: set[str] = set()
    for i in order:
        customer = entries[i][0]
        extra = 1 if customer in customers else 2
        if len(chunk) + len(customers) + extra > TRANSACT_MAX:
            yield chunk
            chunk, customers = [], set()
        chunk.append(i)
        customers.add(customer)
    if chunk:
        yield chunk


def erase_customer(customer_id: str, now: datetime | None = None) -> int:
    """Erase the customer: write its tombstone, then delete every other item of it (touchpoints, aggregate,
    profile, decisions); return how many were deleted.

    The tombstone comes first: every writer of a customer's items checks it in the same transaction as its
    write, so once it is stored no write can land, and the consistent Query that follows sees every write that
    landed before. In-flight stream records and SQS redeliveries of the customer find it and change nothing
    (the aggregator deletes whatever it would otherwise have folded). It lives ERASURE_TOMBSTONE_DAYS (TTL);
    erasing again renews it.
    """
    ddb, table, pk = client(), table_name(), customer_pk(customer_id)
    ddb.put_item(TableName=table, Item=tombstone_item(customer_id, now or utc_now()))
    deleted = 0
    for _ in range(3):  # the second pass finds nothing unless something ignored the tombstone
        keys: list[Item] = []
        for page in ddb.get_paginator("query").paginate(
            TableName=table,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": PK, "#sk": SK},
            ExpressionAttributeValues={":pk": {"S": pk}},
            ProjectionExpression="#pk, #sk",
            ConsistentRead=True,
        ):
            keys.extend(k for k in page.get("Items", []) if k[SK]["S"] != ERASED_SK)
        if not keys:
            break
        batch_write([{"DeleteRequest": {"Key": k}} for k in keys])
        deleted += len(keys)
    return deleted
