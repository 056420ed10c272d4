"""DynamoDB access for the domain: touchpoints, the per-customer aggregate, profiles, erasure.

Keys come from model/table.py. Batch calls retry UnprocessedKeys/UnprocessedItems and throttling with
exponential backoff and full jitter, a bounded number of times; when the budget is spent they raise
`StoreUnavailableError` so the caller reports a failure (HTTP 503, SQS redelivery) and nothing is silently lost.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar

from botocore.exceptions import ClientError
from pydantic import ValidationError

from model.adapters import aws
from model.adapters.table import AGG_SK, BY_TIME, PK, PROFILE_SK, SK, TS, TTL, customer_pk, touchpoint_sk
from model.domain.aggregate import Aggregate, FoldEvent, fold, normalise
from model.domain.schemas import Profile, Touchpoint
from model.domain.settings import get_settings

Status = Literal["stored", "duplicate"]
Item = dict[str, Any]
T = TypeVar("T")

WRITE_CHUNK = 25  # BatchWriteItem limit
READ_CHUNK = 100  # BatchGetItem limit
MAX_ATTEMPTS = 10  # per batch call, including the first
BASE_DELAY = 0.05  # seconds; the n-th retry sleeps uniform(0, min(MAX_DELAY, BASE_DELAY * 2**n))
MAX_DELAY = 3.0
AGG_ATTEMPTS = 20  # optimistic-concurrency retries of the aggregate
THROTTLING = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "InternalServerError"}
)
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, so TS sorts lexicographically in time order

_sleep: Callable[[float], None] = time.sleep  # tests may replace it to run the backoff instantly


class StoreUnavailableError(RuntimeError):
    """DynamoDB kept throttling or leaving work unprocessed past the retry budget; nothing was lost silently."""


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


def put_touchpoints(tps: Sequence[Touchpoint]) -> list[Status]:
    """Store touchpoints idempotently; per input: "stored", or "duplicate" when its event_id is already there.

    Duplicates are found with one keys-only BatchGetItem per 100 items (also within the request itself);
    only new items are written. Two concurrent requests carrying the same event_id may both report
    "stored": they write the same key, so the table still holds one item.
    """
    keys: dict[tuple[str, str], int] = {}
    statuses: list[Status] = []
    for tp in tps:
        k = (customer_pk(tp.customer_id), touchpoint_sk(tp.event_id))
        statuses.append("duplicate" if k in keys else "stored")
        keys.setdefault(k, len(statuses) - 1)
    existing = {
        (item[PK]["S"], item[SK]["S"])
        for item in batch_get([{PK: {"S": pk}, SK: {"S": sk}} for pk, sk in keys], projection=f"{PK}, {SK}")
    }
    writes = []
    for k, i in keys.items():
        if k in existing:
            statuses[i] = "duplicate"
        else:
            writes.append({"PutRequest": {"Item": touchpoint_item(tps[i])}})
    batch_write(writes)
    return statuses


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
    except ValidationError:
        # Configuration changed since it was stored (e.g. an attribute no longer declared): keep the rest.
        fields.pop("attributes", None)
        return Profile.model_validate(fields)


def put_profile(customer_id: str, profile: Profile) -> None:
    doc = profile.model_dump(mode="json")
    doc.update({PK: customer_pk(customer_id), SK: PROFILE_SK, "type": "PROFILE", "updated_at": ts_key(_now())})
    _ddb().put_item(TableName=_table(), Item={k: _to_ddb(v) for k, v in doc.items()})


def get_profile(customer_id: str) -> Profile | None:
    resp = _ddb().get_item(TableName=_table(), Key=_key(customer_id, PROFILE_SK), ConsistentRead=True)
    item = resp.get("Item")
    return _profile_from(from_image(item)) if item else None


def revoke_consent(customer_id: str, channel: str, at: datetime) -> None:
    """Close one channel's consent now (an unsubscribe or complaint), creating the profile if needed."""
    ddb, table, key = _ddb(), _table(), _key(customer_id, PROFILE_SK)
    stamp = {":at": {"S": ts_key(at)}, ":f": {"BOOL": False}}
    for _ in range(3):  # at most one race with a concurrent create
        try:
            ddb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET consent.#ch = :f, updated_at = :at",
                ConditionExpression="attribute_exists(consent)",
                ExpressionAttributeNames={"#ch": channel},
                ExpressionAttributeValues=stamp,
            )
            return
        except ddb.exceptions.ConditionalCheckFailedException:
            pass
        try:
            ddb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET consent = :c, updated_at = :at, #type = :t, #tz = if_not_exists(#tz, :tz)",
                ConditionExpression="attribute_not_exists(consent)",
                ExpressionAttributeNames={"#type": "type", "#tz": "timezone"},
                ExpressionAttributeValues={
                    ":c": {"M": {channel: {"BOOL": False}}},
                    ":at": stamp[":at"],
                    ":t": {"S": "PROFILE"},
                    ":tz": {"S": "UTC"},
                },
            )
            return
        except ddb.exceptions.ConditionalCheckFailedException:
            continue
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


def apply_to_aggregate(customer_id: str, events: Iterable[FoldEvent]) -> Aggregate:
    """Fold events into the stored aggregate with optimistic concurrency on its `version`."""
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
        new: Item = {
            **key,
            "type": {"S": "AGG"},
            "state": {"S": agg.to_json()},
            "version": {"N": str(version + 1)},
            "updated_at": {"S": ts_key(_now())},
        }
        try:
            if version:
                ddb.put_item(
                    TableName=table,
                    Item=new,
                    ConditionExpression="#v = :v",
                    ExpressionAttributeNames={"#v": "version"},
                    ExpressionAttributeValues={":v": {"N": str(version)}},
                )
            else:
                ddb.put_item(TableName=table, Item=new, ConditionExpression="attribute_not_exists(PK)")
            return agg
        except ddb.exceptions.ConditionalCheckFailedException:
            _backoff(min(attempt, 4))  # another writer won: re-read and fold again
    raise StoreUnavailableError(f"aggregate update lost {AGG_ATTEMPTS} races in a row")


# --- erasure ---------------------------------------------------------------------------------------------


def erase_customer(customer_id: str) -> int:
    """Delete every item of the customer (touchpoints, aggregate, profile, decisions); return how many."""
    keys: list[Item] = []
    for page in (
        _ddb()
        .get_paginator("query")
        .paginate(
            TableName=_table(),
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": PK, "#sk": SK},
            ExpressionAttributeValues={":pk": {"S": customer_pk(customer_id)}},
            ProjectionExpression="#pk, #sk",
            ConsistentRead=True,
        )
    ):
        keys.extend(page.get("Items", []))
    batch_write([{"DeleteRequest": {"Key": k}} for k in keys])
    return len(keys)
