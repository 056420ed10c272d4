"""Audience scoring in AWS: one batch of a Step Functions Distributed Map over the audience file on S3.

The map's ItemReader reads the audience CSV (a `customer_id` column) and its ItemBatcher hands this function up to
MaxItemsPerBatch rows with the run's settings in BatchInput:

    {"BatchInput": {"out": "s3://bucket/decisions/<run>", "run": "<execution name>", "options": {"k": 1, ...}},
     "Items": [{"customer_id": "c-1"}, ...]}

Each batch is decided with the API's rules, model and decision log (model/adapters/audience.py) and written to
`<out>/part-<hash of its ids>.ndjson`; invalid rows to `<out>/rejected-<hash>.ndjson`. A retried or redriven batch
writes the same part and logs the same decision ids (uuid5 of the run and the customer): nothing is counted twice.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from functions.common.observability import logger, metrics, tracer
from model.adapters import audience as aud
from model.adapters.model_service import get_predictor
from model.adapters.registry import blobs

MAX_ITEMS = 2000  # a batch must finish well within the function's timeout


class RunInput(BaseModel):
    out: str = Field(pattern=r"^s3://[^/]+/.+")
    run: str = Field(min_length=1, max_length=80)
    options: aud.AudienceOptions = Field(default_factory=aud.AudienceOptions)


class AudienceBatch(BaseModel):
    BatchInput: RunInput
    Items: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ITEMS)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    batch = AudienceBatch.model_validate(event)  # a malformed batch fails the map item: Step Functions shows why
    options, out = batch.BatchInput.options, batch.BatchInput.out
    planned = aud.plan([item.get("customer_id") for item in batch.Items], options)
    name = hashlib.sha256("\n".join(str(i.get("customer_id")) for i in batch.Items).encode()).hexdigest()[:20]
    sink = blobs(out, "output")
    results = aud.decide_customers(
        planned.customers, options, aud.run_uuid(batch.BatchInput.run), get_predictor().model()
    )
    sink.put(f"part-{name}.ndjson", aud.ndjson(row for resp in results for row in aud.decision_rows(resp)))
    if planned.rejected:
        sink.put(f"rejected-{name}.ndjson", aud.ndjson(planned.rejected))
    metrics.add_metric(name="AudienceDecisions", unit=MetricUnit.Count, value=len(results))
    summary = {"decided": len(results), "duplicates": planned.duplicates, "rejected": len(planned.rejected)}
    logger.info("audience batch", extra=summary)
    return summary
