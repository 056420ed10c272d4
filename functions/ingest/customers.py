"""The customer read route: GET /v1/customers/{id} (profile, aggregate summary, decisions, touchpoints)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response

from functions.common.http import problem
from functions.common.observability import logger, metrics, pseudonym
from model.adapters.customer_view import MAX_CURSOR, InvalidCursorError, read_customer
from model.domain.customer_schemas import DEFAULT_PAGE, MAX_PAGE, CustomerView
from model.domain.schemas import ID_PATTERN

CustomerId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=MAX_CURSOR, pattern=r"^[A-Za-z0-9_\-]+$")]

router = APIRouter(tags=["customers"])


@router.get(
    "/v1/customers/{customer_id}",
    response_model=CustomerView,
    responses={404: {"description": "Nothing is stored for this customer (unknown, or erased)"}},
    summary="Read what is stored about a customer: profile, aggregate, recent decisions and touchpoints",
    description="Touchpoints and decisions come newest first, `limit` of each per page; pass a list's "
    "`next_cursor` back as `touchpoints_cursor` or `decisions_cursor` for its next page.",
)
def get_customer(
    customer_id: CustomerId,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Touchpoints and decisions per page.")] = DEFAULT_PAGE,
    touchpoints_cursor: Cursor = None,
    decisions_cursor: Cursor = None,
) -> Response:
    try:
        view = read_customer(customer_id, limit, touchpoints_cursor, decisions_cursor)
    except InvalidCursorError as err:
        return problem(
            422, "Unprocessable Content", str(err), [{"field": f"query.{err.parameter}", "reason": str(err)}]
        )
    metrics.add_metric(name="CustomersRead", unit=MetricUnit.Count, value=1)
    if view is None:
        return problem(404, "Not Found", "nothing is stored for this customer (unknown, or erased)")
    logger.info("customer read", extra={"customer": pseudonym(customer_id)})
    return JSONResponse(view.model_dump(mode="json"))
