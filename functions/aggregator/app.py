"""DynamoDB stream consumer: folds newly inserted touchpoints into each customer's aggregate.

Records are grouped by customer so each aggregate is read and written once per batch (optimistic
concurrency in model.adapters.store). Only INSERTs of touchpoint items (SK TP#...) count; a MODIFY of a touchpoint
(the same event_id written again) is not a new event, and AGG/PROFILE/DEC items are ignored. When a
customer's update fails, that customer's records are reported as batch item failures; Lambda retries from
the first of them (bisect on error and an on-failure destination are set in template.yaml). Re-applying a
customer's events is harmless: the fold de-duplicates by event_id.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.observability import logger, metrics, pseudonym, tracer
from model.adapters import store
from model.adapters.table import SK
from model.domain.aggregate import FoldEvent
from model.domain.catalogue import catalogue
from model.domain.schemas import EVENT_INDEX

processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


class AggregateNotUpdatedError(RuntimeError):
    """The record's customer aggregate could not be updated in this batch."""


def fold_event_from_image(image: dict[str, Any]) -> tuple[str, FoldEvent] | None:
    """(customer_id, FoldEvent) of an inserted touchpoint item, or None for other items."""
    sk = image.get(SK, {}).get("S", "")
    if not sk.startswith("TP#"):
        return None
    doc = store.from_image(image)
    channel = catalogue().index.get(doc["channel"])
    if channel is None:  # channel since dropped from the catalogue: nothing to count it under
        return None
    ts = datetime.fromisoformat(doc["occurred_at"]).timestamp()
    event = FoldEvent(str(doc["event_id"]), channel, EVENT_INDEX[doc["event_type"]], ts, float(doc.get("value", 0)))
    return str(doc["customer_id"]), event


def _customer(raw: dict[str, Any]) -> tuple[str, FoldEvent] | None:
    if raw.get("eventName") != "INSERT":
        return None
    return fold_event_from_image(raw.get("dynamodb", {}).get("NewImage", {}))


def apply_batch(records: list[dict[str, Any]]) -> set[str]:
    """Fold the batch's new touchpoints, one aggregate update per customer; return the failed customers."""
    by_customer: dict[str, list[FoldEvent]] = defaultdict(list)
    for raw in records:
        try:
            found = _customer(raw)
        except (KeyError, TypeError, ValueError):
            continue  # reported by the record handler below
        if found:
            by_customer[found[0]].append(found[1])
    failed: set[str] = set()
    for customer_id, events in by_customer.items():
        try:
            store.apply_to_aggregate(customer_id, events)
        except Exception:
            logger.exception("aggregate update failed", extra={"customer": pseudonym(customer_id)})
            failed.add(customer_id)
    metrics.add_metric(name="AggregatesUpdated", unit=MetricUnit.Count, value=len(by_customer) - len(failed))
    metrics.add_metric(name="TouchpointsFolded", unit=MetricUnit.Count, value=sum(map(len, by_customer.values())))
    return failed


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failed = apply_batch(event.get("Records", []))

    def record_handler(record: DynamoDBRecord) -> None:
        found = _customer(record.raw_event)  # raises on a malformed touchpoint record: reported failed
        if found and found[0] in failed:
            raise AggregateNotUpdatedError(f"aggregate of {pseudonym(found[0])} not updated")

    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
