"""Touchpoints in the table: their item format and retention (TTL), idempotent conditional writes, time-ordered
reads.

A touchpoint is written once, conditional on its absence, in a transaction that also checks that the customer
has no live erasure tombstone; a second write of the same event_id is a `duplicate` (same payload) or a
`conflict` (another payload), and never replaces the first (docs/decisions.md §8-10).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from model.adapters.dynamodb import Item, batch_get, client, from_ddb, from_image, table_name, to_ddb, ts_key
from model.adapters.erasure import put_unless_erased
from model.adapters.table import BY_TIME, FOLDED, PK, SK, TS, TTL, customer_pk, touchpoint_sk
from model.domain.schemas import Touchpoint
from model.domain.settings import get_settings

Status = Literal["stored", "duplicate", "conflict", "erased"]


def retention(occurred_at: datetime, ttl_days: int | None = None) -> int:
    """Epoch seconds at which DynamoDB TTL may delete a touchpoint: occurred_at + touchpoint_ttl_days."""
    days = get_settings().touchpoint_ttl_days if ttl_days is None else ttl_days
    return int((occurred_at.astimezone(UTC) + timedelta(days=days)).timestamp())


def touchpoint_item(tp: Touchpoint, ttl_days: int | None = None) -> Item:
    """A touchpoint as a DynamoDB item (DynamoDB JSON)."""
    at = ts_key(tp.occurred_at)
    doc: dict[str, Any] = {
        PK: customer_pk(tp.customer_id),
        SK: touchpoint_sk(tp.event_id),
        TS: f"{at}#{tp.event_id}",  # event_id makes the LSI sort key unique among same-instant events
        "type": "TP",
        "event_id": tp.event_id,
        "customer_id": tp.customer_id,
        "channel": tp.channel,
        "event_type": tp.event_type.value,
        "occurred_at": at,
        "value": tp.value,
        TTL: retention(tp.occurred_at, ttl_days),
    }
    for name in ("campaign_id", "message_id", "decision_id"):
        if getattr(tp, name) is not None:
            doc[name] = getattr(tp, name)
    if tp.attributes:
        doc["attributes"] = dict(tp.attributes)
    return {k: to_ddb(v) for k, v in doc.items()}


def touchpoint_from_item(doc: dict[str, Any]) -> Touchpoint:
    fields = {k: doc[k] for k in Touchpoint.model_fields if k in doc}
    return Touchpoint.model_validate(fields)


_NOT_PAYLOAD = frozenset({FOLDED, TTL})  # added by the aggregator / derived from settings: not the client's event


def same_payload(stored: Item, new: Item) -> bool:
    """Whether two touchpoint items (DynamoDB JSON) carry the same event: equal attributes, numbers by value."""

    def payload(item: Item) -> dict[str, Any]:
        return {k: from_ddb(v) for k, v in item.items() if k not in _NOT_PAYLOAD}

    return payload(stored) == payload(new)


def put_touchpoints(tps: Sequence[Touchpoint], now: datetime | None = None) -> list[Status]:
    """Store touchpoints; per input: "stored"; "duplicate" when its event_id is already stored with the same
    payload; "conflict" when it is stored with another payload (the stored one stays: first write wins, in the
    table as in the aggregate); "erased" when the customer was erased less than ERASURE_TOMBSTONE_DAYS ago.

    One consistent BatchGetItem per 100 keys finds what is already stored (the common retry case costs no
    transaction); the new items are written with conditional puts (`attribute_not_exists`) in transactions
    that also check the customers' tombstones, so two concurrent writers of one event_id get one "stored" and
    one "duplicate"/"conflict", and nothing is written after an erasure. A repeat inside the request is judged
    against the first occurrence's outcome.
    """
    first: dict[tuple[str, str], int] = {}
    for i, tp in enumerate(tps):
        first.setdefault((customer_pk(tp.customer_id), touchpoint_sk(tp.event_id)), i)
    items = [touchpoint_item(tp) for tp in tps]
    stored = {(it[PK]["S"], it[SK]["S"]): it for it in batch_get([{PK: {"S": pk}, SK: {"S": sk}} for pk, sk in first])}
    statuses: list[Status | None] = [None] * len(tps)
    truth: dict[tuple[str, str], Item] = {}  # what the table holds under each key once we are done
    new = []
    for k in first:
        if k in stored:
            truth[k] = stored[k]
        else:
            new.append(k)
    outcomes = put_unless_erased([(tps[first[k]].customer_id, items[first[k]]) for k in new], only_new=True, now=now)
    for k, (outcome, old) in zip(new, outcomes, strict=True):
        if outcome == "stored":
            statuses[first[k]] = "stored"
            truth[k] = items[first[k]]
        elif outcome == "erased":
            statuses[first[k]] = "erased"
        elif old is not None:  # another writer stored this key since our read
            truth[k] = old
    for i, tp in enumerate(tps):
        if statuses[i] is not None:
            continue
        k = (customer_pk(tp.customer_id), touchpoint_sk(tp.event_id))
        if k not in truth:  # a repeat of an item refused because its customer is erased
            statuses[i] = statuses[first[k]]
        else:
            statuses[i] = "duplicate" if same_payload(truth[k], items[i]) else "conflict"
    return [s for s in statuses if s is not None]


def query_touchpoints(customer_id: str, start: datetime | None = None, end: datetime | None = None) -> list[Touchpoint]:
    """A customer's touchpoints in time order (LSI by_time), optionally within [start, end]."""
    names = {"#pk": PK}
    values: Item = {":pk": {"S": customer_pk(customer_id)}}
    cond = "#pk = :pk"
    lo = ts_key(start) if start else None
    hi = ts_key(end) + "#~" if end else None  # '~' sorts after every event_id character
    if lo or hi:
        names["#ts"] = TS
    if lo and hi:
        cond += " AND #ts BETWEEN :lo AND :hi"
        values.update({":lo": {"S": lo}, ":hi": {"S": hi}})
    elif lo:
        cond += " AND #ts >= :lo"
        values[":lo"] = {"S": lo}
    elif hi:
        cond += " AND #ts <= :hi"
        values[":hi"] = {"S": hi}
    out: list[Touchpoint] = []
    for page in (
        client()
        .get_paginator("query")
        .paginate(
            TableName=table_name(),
            IndexName=BY_TIME,
            KeyConditionExpression=cond,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    ):
        out.extend(touchpoint_from_item(from_image(item)) for item in page.get("Items", []))
    return out
