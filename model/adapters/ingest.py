"""The domain of ingestion, without HTTP: validate each item, store the valid ones, close revoked channels.

Every item is judged on its own: one bad touchpoint never stops the others of its batch. Per item:

- `stored`: written now;
- `duplicate`: this event_id is already stored for the customer with the same payload (a retry);
- `conflict`: this event_id is already stored for the customer with ANOTHER payload; the stored event stays
  (first write wins, in the table and in the aggregate) and this one is dropped: send a new event_id;
- `erased`: the customer was erased less than 15 days ago (its erasure tombstone lives); nothing of it is
  accepted until then, and afterwards the id is a new customer. Not an error of the item: retrying changes
  nothing, and an SQS message holding such items is not failed (in-flight data of an erased customer is dropped);
- `rejected`: invalid, with its errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from model.adapters import erasure, profiles, touchpoints
from model.domain.schemas import EventType, Touchpoint, error_list

MAX_BATCH = 500
REVOKING = frozenset({EventType.unsubscribed, EventType.complained})
CONFLICT = "this event_id is already stored for this customer with another payload; the stored event is kept"
ERASED = (
    f"this customer was erased less than {erasure.ERASURE_TOMBSTONE_DAYS} days ago; nothing of it is stored until then"
)


class ItemError(BaseModel):
    field: str = Field(description="Dotted path of the offending field inside the item.")
    reason: str


class ItemResult(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    status: Literal["stored", "duplicate", "conflict", "erased", "rejected"]
    event_id: str | None = None
    errors: list[ItemError] = Field(default_factory=list)


class IngestResult(BaseModel):
    """What happened to each item of a batch."""

    received: int
    stored: int
    duplicates: int
    conflicts: int = Field(default=0, description="Event ids already stored with another payload (not stored).")
    erased: int = Field(
        default=0,
        description=f"Items of customers erased less than {erasure.ERASURE_TOMBSTONE_DAYS} days ago (not stored).",
    )
    rejected: int
    results: list[ItemResult]


Validated = Touchpoint | list[ItemError]


def validate_item(raw: object) -> Validated:
    if not isinstance(raw, dict):
        return [ItemError(field="(item)", reason="each touchpoint must be a JSON object")]
    try:
        return Touchpoint.model_validate(raw)
    except ValidationError as err:
        return [ItemError(**e) for e in error_list(err.errors())]


def validate_batch(raw_items: Sequence[object]) -> list[Validated]:
    """Per item: the validated Touchpoint, or its errors (field path and reason)."""
    return [validate_item(raw) for raw in raw_items]


def _event_id(raw: object) -> str | None:
    if isinstance(raw, dict):
        value = raw.get("event_id")
        if isinstance(value, str) and len(value) <= 128:
            return value
    return None


def ingest(raw_items: Sequence[object]) -> IngestResult:
    """Validate, store the valid items idempotently, revoke consent for unsubscribes and complaints.

    Consent is revoked for duplicates too: a client retrying after a failure between the two steps still
    ends with the channel closed. It is not for conflicts (the stored event is another one) nor for erased
    customers.
    """
    checked = validate_batch(raw_items)
    valid = [(i, v) for i, v in enumerate(checked) if isinstance(v, Touchpoint)]
    statuses = touchpoints.put_touchpoints([tp for _, tp in valid])

    revoked: dict[tuple[str, str], datetime] = {}
    for (_, tp), status in zip(valid, statuses, strict=True):
        if tp.event_type in REVOKING and status in ("stored", "duplicate"):
            key = (tp.customer_id, tp.channel)
            revoked[key] = max(tp.occurred_at, revoked.get(key, tp.occurred_at))
    for (customer_id, channel), at in revoked.items():
        profiles.revoke_consent(customer_id, channel, at)

    results = [
        ItemResult(index=i, status="rejected", event_id=_event_id(raw_items[i]), errors=v)
        for i, v in enumerate(checked)
        if not isinstance(v, Touchpoint)
    ]
    notes = {
        "conflict": [ItemError(field="event_id", reason=CONFLICT)],
        "erased": [ItemError(field="customer_id", reason=ERASED)],
    }
    results += [
        ItemResult(index=i, status=s, event_id=tp.event_id, errors=notes.get(s, []))
        for (i, tp), s in zip(valid, statuses, strict=True)
    ]
    results.sort(key=lambda r: r.index)
    return IngestResult(
        received=len(checked),
        stored=statuses.count("stored"),
        duplicates=statuses.count("duplicate"),
        conflicts=statuses.count("conflict"),
        erased=statuses.count("erased"),
        rejected=len(checked) - len(valid),
        results=results,
    )
