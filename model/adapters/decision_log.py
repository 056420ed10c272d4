"""The decision log: every served decision is stored (PK=C#<customer>, SK=DEC#<decision_id>) with its policy
and propensity, so that sends quoting its decision_id can be evaluated off-policy by the training pipeline.

Decisions about a customer erased less than erasure.ERASURE_TOMBSTONE_DAYS ago are not stored: each write is a
transaction with the customer's tombstone check, so none lands after an erasure has begun."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from model.adapters import dynamodb, erasure
from model.adapters.table import PK, SK, TTL, customer_pk, decision_sk
from model.domain.recommend_schemas import RecommendationResponse
from model.domain.settings import get_settings


def decision_item(resp: RecommendationResponse, at: datetime | None = None) -> dict[str, Any]:
    """The DynamoDB item (low-level attribute values) of one decision."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    first = resp.recommendations[0]
    expires = at + timedelta(days=get_settings().touchpoint_ttl_days)
    item: dict[str, Any] = {
        PK: {"S": customer_pk(resp.customer_id)},
        SK: {"S": decision_sk(resp.decision_id)},
        "type": {"S": "DEC"},
        "decision_id": {"S": resp.decision_id},
        "customer_id": {"S": resp.customer_id},
        "policy": {"S": resp.policy.value},
        "propensity": {"N": repr(float(resp.propensity))},
        "model_version": {"S": resp.model_version} if resp.model_version else {"NULL": True},
        "channel": {"S": first.channel},
        "p_convert": {"N": repr(float(first.p_convert))},
        "expected_value": {"N": repr(float(first.expected_value))},
        "decided_at": {"S": at.isoformat()},
        TTL: {"N": str(int(expires.timestamp()))},
    }
    if first.send_at is not None:
        item["send_at"] = {"S": first.send_at.isoformat()}
    if first.message_id is not None:
        item["message_id"] = {"S": first.message_id}
    return item


def log_decisions(responses: Sequence[RecommendationResponse], at: datetime | None = None) -> int:
    """Store decisions, except those about erased customers; return how many were stored. One transaction
    (put + the customer's tombstone check) for one decision; for many, transactions of up to 100 actions
    (erasure.put_unless_erased retries conflicts and throttling)."""
    if not responses:
        return 0
    entries = [(r.customer_id, decision_item(r, at)) for r in responses]
    outcomes = erasure.put_unless_erased(entries, only_new=False)
    return sum(1 for outcome, _ in outcomes if outcome == "stored")


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def import_decisions(rows: Sequence[Mapping[str, Any]]) -> int:
    """Store decisions logged elsewhere (e.g. a simulated or legacy logging policy) in the same item format:
    rows with decision_id, customer_id, decided_at, channel, send_at, message_id, propensity, policy. Rows of
    customers with a live erasure tombstone are skipped (an offline import: checked once, before writing)."""
    ttl = timedelta(days=get_settings().touchpoint_ttl_days)
    erased = erasure.erased_customers(str(row["customer_id"]) for row in rows)
    items = []
    for row in rows:
        if str(row["customer_id"]) in erased:
            continue
        decided = row.get("decided_at")
        decided_dt = decided if isinstance(decided, datetime) else datetime.fromisoformat(str(decided))
        item: dict[str, Any] = {
            PK: {"S": customer_pk(str(row["customer_id"]))},
            SK: {"S": decision_sk(str(row["decision_id"]))},
            "type": {"S": "DEC"},
            "decision_id": {"S": str(row["decision_id"])},
            "customer_id": {"S": str(row["customer_id"])},
            "policy": {"S": str(row.get("policy") or "logging")},
            "decided_at": {"S": _iso(decided_dt)},
            TTL: {"N": str(int((decided_dt.astimezone(UTC) + ttl).timestamp()))},
        }
        if row.get("propensity") is not None:
            item["propensity"] = {"N": repr(float(row["propensity"]))}
        for name in ("channel", "message_id"):
            if row.get(name) is not None:
                item[name] = {"S": str(row[name])}
        if row.get("send_at") is not None:
            item["send_at"] = {"S": _iso(row["send_at"])}
        items.append(item)
    dynamodb.batch_write([{"PutRequest": {"Item": it}} for it in items])
    return len(items)
