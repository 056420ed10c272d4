"""The domain of ingestion, without HTTP: validate each item, store the valid ones, close revoked channels.

Every item is judged on its own: one bad touchpoint never stops the others of its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from model.adapters import store
from model.domain.schemas import EventType, Touchpoint, error_list

MAX_BATCH = 500
REVOKING = frozenset({EventType.unsubscribed, EventType.complained})


class ItemError(BaseModel):
    field: str = Field(description="Dotted path of the offending field inside the item.")
    reason: str


class ItemResult(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    status: Literal["stored", "duplicate", "rejected"]
    event_id: str | None = None
    errors: list[ItemError] = Field(default_factory=list)


class IngestResult(BaseModel):
    """What happened to each item of a batch."""

    received: int
    stored: int
    duplicates: int
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
    ends with the channel closed.
    """
    checked = validate_batch(raw_items)
    valid = [(i, v) for i, v in enumerate(checked) if isinstance(v, Touchpoint)]
    statuses = store.put_touchpoints([tp for _, tp in valid])

    revoked: dict[tuple[str, str], datetime] = {}
    for _, tp in valid:
        if tp.event_type in REVOKING:
            key = (tp.customer_id, tp.channel)
            revoked[key] = max(tp.occurred_at, revoked.get(key, tp.occurred_at))
    for (customer_id, channel), at in revoked.items():
        store.revoke_consent(customer_id, channel, at)

    results = [
        ItemResult(index=i, status="rejected", event_id=_event_id(raw_items[i]), errors=v)
        for i, v in enumerate(checked)
        if not isinstance(v, Touchpoint)
    ]
    results += [ItemResult(index=i, status=s, event_id=tp.event_id) for (i, tp), s in zip(valid, statuses, strict=True)]
    results.sort(key=lambda r: r.index)
    return IngestResult(
        received=len(checked),
        stored=statuses.count("stored"),
        duplicates=statuses.count("duplicate"),
        rejected=len(checked) - len(valid),
        results=results,
    )
