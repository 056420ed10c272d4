"""The HTTP layer shared by every FastAPI app: problem+json errors, body limit, API key, app factory."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions.common.observability import logger, metrics, tracer
from model.domain.schemas import error_list
from model.domain.settings import get_settings

PROBLEM = "application/problem+json"
MAX_BODY_BYTES = 1_048_576  # 1 MiB, below API Gateway's own payload limits

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
    ]
}


def problem(status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    body = Problem(title=title, status=status, detail=detail, errors=[FieldError(**e) for e in errors or []])
    return JSONResponse(body.model_dump(), status_code=status, media_type=PROBLEM)


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
    """When NBC_API_KEY is set (local server), every request must carry it in x-api-key."""
    expected = get_settings().api_key
    if expected is None:
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
    logger.exception("unhandled error", extra={"path": request.url.path})
    return problem(500, "Internal Server Error", "unexpected error; it has been logged")


def create_app(*routers: APIRouter, title: str = "Next-best-channel API") -> FastAPI:
    """One FastAPI app from route groups: each Lambda mounts its own group, `nbc serve` mounts them all."""
    app = FastAPI(
        title=title,
        version="1.0.0",
        description="Ingest customer touchpoints and ask which channel, when and with what message to "
        "contact a customer next. Errors are application/problem+json.",
        dependencies=[Depends(require_api_key)],
        responses=PROBLEM_RESPONSES,
    )
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(Exception, _unhandled)
    for router in routers:
        app.include_router(router)
    app.add_middleware(BodyLimit)
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
