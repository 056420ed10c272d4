"""The HTTP layer shared by every FastAPI app: problem+json errors, body limit, API key, time budget, app factory.

Store trouble is one mapping for every route: DynamoDB unreachable, frozen, throttling past the retry budget, a
missing table, or the request's deadline spent -> 503 problem+json with Retry-After, never a 500. Every request
runs under a total deadline below API Gateway's 29 s (REQUEST_DEADLINE_SECONDS, or less when the Lambda has less
time left); model/adapters/aws.py refuses to start AWS calls past it and keeps retries within it.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions.common.observability import logger, metrics, tracer
from model.adapters import aws
from model.adapters.dynamodb import StoreUnavailableError
from model.domain.schemas import error_list
from model.domain.settings import get_settings

PROBLEM = "application/problem+json"
MAX_BODY_BYTES = 1_048_576  # 1 MiB, below API Gateway's own payload limits
REQUEST_DEADLINE_SECONDS = 25.0  # total per request: below API Gateway's 29 s integration timeout
LAMBDA_MARGIN_SECONDS = 1.0  # on Lambda, answer this long before the function's own timeout
RETRY_AFTER_SECONDS = 1
UNAVAILABLE = "the customer store is unavailable or busy; retry the request after Retry-After seconds"
# Routes open without the API key, as in the cloud (template.yaml: the JWT authorizer covers all but /health).
OPEN_ROUTES = frozenset({"/health"})
# DynamoDB errors that are the caller's (our) mistake, not the store's state: a bug, answered 500 and logged.
REQUEST_BUGS = frozenset({"ValidationException", "SerializationException"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field.")
    reason: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] = Field(default_factory=list)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM: {}}, "description": desc}
    for code, desc in [
        (400, "Malformed request"),
        (401, "Missing or wrong API key"),
        (413, "Body too large"),
        (422, "Invalid request"),
        (503, "The store is unavailable or busy, or the time budget is spent: retry after Retry-After seconds"),
    ]
}


# How callers authenticate, as the OpenAPI schema declares it (/docs shows an Authorize button for both).
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "ApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "On this machine (`nbc serve`): the value of NBC_API_KEY, required on every route but "
        "/health when it is set (the documentation routes included).",
    },
    "Jwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "As deployed: an OAuth2 access token (client-credentials flow) from the identity provider "
        "the stack's JWT authorizer trusts (template parameters JwtIssuer, JwtAudience), carrying the route's "
        "scope: <prefix>ingest for touchpoints and profiles, <prefix>recommend for recommendations and the "
        "model, <prefix>read for GET /v1/customers/{customer_id}, <prefix>erase for DELETE; prefix `nbc/` by "
        "default (JwtScopePrefix).",
    },
}


def _declare_security(app: FastAPI) -> None:
    """Add the security schemes to the app's OpenAPI schema: either one on every route, none on the open ones."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's, cached on the app after the first call
        components = schema.setdefault("components", {})
        if "securitySchemes" not in components:
            components["securitySchemes"] = SECURITY_SCHEMES
            schema["security"] = [{name: []} for name in SECURITY_SCHEMES]  # alternatives: either one
            for path in OPEN_ROUTES:
                for operation in schema.get("paths", {}).get(path, {}).values():
                    operation["security"] = []
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def problem(status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    body = Problem(title=title, status=status, detail=detail, errors=[FieldError(**e) for e in errors or []])
    return JSONResponse(body.model_dump(), status_code=status, media_type=PROBLEM)


def unavailable(detail: str = UNAVAILABLE) -> JSONResponse:
    """503 problem+json with Retry-After: what every route answers when the store cannot serve it now."""
    response = problem(503, "Service Unavailable", detail)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def route_template(request: Request) -> str:
    """The matched route's template (/v1/customers/{customer_id}/profile), never the path: paths carry ids."""
    return str(getattr(request.scope.get("route"), "path", "(no route)"))


def _store_error(request: Request, exc: Exception) -> JSONResponse:
    """The one mapping of store failures to HTTP: 503 + Retry-After, except a request DynamoDB refuses as
    malformed, which is a bug of ours (500, logged with its traceback)."""
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if code in REQUEST_BUGS:
        return _unhandled(request, exc)
    logger.warning(
        "store unavailable",
        extra={"route": route_template(request), "error": type(exc).__name__, "code": code or None},
    )
    return unavailable()


class Deadline:
    """Run each request under a total deadline (model.adapters.aws.deadline): REQUEST_DEADLINE_SECONDS, or less
    when the Lambda function has less time left."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        budget = REQUEST_DEADLINE_SECONDS
        context = scope.get("aws.context")
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining_ms):
            budget = min(budget, max(0.5, remaining_ms() / 1000 - LAMBDA_MARGIN_SECONDS))
        with aws.deadline(budget):
            await self.app(scope, receive, send)


class BodyLimit:
    """Refuse bodies over the limit with 413, whether or not a Content-Length is sent."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._too_large(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, "Payload Too Large", f"request body exceeds {self.limit} bytes")
        await response(scope, receive, send)


async def require_api_key(request: Request) -> None:
    """When NBC_API_KEY is set (local server), every request must carry it in x-api-key, documentation included,
    except the open routes (/health), as in the cloud."""
    expected = get_settings().api_key
    if expected is None or route_template(request) in OPEN_ROUTES:
        return
    given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(status_code=401, detail="missing or wrong x-api-key header")


def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem(400, "Bad Request", "request body is not valid JSON", error_list(errors))
    return problem(422, "Unprocessable Content", "the request does not match the schema", error_list(errors))


def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = {
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        405: "Method Not Allowed",
        413: "Payload Too Large",
        422: "Unprocessable Content",
    }.get(exc.status_code, "Error")
    errors = exc.detail if isinstance(exc.detail, list) else None
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem(exc.status_code, title, detail, errors)


def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # The route template, never the path: customer ids are in paths, and never in clear text in logs.
    logger.exception("unhandled error", extra={"route": route_template(request), "method": request.method})
    return problem(500, "Internal Server Error", "unexpected error; it has been logged")


def _documentation(app: FastAPI) -> None:
    """/openapi.json, /docs and /redoc as ordinary routes, so that the API key covers them like any other."""

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


def create_app(*routers: APIRouter, title: str = "Next-best-channel API") -> FastAPI:
    """One FastAPI app from route groups: each Lambda mounts its own group, `nbc serve` mounts them all."""
    app = FastAPI(
        title=title,
        version="1.0.0",
        description="Ingest customer touchpoints and ask which channel, when and with what message to "
        "contact a customer next. Errors are application/problem+json.",
        dependencies=[Depends(require_api_key)],
        responses=PROBLEM_RESPONSES,
        openapi_url=None,  # served by _documentation, behind the key
        docs_url=None,
        redoc_url=None,
    )
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    for store_error in (StoreUnavailableError, BotoCoreError, ClientError):
        app.add_exception_handler(store_error, _store_error)
    app.add_exception_handler(Exception, _unhandled)
    for router in routers:
        app.include_router(router)
    _documentation(app)
    _declare_security(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(Deadline)
    return app


def lambda_handler(app: FastAPI) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda entry point of a FastAPI app: Mangum (API Gateway HTTP API v2 events), wrapped in powertools
    logging (with the Lambda context), tracing and metrics."""
    mangum = Mangum(app, lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, PROBLEM])

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return dict(mangum(event, context))

    return handler
