"""SQS consumer for high-volume producers: each message is one touchpoint, a JSON array of them, or the
`{"touchpoints": [...]}` object that HTTP ingest accepts.

Partial batch failures (`batchItemFailures`, needs `FunctionResponseTypes: [ReportBatchItemFailures]` on
the event source mapping): a poison message (malformed JSON, or any invalid item) is reported failed and
never blocks the rest. SQS redelivers it until the queue's `maxReceiveCount`, then moves it to the
dead-letter queue (template.yaml's redrive policy) where it can be inspected and redriven. Valid items of a
partly invalid message are stored at once; redeliveries see them as duplicates, so nothing is stored twice.
A store outage also fails the message, which SQS redelivers: nothing accepted is lost.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.observability import logger, metrics, tracer
from model.adapters.ingest import MAX_BATCH, ingest

# All-failed batches are reported like partial ones (not raised): the same messages return to the queue.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class PoisonMessageError(ValueError):
    """A message that no retry can fix: it goes to the DLQ after maxReceiveCount."""


def record_handler(record: SQSRecord) -> dict[str, int]:
    try:
        payload = json.loads(record.body)
    except (ValueError, RecursionError):
        raise PoisonMessageError("message body is not valid JSON") from None
    if isinstance(payload, dict) and "touchpoints" in payload:  # the wrapper HTTP ingest accepts too
        payload = payload["touchpoints"]
        if not isinstance(payload, list):
            raise PoisonMessageError('"touchpoints" must be an array of touchpoints')
    items = payload if isinstance(payload, list) else [payload]
    if not 1 <= len(items) <= MAX_BATCH:
        raise PoisonMessageError(f"a message carries 1 to {MAX_BATCH} touchpoints, got {len(items)}")
    result = ingest(items)
    metrics.add_metric(name="TouchpointsStored", unit=MetricUnit.Count, value=result.stored)
    if result.rejected:
        reasons = "; ".join(f"{r.index}.{e.field}: {e.reason}" for r in result.results for e in r.errors)
        raise PoisonMessageError(f"{result.rejected} invalid touchpoint(s): {reasons[:500]}")
    return {"stored": result.stored, "duplicates": result.duplicates}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    failures = len(response.get("batchItemFailures", []))
    if failures:
        metrics.add_metric(name="MessagesFailed", unit=MetricUnit.Count, value=failures)
        logger.warning("messages failed", extra={"failed": failures, "received": len(event.get("Records", []))})
    return dict(response)
