"""Helpers for driving Lambda handlers in tests: the events/ files (nbc.local.events) and raw-body variants."""

from __future__ import annotations

from typing import Any

from nbc.local.events import LambdaContext, event

__all__ = ["LambdaContext", "event", "http_event"]


def http_event(body: str | None = None, method: str = "POST", path: str = "/v1/touchpoints") -> dict[str, Any]:
    """The events/ API Gateway v2 touchpoints event with another raw body (possibly broken), method or path."""
    ev = event("ingest_touchpoints.json")
    ev["rawPath"] = ev["requestContext"]["http"]["path"] = path
    ev["requestContext"]["http"]["method"] = method
    ev["routeKey"] = ev["requestContext"]["routeKey"] = f"{method} {path}"
    if body is None:
        ev.pop("body", None)
        ev["headers"].pop("content-length", None)
    else:
        ev["body"] = body
        ev["headers"]["content-length"] = str(len(body.encode()))
    return ev
