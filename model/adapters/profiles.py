"""A customer's declared profile in the table (time zone, consent, quiet hours, attributes), and consent
revocation; every write checks the customer's erasure tombstone in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from model.adapters.dynamodb import (
    StoreUnavailableError,
    client,
    condition_failed,
    from_image,
    item_key,
    table_name,
    to_ddb,
    transact,
    ts_key,
    utc_now,
)
from model.adapters.erasure import CustomerErasedError, not_erased
from model.adapters.table import PK, PROFILE_SK, SK, customer_pk
from model.domain.schemas import Profile


def profile_from(doc: dict[str, Any]) -> Profile:
    """The profile of a stored item (plain dict), keeping the fields that are still valid."""
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
    doc.update({PK: customer_pk(customer_id), SK: PROFILE_SK, "type": "PROFILE", "updated_at": ts_key(utc_now())})
    put = {"Put": {"TableName": table_name(), "Item": {k: to_ddb(v) for k, v in doc.items()}}}
    if transact([not_erased(customer_id), put]) is not None:
        raise CustomerErasedError(customer_id)


def get_profile(customer_id: str) -> Profile | None:
    resp = client().get_item(TableName=table_name(), Key=item_key(customer_id, PROFILE_SK), ConsistentRead=True)
    item = resp.get("Item")
    return profile_from(from_image(item)) if item else None


def revoke_consent(customer_id: str, channel: str, at: datetime) -> None:
    """Close one channel's consent now (an unsubscribe or complaint), creating the profile if needed. Nothing
    happens for an erased customer (its tombstone is checked in the same transaction)."""
    table, key = table_name(), item_key(customer_id, PROFILE_SK)
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
            if reasons is None or condition_failed(reasons[0]):
                return  # closed, or the customer is erased: nothing left to close
    raise StoreUnavailableError("could not revoke consent: the profile kept changing")
