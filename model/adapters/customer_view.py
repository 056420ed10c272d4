"""The customer read path: profile, aggregate summary, decisions and touchpoints of one customer, paginated.

Touchpoints are read newest first through the `by_time` index, one Query per page. Decision ids are random
(uuid4), so `DEC#` keys do not sort by time: a page of decisions reads the customer's decision log (small
items, bounded by the retention TTL) and orders it by `decided_at`. Cursors are opaque to callers; inside they
hold only a position (sort keys), never a partition key: the customer always comes from the path, so a cursor
taken from one customer cannot read another.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from model.adapters import aws, dynamodb, profiles
from model.adapters.table import AGG_SK, BY_TIME, FOLDED, PK, SK, TS, customer_pk, decision_sk
from model.domain.aggregate import Aggregate
from model.domain.customer_schemas import (
    CustomerView,
    DecisionPage,
    DecisionView,
    TouchpointPage,
    TouchpointView,
    summarise,
)
from model.domain.settings import get_settings

Item = dict[str, Any]
LISTS = {"t": "touchpoints", "d": "decisions"}  # the cursor kinds
MAX_CURSOR = 512  # characters: a cursor holds two sort keys of ids of at most 128 characters
_DECISION_FIELDS = (
    "decision_id, decided_at, policy, propensity, model_version, channel, send_at, message_id, p_convert, "
    "expected_value"
)


class InvalidCursorError(ValueError):
    """A cursor this API did not hand out (or one of the other list)."""

    def __init__(self, kind: str) -> None:
        self.parameter = f"{LISTS[kind]}_cursor"
        super().__init__(f"{self.parameter} is not a cursor this API returned for {LISTS[kind]}")


def _encode(position: dict[str, str]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, kind: str, fields: tuple[str, ...]) -> dict[str, str]:
    """The position in a cursor of `kind` ("t" touchpoints, "d" decisions), or InvalidCursorError."""
    bad = InvalidCursorError(kind)
    if len(cursor) > MAX_CURSOR:
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("k") != kind or set(data) != {"k", *fields}:
        raise bad
    if not all(isinstance(data[f], str) and 0 < len(data[f]) <= 200 for f in fields):  # empty keys: DynamoDB error
        raise bad
    return {f: data[f] for f in fields}


def _ddb() -> Any:
    return aws.client("dynamodb")


def _table() -> str:
    return get_settings().table_name


def _touchpoint_view(doc: dict[str, Any]) -> TouchpointView:
    fields = {k: doc[k] for k in TouchpointView.model_fields if k in doc and doc[k] is not None}
    return TouchpointView.model_validate({**fields, "folded": FOLDED in doc})


def touchpoints_page(
    customer_id: str, limit: int, cursor: str | None = None
) -> tuple[list[TouchpointView], str | None]:
    """One page of the customer's touchpoints, newest first, and the cursor of the next (None at the end)."""
    pk = customer_pk(customer_id)
    request: Item = {
        "TableName": _table(),
        "IndexName": BY_TIME,
        "KeyConditionExpression": "#pk = :pk",
        "ExpressionAttributeNames": {"#pk": PK},
        "ExpressionAttributeValues": {":pk": {"S": pk}},
        "ScanIndexForward": False,
        "Limit": limit + 1,  # one more than asked: whether a next page exists, without an empty last page
    }
    if cursor is not None:
        at = _decode(cursor, "t", ("sk", "ts"))
        if not at["sk"].startswith("TP#"):
            raise InvalidCursorError("t")
        request["ExclusiveStartKey"] = {PK: {"S": pk}, SK: {"S": at["sk"]}, TS: {"S": at["ts"]}}
    items = _ddb().query(**request).get("Items", [])
    page = items[:limit]
    more = len(items) > limit
    next_cursor = _encode({"k": "t", "sk": page[-1][SK]["S"], "ts": page[-1][TS]["S"]}) if more else None
    return [_touchpoint_view(dynamodb.from_image(it)) for it in page], next_cursor


def _decisions(customer_id: str) -> list[DecisionView]:
    """Every logged decision of the customer, newest first (decision ids do not sort by time)."""
    out = []
    pages = (
        _ddb()
        .get_paginator("query")
        .paginate(
            TableName=_table(),
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :dec)",
            ExpressionAttributeNames={"#pk": PK, "#sk": SK},
            ExpressionAttributeValues={":pk": {"S": customer_pk(customer_id)}, ":dec": {"S": decision_sk("")}},
            ProjectionExpression=_DECISION_FIELDS,
        )
    )
    for page in pages:
        for item in page.get("Items", []):
            doc = {k: v for k, v in dynamodb.from_image(item).items() if v is not None}
            out.append(DecisionView.model_validate(doc))
    out.sort(key=lambda d: (d.decided_at, d.decision_id), reverse=True)
    return out


def decisions_page(
    decisions: list[DecisionView], limit: int, cursor: str | None = None
) -> tuple[list[DecisionView], str | None]:
    """One page of decisions (newest first, as `_decisions` orders them) and the cursor of the next (None at the
    end)."""
    if cursor is not None:
        at = _decode(cursor, "d", ("at", "id"))
        try:
            after = (datetime.fromisoformat(at["at"]).astimezone(UTC), at["id"])
        except ValueError:
            raise InvalidCursorError("d") from None
        decisions = [d for d in decisions if (d.decided_at, d.decision_id) < after]
    page = decisions[:limit]
    more = len(decisions) > limit
    next_cursor = (
        _encode({"k": "d", "at": page[-1].decided_at.isoformat(), "id": page[-1].decision_id}) if more else None
    )
    return page, next_cursor


def _any_touchpoint(customer_id: str) -> bool:
    found = _ddb().query(
        TableName=_table(),
        KeyConditionExpression="#pk = :pk AND begins_with(#sk, :tp)",
        ExpressionAttributeNames={"#pk": PK, "#sk": SK},
        ExpressionAttributeValues={":pk": {"S": customer_pk(customer_id)}, ":tp": {"S": "TP#"}},
        ProjectionExpression="#pk",
        Limit=1,
    )
    return bool(found.get("Items"))


def read_customer(
    customer_id: str,
    limit: int,
    touchpoints_cursor: str | None = None,
    decisions_cursor: str | None = None,
    now: datetime | None = None,
) -> CustomerView | None:
    """What is stored about the customer, or None when nothing is (an unknown or erased customer).
    InvalidCursorError for a cursor this API did not return."""
    now = now or datetime.now(UTC)
    agg_item = (
        _ddb()
        .get_item(TableName=_table(), Key={PK: {"S": customer_pk(customer_id)}, SK: {"S": AGG_SK}}, ConsistentRead=True)
        .get("Item")
    )
    profile = profiles.get_profile(customer_id)
    touchpoints, tp_next = touchpoints_page(customer_id, limit, touchpoints_cursor)
    every_decision = _decisions(customer_id)
    decisions, dec_next = decisions_page(every_decision, limit, decisions_cursor)
    known = agg_item or profile or touchpoints or every_decision
    if not known and (touchpoints_cursor is None or not _any_touchpoint(customer_id)):
        return None  # (an empty page of touchpoints past a cursor says nothing: one more look)
    summary = None
    if agg_item:
        updated = agg_item.get("updated_at", {}).get("S")
        summary = summarise(
            Aggregate.from_json(agg_item["state"]["S"]),
            int(agg_item["version"]["N"]),
            datetime.fromisoformat(updated) if updated else None,
            now,
        )
    return CustomerView(
        customer_id=customer_id,
        profile=profile,
        aggregate=summary,
        decisions=DecisionPage(items=decisions, next_cursor=dec_next),
        touchpoints=TouchpointPage(items=touchpoints, next_cursor=tp_next),
    )
