"""Scoring route group: real-time recommendations (FastAPI, on Lambda through Mangum). Thin: parse, decide, format."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from functions.common.http import create_app, lambda_handler, problem
from functions.common.observability import logger, metrics, pseudonym
from model.adapters import store
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

UNAVAILABLE = "the customer store is unavailable or busy; retry the request"
# DynamoDB trouble (throttling past the retry budget, a missing table, the network) is a 503, never a 500.
STORE_ERRORS = (store.StoreUnavailableError, ClientError, BotoCoreError)
JSON = "application/json"

router = APIRouter(tags=["recommendations"])


class Health(BaseModel):
    status: str
    model_version: str | None
    kind: str


def _unavailable(exc: Exception) -> JSONResponse:
    logger.warning("customer store unavailable", extra={"error": type(exc).__name__})
    return problem(503, "Service Unavailable", UNAVAILABLE)


def _one(req: RecommendationRequest) -> RecommendationResponse:
    agg, profile = store.get_state(req.customer_id)
    return decide(req, agg, profile, get_predictor().model())


@router.post(
    "/v1/recommendations",
    response_model=RecommendationResponse,
    responses={503: {"description": "The customer store is unavailable"}},
    summary="Which channel, when and with what message to contact a customer now (or not at all)",
)
async def recommend(req: RecommendationRequest) -> Response:
    # async on purpose: on Lambda one request runs at a time, and a thread-pool hop per request costs more
    # than the few milliseconds of CPU the decision takes.
    try:
        resp = _one(req)
        log_decisions([resp])
    except STORE_ERRORS as exc:
        return _unavailable(exc)
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
    responses={503: {"description": "The customer store is unavailable"}},
    summary="Recommendations for up to 1,000 customers (campaign audiences)",
)
async def recommend_batch(batch: BatchRequest) -> Response:
    try:
        states = store.get_states([req.customer_id for req in batch.requests])
        model = get_predictor().model()
        results = [decide(req, *states[req.customer_id], model) for req in batch.requests]
        log_decisions(results)
    except STORE_ERRORS as exc:
        return _unavailable(exc)
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
        last_error=predictor.last_error,
    )


@router.get("/health", response_model=Health, summary="Liveness, and which model serves")
def health() -> Health:
    loaded = get_predictor().model()
    return Health(
        status="ok", model_version=loaded.version if loaded else None, kind=loaded.kind if loaded else "heuristic"
    )


app = create_app(router, title="Next-best-channel scoring API")
handler = lambda_handler(app)
