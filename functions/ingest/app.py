"""HTTP ingest route group: touchpoints, customer profiles, erasure (FastAPI, on Lambda through Mangum)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from functions.common import examples
from functions.common.http import create_app, lambda_handler, problem, unavailable
from functions.common.observability import logger, metrics, pseudonym
from functions.ingest.customers import router as customers_router
from model.adapters import dynamodb, erasure, profiles
from model.adapters.ingest import ERASED, MAX_BATCH, IngestResult, ingest
from model.domain.schemas import ID_PATTERN, Profile, Touchpoint

CustomerId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]
UNAVAILABLE = "the store is busy; nothing of this request was lost, retry it (it is idempotent)"


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Touchpoint's JSON schema with its $defs inlined, for the hand-declared request body."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(schema))


_ITEMS = {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": _inline_refs(Touchpoint.model_json_schema())}
_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "examples": examples.touchpoints(),
            "schema": {
                "oneOf": [
                    _ITEMS,
                    {"type": "object", "required": ["touchpoints"], "properties": {"touchpoints": _ITEMS}},
                ]
            },
        }
    },
}


class Erased(BaseModel):
    customer_id: str
    deleted_items: int


router = APIRouter(tags=["ingest"])


def _items(body: bytes) -> list[Any] | JSONResponse:
    """The list of raw items of a request, or the problem response that explains why there is none."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return problem(400, "Bad Request", "request body is not valid JSON")
    if isinstance(payload, dict) and "touchpoints" in payload:
        payload = payload["touchpoints"]
    if not isinstance(payload, list):
        return problem(
            422,
            "Unprocessable Content",
            'body must be a JSON array of touchpoints or {"touchpoints": [...]}',
            [{"field": "(body)", "reason": "expected an array of touchpoints"}],
        )
    if not 1 <= len(payload) <= MAX_BATCH:
        return problem(
            422,
            "Unprocessable Content",
            f"a request carries 1 to {MAX_BATCH} touchpoints; this one has {len(payload)}",
            [{"field": "touchpoints", "reason": f"expected 1..{MAX_BATCH} items, got {len(payload)}"}],
        )
    return payload


@router.post(
    "/v1/touchpoints",
    response_model=IngestResult,
    openapi_extra={"requestBody": _BODY},
    responses={
        207: {"model": IngestResult, "description": "Some items were rejected or conflicting; the others were stored"}
    },
    summary="Ingest 1..500 touchpoints; each item is stored, duplicate, conflict, erased, or rejected with its errors",
)
async def post_touchpoints(request: Request) -> Response:
    items = _items(await request.body())
    if isinstance(items, JSONResponse):
        return items
    try:
        result = await run_in_threadpool(ingest, items)  # blocking DynamoDB calls: off the event loop
    except dynamodb.StoreUnavailableError:
        logger.warning("store unavailable during ingest", extra={"items": len(items)})
        return unavailable(UNAVAILABLE)
    metrics.add_metric(name="TouchpointsStored", unit=MetricUnit.Count, value=result.stored)
    metrics.add_metric(name="TouchpointsDuplicate", unit=MetricUnit.Count, value=result.duplicates)
    metrics.add_metric(name="TouchpointsRejected", unit=MetricUnit.Count, value=result.rejected)
    metrics.add_metric(name="TouchpointsConflict", unit=MetricUnit.Count, value=result.conflicts)
    metrics.add_metric(name="TouchpointsErased", unit=MetricUnit.Count, value=result.erased)
    if result.rejected == result.received:
        errors = [{"field": f"{r.index}.{e.field}", "reason": e.reason} for r in result.results for e in r.errors]
        return problem(422, "Unprocessable Content", "every touchpoint of the request was rejected", errors)
    status = 207 if result.rejected or result.conflicts else 200
    return JSONResponse(result.model_dump(mode="json"), status_code=status)


@router.put(
    "/v1/customers/{customer_id}/profile",
    response_model=Profile,
    responses={409: {"description": f"The customer was erased less than {erasure.ERASURE_TOMBSTONE_DAYS} days ago"}},
    summary="Set a customer's profile",
)
def put_profile(
    customer_id: CustomerId, profile: Annotated[Profile, Body(openapi_examples=examples.profile())]
) -> Response:
    try:
        profiles.put_profile(customer_id, profile)
    except erasure.CustomerErasedError:
        return problem(409, "Conflict", ERASED)
    metrics.add_metric(name="ProfilesSet", unit=MetricUnit.Count, value=1)
    logger.info("profile set", extra={"customer": pseudonym(customer_id)})
    return JSONResponse(profile.model_dump(mode="json"))


@router.get(
    "/v1/customers/{customer_id}/profile",
    response_model=Profile,
    responses={404: {"description": "No profile for this customer"}},
    summary="Read a customer's profile",
)
def get_profile(customer_id: CustomerId) -> Response:
    profile = profiles.get_profile(customer_id)
    metrics.add_metric(name="ProfilesRead", unit=MetricUnit.Count, value=1)
    if profile is None:
        return problem(404, "Not Found", "no profile stored for this customer")
    return JSONResponse(profile.model_dump(mode="json"))


@router.delete("/v1/customers/{customer_id}", response_model=Erased, summary="Erase every item of a customer")
def delete_customer(customer_id: CustomerId) -> Erased:
    deleted = erasure.erase_customer(customer_id)
    metrics.add_metric(name="CustomersErased", unit=MetricUnit.Count, value=1)
    logger.info("customer erased", extra={"customer": pseudonym(customer_id), "items": deleted})
    return Erased(customer_id=customer_id, deleted_items=deleted)


# The customer read path joins this group's routes (the function that serves the customer routes); its routes
# are added as they are, so that the group's `routes` lists plain routes for nbc serve and the template checks.
router.routes.extend(customers_router.routes)
app = create_app(router, title="Next-best-channel ingest API")
handler = lambda_handler(app)
