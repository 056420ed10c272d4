"""Lambda-shaped inputs for driving handlers outside Lambda (the demo, the tests): the events/ files as
templates and a context object with what the runtime provides."""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[2] / "events"


@dataclass
class LambdaContext:
    """The attributes the Lambda runtime's context carries (powertools' logger reads them)."""

    function_name: str = "nbc-local"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:nbc-local"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/nbc-local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@lru_cache(maxsize=16)
def _template(name: str) -> str:
    return (EVENTS / name).read_text()


def event(name: str) -> dict[str, Any]:
    """A fresh copy of one events/ file."""
    return dict(json.loads(_template(name)))


def http_event(method: str, path: str, body: Any | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API (v2) event for `method path` with a JSON body, shaped like events/ files."""
    ev = copy.deepcopy(event("ingest_touchpoints.json"))
    ev["rawPath"] = ev["requestContext"]["http"]["path"] = path
    ev["requestContext"]["http"]["method"] = method
    ev["routeKey"] = ev["requestContext"]["routeKey"] = f"{method} {path}"
    ev["requestContext"]["requestId"] = str(uuid.uuid4())
    if body is None:
        ev.pop("body", None)
        ev["headers"].pop("content-length", None)
    else:
        text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        ev["body"] = text
        ev["isBase64Encoded"] = False
        ev["headers"]["content-length"] = str(len(text.encode()))
    return ev
