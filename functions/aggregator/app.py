"""DynamoDB stream consumer: folds newly inserted touchpoints into each customer's aggregate, exactly once.

Records are grouped by customer so each aggregate is read and written once per batch. Only INSERTs of
touchpoint items (SK TP#...) count: a MODIFY of a touchpoint is the aggregator's own `agg_version` mark (a
touchpoint is never rewritten), and AGG/PROFILE/DEC/ERASED items are ignored. A record is a trigger, not the
data: its keys name the touchpoint, and `states.fold_touchpoints` folds the item as stored and marks it folded
in the same transaction that writes the aggregate. So a redelivered, reordered or concurrent record is never
counted twice, whatever the event's age, and a touchpoint erased since, or any touchpoint of a customer with
a live erasure tombstone, is not folded at all. When a customer's update fails, its records are reported as
batch item failures; Lambda retries from the first of them, re-sending other customers' records too, which
then find their touchpoints marked (bisect on error and an on-failure destination are set in template.yaml).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.observability import logger, metrics, pseudonym, tracer
from model.adapters import dynamodb, states
from model.adapters.table import PK, SK, customer_pk, touchpoint_sk
from model.domain.aggregate import FoldEvent

CUSTOMER_PREFIX, TP_PREFIX = customer_pk(""), touchpoint_sk("")
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


class AggregateNotUpdatedError(RuntimeError):
    """The record's customer aggregate could not be updated in this batch."""


def fold_event_from_image(image: dict[str, Any]) -> tuple[str, FoldEvent] | None:
    """(customer_id, FoldEvent) of a touchpoint item's image, or None for other items (or a channel since
    dropped from the catalogue); raises on a malformed touchpoint image. (The handler folds stored items, not
    images: this reads an image the way the store reads an item, for replays and tests.)"""
    sk = image.get(SK, {}).get("S", "")
    if not sk.startswith(TP_PREFIX):
        return None
    doc = dynamodb.from_image(image)
    event = states.fold_event_of_item(doc)
    return (str(doc["customer_id"]), event) if event is not None else None


def _touchpoint_key(raw: dict[str, Any]) -> tuple[str, str] | None:
    """(customer_id, event_id) of a record inserting a touchpoint, from its keys (the stored item is the data:
    the image is not read); None for any other record; raises when a touchpoint record has no usable keys."""
    if raw.get("eventName") != "INSERT":
        return None
    keys = raw.get("dynamodb", {}).get("Keys", {})
    sk = keys.get(SK, {}).get("S", "")
    if not sk.startswith(TP_PREFIX):
        return None
    pk = keys[PK]["S"]
    if not pk.startswith(CUSTOMER_PREFIX) or len(pk) == len(CUSTOMER_PREFIX) or len(sk) == len(TP_PREFIX):
        raise ValueError("touchpoint record without a customer or an event id in its keys")
    return pk.removeprefix(CUSTOMER_PREFIX), sk.removeprefix(TP_PREFIX)


def apply_batch(records: list[dict[str, Any]]) -> set[str]:
    """Fold the batch's new touchpoints, one aggregate update per customer; return the failed customers."""
    by_customer: dict[str, list[str]] = defaultdict(list)
    for raw in records:
        try:
            found = _touchpoint_key(raw)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # reported by the record handler below
        if found:
            by_customer[found[0]].append(found[1])
    failed: set[str] = set()
    folded = skipped = erased = unreadable = 0
    for customer_id, event_ids in by_customer.items():
        try:
            outcome = states.fold_touchpoints(customer_id, event_ids)
        except Exception:
            logger.exception("aggregate update failed", extra={"customer": pseudonym(customer_id)})
            failed.add(customer_id)
            continue
        folded, skipped, unreadable = (
            folded + outcome.folded,
            skipped + outcome.skipped,
            unreadable + outcome.unreadable,
        )
        erased += outcome.erased
    metrics.add_metric(name="AggregatesUpdated", unit=MetricUnit.Count, value=len(by_customer) - len(failed) - erased)
    metrics.add_metric(name="TouchpointsFolded", unit=MetricUnit.Count, value=folded)
    metrics.add_metric(name="TouchpointsAlreadyFolded", unit=MetricUnit.Count, value=skipped)
    if erased:
        metrics.add_metric(name="ErasedCustomersSkipped", unit=MetricUnit.Count, value=erased)
    if unreadable:
        logger.warning("stored touchpoints the fold cannot read", extra={"count": unreadable})
    return failed


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failed = apply_batch(event.get("Records", []))

    def record_handler(record: DynamoDBRecord) -> None:
        found = _touchpoint_key(record.raw_event)  # raises on a malformed touchpoint record: reported failed
        if found and found[0] in failed:
            raise AggregateNotUpdatedError(f"aggregate of {pseudonym(found[0])} not updated")

    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
