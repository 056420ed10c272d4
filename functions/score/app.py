"""Scoring route group: real-time recommendations (FastAPI, on Lambda through Mangum). Thin: parse, decide, format.

Routes are plain `def`: FastAPI runs them in its thread pool, so their blocking DynamoDB calls never hold the event
loop (`nbc serve` answers /health while a slow request runs). Store trouble is a 503 with Retry-After, mapped once
in functions/common/http.py. The batch endpoint reads customer state and writes the decision log in parallel
(STORE_WORKERS threads, one BatchGetItem of 100 keys / BatchWriteItem of 25 items each) to stay within the request
deadline at its maximum size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import Annotated, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Body
from fastapi.responses import Response
from pydantic import BaseModel

from functions.common import examples
from functions.common.http import create_app, lambda_handler
from functions.common.observability import logger, metrics, pseudonym
from model.adapters import aws, dynamodb, states
from model.adapters.decision_log import log_decisions
from model.adapters.model_service import get_predictor
from model.domain.decide import decide
from model.domain.recommend_schemas import (
    BatchRequest,
    BatchResponse,
    ModelInfo,
    RecommendationRequest,
    RecommendationResponse,
)
from model.domain.settings import get_settings

JSON = "application/json"
STORE_WORKERS = 4  # threads of the batch endpoint's parallel store calls (aws.POOL_CONNECTIONS >= this)
STATE_CHUNK = dynamodb.READ_CHUNK // 2  # customers per state read: aggregate + profile = 2 keys each
LOG_CHUNK = 4 * dynamodb.WRITE_CHUNK  # decisions per decision-log write task
T = TypeVar("T")
R = TypeVar("R")

router = APIRouter(tags=["recommendations"])
_pool = ThreadPoolExecutor(max_workers=STORE_WORKERS, thread_name_prefix="nbc-store")


class Health(BaseModel):
    status: str
    model_version: str | None
    kind: str


def parallel(fn: Callable[[Sequence[T]], R], items: Sequence[T], chunk: int) -> list[R]:
    """fn over chunks of items, in the store thread pool when there is more than one chunk; each task runs in a
    copy of the caller's context (the request deadline). The first failure is raised (-> 503)."""
    parts = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    if len(parts) <= 1:
        return [fn(part) for part in parts]
    futures = [_pool.submit(copy_context().run, fn, part) for part in parts]
    try:
        return [f.result() for f in futures]
    finally:
        for f in futures:
            f.cancel()  # after a failure: tasks not started yet are dropped


def _one(req: RecommendationRequest) -> RecommendationResponse:
    agg, profile = states.get_state(req.customer_id)
    return decide(req, agg, profile, get_predictor().model())


@router.post(
    "/v1/recommendations",
    response_model=RecommendationResponse,
    summary="Which channel, when and with what message to contact a customer now (or not at all)",
)
def recommend(req: Annotated[RecommendationRequest, Body(openapi_examples=examples.recommendation())]) -> Response:
    resp = _one(req)
    log_decisions([resp])
    metrics.add_metric(name=f"Policy_{resp.policy.value}", unit=MetricUnit.Count, value=1)
    logger.info(
        "decision",
        extra={
            "customer": pseudonym(req.customer_id),
            "decision_id": resp.decision_id,
            "policy": resp.policy.value,
            "channel": resp.recommendations[0].channel,
        },
    )
    return Response(resp.model_dump_json(), media_type=JSON)


@router.post(
    "/v1/recommendations:batch",
    response_model=BatchResponse,
    summary="Recommendations for up to 1,000 customers (campaign audiences)",
)
def recommend_batch(batch: Annotated[BatchRequest, Body(openapi_examples=examples.batch())]) -> Response:
    by_customer: dict[str, states.State] = {}
    customer_ids = list(dict.fromkeys(req.customer_id for req in batch.requests))
    for part in parallel(states.get_states, customer_ids, STATE_CHUNK):
        by_customer.update(part)
    model = get_predictor().model()
    results: list[RecommendationResponse] = []
    for req in batch.requests:
        left = aws.remaining()
        if left is not None and left <= 0:  # CPU work counts too: never answer past the request's deadline
            raise aws.DeadlineExceededError(operation=f"decision {len(results) + 1} of {len(batch.requests)}")
        results.append(decide(req, *by_customer[req.customer_id], model))
    parallel(log_decisions, results, LOG_CHUNK)
    metrics.add_metric(name="BatchDecisions", unit=MetricUnit.Count, value=len(results))
    logger.info("batch decisions", extra={"decisions": len(results)})
    return Response(BatchResponse(results=results).model_dump_json(), media_type=JSON)


@router.get("/v1/model", response_model=ModelInfo, summary="The model in service")
def model_info() -> ModelInfo:
    predictor = get_predictor()
    loaded = predictor.model()
    return ModelInfo(
        model_version=loaded.version if loaded else None,
        kind=loaded.kind if loaded else "heuristic",
        loaded_at=loaded.loaded_at if loaded else None,
        checked_at=predictor.checked_at,
        features=list(loaded.manifest.features) if loaded else [],
        metrics=dict(loaded.manifest.metrics) if loaded else {},
        objective=loaded.objective if loaded else None,
        unsupported=loaded.unsupported if loaded else None,
        value_prior=loaded.value_prior if loaded else None,
        last_error=predictor.last_error,
        config_hash=get_settings().config_hash(),
        config_matches=loaded.manifest.config_matches(get_settings().config_hash()) if loaded else None,
    )


@router.get("/health", response_model=Health, summary="Liveness, and which model serves")
def health() -> Health:
    loaded = get_predictor().model()
    return Health(
        status="ok", model_version=loaded.version if loaded else None, kind=loaded.kind if loaded else "heuristic"
    )


app = create_app(router, title="Next-best-channel scoring API")
handler = lambda_handler(app)
