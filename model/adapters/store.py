"""DynamoDB access for the domain: touchpoints, the per-customer aggregate, profiles, erasure.

Keys come from model/table.py. Batch calls retry UnprocessedKeys/UnprocessedItems and throttling with
exponential backoff and full jitter, a bounded number of times; when the budget is spent they raise
`StoreUnavailableError` so the caller reports a failure (HTTP 503, SQS redelivery) and nothing is silently lost.

Three invariants hold whatever the concurrency, redelivery or order (docs/decisions.md §8-10):

- A touchpoint is written once, conditional on its absence, in a transaction that also checks that the
  customer has no live erasure tombstone; a second write of the same event_id is a `duplicate` (same payload)
  or a `conflict` (another payload), and never replaces the first.
- The aggregate is folded exactly once per stored touchpoint: the transaction that writes the aggregate
  (conditional on its version) also marks each folded touchpoint with `agg_version` (conditional on it being
  unmarked), so the stored aggregate equals a replay of the customer's stored touchpoints through the fold.
- After an erasure, nothing of the customer is written while its tombstone lives (ERASURE_TOMBSTONE_DAYS):
  every writer of a customer's items checks the tombstone in the same transaction as its write.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar

from botocore.exceptions import ClientError
from pydantic import ValidationError

from model.adapters import aws
from model.adapters.table import (
    AGG_SK,
    BY_TIME,
    ERASED_SK,
    FOLDED,
    PK,
    PROFILE_SK,
    SK,
    TS,
    TTL,
    customer_pk,
    touchpoint_sk,
)
from model.domain.aggregate import Aggregate, FoldEvent, fold, normalise
from model.domain.catalogue import catalogue
from model.domain.schemas import EVENT_INDEX, Profile, Touchpoint
from model.domain.settings import get_settings

Status = Literal["stored", "duplicate", "conflict", "erased"]
Item = dict[str, Any]
T = TypeVar("T")

WRITE_CHUNK = 25  # BatchWriteItem limit
READ_CHUNK = 100  # BatchGetItem limit
MAX_ATTEMPTS = 10  # per batch call, including the first
BASE_DELAY = 0.05  # seconds; the n-th retry sleeps uniform(0, min(MAX_DELAY, BASE_DELAY * 2**n))
MAX_DELAY = 3.0
AGG_ATTEMPTS = 20  # optimistic-concurrency retries of the aggregate
TRANSACT_MAX = 100  # TransactWriteItems limit (actions per call; 100 touchpoints of <= ~8 KB stay far below 4 MB)
# An erasure's tombstone outlives every copy of the customer's data still in flight: stream records (24 h
# retention, MaximumRecordAgeInSeconds 86400) and SQS messages (touchpoint queue 4 days, its DLQ 14 days, the
# SQS maximum). Until it expires nothing of the customer is written; afterwards the id is a new customer.
ERASURE_TOMBSTONE_DAYS = 15
THROTTLING = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "InternalServerError"}
)
TRANSIENT = THROTTLING | {"TransactionConflictException", "TransactionInProgressException"}
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, so TS sorts lexicographically in time order

_sleep: Callable[[float], None] = time.sleep  # tests may replace it to run the backoff instantly


class StoreUnavailableError(RuntimeError):
    """DynamoDB kept throttling or leaving work unprocessed past the retry budget; nothing was lost silently."""


class CustomerErasedError(RuntimeError):
    """The customer was erased less than ERASURE_TOMBSTONE_DAYS ago: nothing of it may be written until then."""

    def __init__(self, customer_id: str) -> None:
        super().__init__("the customer was erased; no data of it is accepted while the erasure tombstone lives")
        self.customer_id = customer_id


# --- low-level helpers -----------------------------------------------------------------------------------


def _table() -> str:
    return get_settings().table_name


def _ddb() -> Any:
    return aws.client("dynamodb")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _backoff(attempt: int) -> None:
    _sleep(random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt)))  # full jitter


def _throttled(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code") in THROTTLING


def _to_ddb(value: Any) -> Item:
    """Plain Python (JSON-like) value -> DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float | Decimal):
        return {"N": str(Decimal(str(value)))}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {str(k): _to_ddb(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [_to_ddb(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__}")


def _from_ddb(attr: Item) -> Any:
    """DynamoDB attribute value -> plain Python (numbers as int or float)."""
    ((kind, value),) = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() and "." not in value else float(number)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: _from_ddb(v) for k, v in value.items()}
    if kind == "L":
        return [_from_ddb(v) for v in value]
    if kind == "SS":
        return list(value)
    raise TypeError(f"unsupported DynamoDB type {kind}")


def from_image(image: Item) -> dict[str, Any]:
    """A whole item (or stream NewImage) in DynamoDB JSON -> plain dict."""
    return {k: _from_ddb(v) for k, v in image.items()}


def _key(customer_id: str, sk: str) -> Item:
    return {PK: {"S": customer_pk(customer_id)}, SK: {"S": sk}}


def batch_get(keys: Sequence[Item], projection: str | None = None, consistent: bool = True) -> list[Item]:
    """BatchGetItem over any number of keys, retrying UnprocessedKeys and throttling."""
    ddb, table, found = _ddb(), _table(), []
    for chunk in _chunks(keys, READ_CHUNK):
        request: Item = {"Keys": list(chunk), "ConsistentRead": consistent}
        if projection:
            request["ProjectionExpression"] = projection
        pending: Item = {table: request}
        for attempt in range(MAX_ATTEMPTS):
            try:
                resp = ddb.batch_get_item(RequestItems=pending)
            except ClientError as err:
                if not _throttled(err):
                    raise
            else:
                found.extend(resp.get("Responses", {}).get(table, []))
                pending = resp.get("UnprocessedKeys") or {}
                if not pending:
                    break
            if attempt + 1 < MAX_ATTEMPTS:
                _backoff(attempt)
        else:
            raise StoreUnavailableError(f"BatchGetItem still incomplete after {MAX_ATTEMPTS} attempts")
    return found


def batch_write(requests: Sequence[Item]) -> None:
    """BatchWriteItem (puts or deletes) in chunks of 25, retrying UnprocessedItems and throttling."""
    ddb, table = _ddb(), _table()
    for chunk in _chunks(requests, WRITE_CHUNK):
        pending: Item = {table: list(chunk)}
        for attempt in range(MAX_ATTEMPTS):
            try:
                resp = ddb.batch_write_item(RequestItems=pending)
            except ClientError as err:
                if not _throttled(err):
                    raise
            else:
                pending = resp.get("UnprocessedItems") or {}
                if not pending:
                    break
            if attempt + 1 < MAX_ATTEMPTS:
                _backoff(attempt)
        else:
            left = sum(len(v) for v in pending.values())
            raise StoreUnavailableError(f"BatchWriteItem left {left} items unprocessed after {MAX_ATTEMPTS} attempts")


RETRYABLE_CANCELLATIONS = frozenset({"None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


def transact(actions: Sequence[Item]) -> list[Item] | None:
    """One TransactWriteItems: None once it committed, else its cancellation reasons (one per action, in order)
    when a condition failed. Conflicts with concurrent transactions and throttling are retried with backoff;
    past the budget, StoreUnavailableError. botocore gives each call an idempotency token (ClientRequestToken)
    that its own retries reuse, so a commit whose answer was lost is not applied twice."""
    ddb = _ddb()
    for attempt in range(MAX_ATTEMPTS):
        try:
            ddb.transact_write_items(TransactItems=list(actions))
            return None
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code")
            if code == "TransactionCanceledException":
                reasons: list[Item] = [dict(r) for r in err.response.get("CancellationReasons") or []]
                codes = {str(r.get("Code", "None")) for r in reasons}
                if "ConditionalCheckFailed" in codes:
                    return reasons
                if not reasons or not codes <= RETRYABLE_CANCELLATIONS:
                    raise
            elif code not in TRANSIENT:
                raise
        if attempt + 1 < MAX_ATTEMPTS:
            _backoff(attempt)
    raise StoreUnavailableError(f"TransactWriteItems still conflicting or throttled after {MAX_ATTEMPTS} attempts")


def _failed(reason: Item) -> bool:
    return reason.get("Code") == "ConditionalCheckFailed"


# --- erasure tombstones ----------------------------------------------------------------------------------


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def tombstone_item(customer_id: str, at: datetime) -> Item:
    """The erasure tombstone: when, and until when nothing of the customer is accepted (TTL)."""
    return {
        **_key(customer_id, ERASED_SK),
        "type": {"S": "ERASED"},
        "erased_at": {"S": ts_key(at)},
        TTL: {"N": str(_epoch(at + timedelta(days=ERASURE_TOMBSTONE_DAYS)))},
    }


def _live(tombstone: Item | None, now: datetime) -> bool:
    """A tombstone counts until its TTL, even if DynamoDB has not deleted it yet (that takes up to days)."""
    return tombstone is not None and int(tombstone[TTL]["N"]) > _epoch(now)


def not_erased(customer_id: str, now: datetime | None = None) -> Item:
    """A transaction action that fails when the customer has a live tombstone: put it beside every write of a
    customer's items, so that no write can land after an erasure has begun."""
    return {
        "ConditionCheck": {
            "TableName": _table(),
            "Key": _key(customer_id, ERASED_SK),
            "ConditionExpression": "attribute_not_exists(#pk) OR #ttl <= :now",
            "ExpressionAttributeNames": {"#pk": PK, "#ttl": TTL},
            "ExpressionAttributeValues": {":now": {"N": str(_epoch(now or _now()))}},
        }
    }


def erased_customers(customer_ids: Iterable[str], now: datetime | None = None) -> set[str]:
    """The customers among these with a live erasure tombstone (one BatchGetItem per 100)."""
    now = now or _now()
    unique = list(dict.fromkeys(customer_ids))
    by_pk = {customer_pk(c): c for c in unique}
    found = batch_get([_key(c, ERASED_SK) for c in unique])
    return {by_pk[it[PK]["S"]] for it in found if _live(it, now) and it[PK]["S"] in by_pk}


PutOutcome = Literal["stored", "erased", "exists"]


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
    now = now or _now()
    table = _table()
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
                if not _failed(reason):
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
        _backoff(min(attempt, 4))
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


# --- touchpoints -----------------------------------------------------------------------------------------


def ts_key(occurred_at: datetime) -> str:
    return occurred_at.astimezone(UTC).strftime(TS_FORMAT)


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
    return {k: _to_ddb(v) for k, v in doc.items()}


def touchpoint_from_item(doc: dict[str, Any]) -> Touchpoint:
    fields = {k: doc[k] for k in Touchpoint.model_fields if k in doc}
    return Touchpoint.model_validate(fields)


_NOT_PAYLOAD = frozenset({FOLDED, TTL})  # added by the aggregator / derived from settings: not the client's event


def same_payload(stored: Item, new: Item) -> bool:
    """Whether two touchpoint items (DynamoDB JSON) carry the same event: equal attributes, numbers by value."""

    def payload(item: Item) -> dict[str, Any]:
        return {k: _from_ddb(v) for k, v in item.items() if k not in _NOT_PAYLOAD}

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
        _ddb()
        .get_paginator("query")
        .paginate(
            TableName=_table(),
            IndexName=BY_TIME,
            KeyConditionExpression=cond,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    ):
        out.extend(touchpoint_from_item(from_image(item)) for item in page.get("Items", []))
    return out


# --- profile and consent ---------------------------------------------------------------------------------


def _profile_from(doc: dict[str, Any]) -> Profile:
    fields = {k: doc[k] for k in Profile.model_fields if k in doc and doc[k] is not None}
    try:
        return Profile.model_validate(fields)
    except ValidationError as err:
        # Configuration or rules changed since it was stored (an attribute no longer declared, quiet hours with a
        # zone suffix, a time zone that is not an IANA key): keep the fields that are still valid.
        for name in {str(e["loc"][0]) for e in err.errors() if e.get("loc")} | {"attributes"}:
            fields.pop(name, None)
        return Profile.model_validate(fields)


def put_profile(customer_id: str, profile: Profile) -> None:
    """Replace the customer's profile; CustomerErasedError while the customer's erasure tombstone lives."""
    doc = profile.model_dump(mode="json")
    doc.update({PK: customer_pk(customer_id), SK: PROFILE_SK, "type": "PROFILE", "updated_at": ts_key(_now())})
    put = {"Put": {"TableName": _table(), "Item": {k: _to_ddb(v) for k, v in doc.items()}}}
    if transact([not_erased(customer_id), put]) is not None:
        raise CustomerErasedError(customer_id)


def get_profile(customer_id: str) -> Profile | None:
    resp = _ddb().get_item(TableName=_table(), Key=_key(customer_id, PROFILE_SK), ConsistentRead=True)
    item = resp.get("Item")
    return _profile_from(from_image(item)) if item else None


def revoke_consent(customer_id: str, channel: str, at: datetime) -> None:
    """Close one channel's consent now (an unsubscribe or complaint), creating the profile if needed. Nothing
    happens for an erased customer (its tombstone is checked in the same transaction)."""
    table, key = _table(), _key(customer_id, PROFILE_SK)
    stamp = {":at": {"S": ts_key(at)}, ":f": {"BOOL": False}}
    close = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": "SET consent.#ch = :f, updated_at = :at",
        "ConditionExpression": "attribute_exists(consent)",
        "ExpressionAttributeNames": {"#ch": channel},
        "ExpressionAttributeValues": stamp,
    }
    create = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": "SET consent = :c, updated_at = :at, #type = :t, #tz = if_not_exists(#tz, :tz)",
        "ConditionExpression": "attribute_not_exists(consent)",
        "ExpressionAttributeNames": {"#type": "type", "#tz": "timezone"},
        "ExpressionAttributeValues": {
            ":c": {"M": {channel: {"BOOL": False}}},
            ":at": stamp[":at"],
            ":t": {"S": "PROFILE"},
            ":tz": {"S": "UTC"},
        },
    }
    for _ in range(3):  # at most one race with a concurrent create
        for update in (close, create):
            reasons = transact([not_erased(customer_id), {"Update": update}])
            if reasons is None or _failed(reasons[0]):
                return  # closed, or the customer is erased: nothing left to close
    raise StoreUnavailableError("could not revoke consent: the profile kept changing")


# --- aggregate -------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


State = tuple[Aggregate | None, Profile | None]


def get_states(customer_ids: Sequence[str]) -> dict[str, State]:
    """Aggregate and profile of each customer, (None, None) for an unknown one, in BatchGetItem calls of 100
    keys. Eventually consistent: half the read cost, and a state a few hundred milliseconds old is as good
    for a recommendation."""
    unique = list(dict.fromkeys(customer_ids))
    by_pk = {customer_pk(cid): cid for cid in unique}
    aggs: dict[str, Aggregate] = {}
    profiles: dict[str, Profile] = {}
    keys = [_key(cid, sk) for cid in unique for sk in (AGG_SK, PROFILE_SK)]
    for item in batch_get(keys, consistent=False):
        cid = by_pk.get(item[PK]["S"])
        if cid is None:
            continue
        if item[SK]["S"] == AGG_SK:
            aggs[cid] = Aggregate.from_json(item["state"]["S"])
        elif item[SK]["S"] == PROFILE_SK:
            profiles[cid] = _profile_from(from_image(item))
    return {cid: (aggs.get(cid), profiles.get(cid)) for cid in unique}


def get_state(customer_id: str) -> State:
    """The scoring path's read: one customer's aggregate and profile in one BatchGetItem."""
    return get_states([customer_id])[customer_id]


def _aggregate_put(customer_id: str, agg: Aggregate, version: int) -> Item:
    """The transaction action writing `agg` as version + 1, conditional on the stored version being `version`."""
    put: Item = {
        "TableName": _table(),
        "Item": {
            **_key(customer_id, AGG_SK),
            "type": {"S": "AGG"},
            "state": {"S": agg.to_json()},
            "version": {"N": str(version + 1)},
            "updated_at": {"S": ts_key(_now())},
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
            "TableName": _table(),
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
    keys = [_key(customer_id, ERASED_SK), _key(customer_id, AGG_SK)]
    keys += [_key(customer_id, touchpoint_sk(e)) for e in ids]
    outcome = FoldOutcome()
    for attempt in range(AGG_ATTEMPTS):
        now = _now()
        by_sk = {it[SK]["S"]: it for it in batch_get(keys)}
        if _live(by_sk.get(ERASED_SK), now):
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
        for chunk in _chunks(todo, TRANSACT_MAX - 2):  # + the aggregate and the tombstone check
            for item in chunk:
                try:
                    event = fold_event_of_item(from_image(item))
                except (KeyError, TypeError, ValueError):
                    event = None
                    outcome.unreadable += 1
                if event is not None:
                    fold(agg, event)
            normalise(agg)
            actions = [not_erased(customer_id, now), _aggregate_put(customer_id, agg, version)]
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
        _backoff(min(attempt, 4))
    raise StoreUnavailableError(f"aggregate update lost {AGG_ATTEMPTS} races in a row")


def apply_to_aggregate(customer_id: str, events: Iterable[FoldEvent]) -> Aggregate:
    """Fold the given events (not stored touchpoints) into the aggregate with optimistic concurrency on its
    `version`: seeding and tests. The stream path is `fold_touchpoints`, which folds stored touchpoints exactly
    once; this one de-duplicates only through the fold's window of recent ids. CustomerErasedError for an
    erased customer."""
    ddb, table, key = _ddb(), _table(), _key(customer_id, AGG_SK)
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
        reasons = transact([not_erased(customer_id), _aggregate_put(customer_id, agg, version)])
        if reasons is None:
            return agg
        if _failed(reasons[0]):
            raise CustomerErasedError(customer_id)
        _backoff(min(attempt, 4))  # another writer won: re-read and fold again
    raise StoreUnavailableError(f"aggregate update lost {AGG_ATTEMPTS} races in a row")


# --- erasure ---------------------------------------------------------------------------------------------


def erase_customer(customer_id: str, now: datetime | None = None) -> int:
    """Erase the customer: write its tombstone, then delete every other item of it (touchpoints, aggregate,
    profile, decisions); return how many were deleted.

    The tombstone comes first: every writer of a customer's items checks it in the same transaction as its
    write, so once it is stored no write can land, and the consistent Query that follows sees every write that
    landed before. In-flight stream records and SQS redeliveries of the customer find it and change nothing
    (the aggregator deletes whatever it would otherwise have folded). It lives ERASURE_TOMBSTONE_DAYS (TTL);
    erasing again renews it.
    """
    ddb, table, pk = _ddb(), _table(), customer_pk(customer_id)
    ddb.put_item(TableName=table, Item=tombstone_item(customer_id, now or _now()))
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
