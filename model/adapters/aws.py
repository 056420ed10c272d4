"""boto3 clients and resources built from settings (endpoint, region): moto locally, AWS in the cloud.

Time budgets. Every call has short timeouts and a bounded retry budget (`config`: connect 1 s, read 2 s by
default (NBC_AWS_CONNECT_TIMEOUT, NBC_AWS_READ_TIMEOUT), at most 3 attempts, standard retry mode), so that an
unreachable or frozen store fails fast instead of after minutes. A request path (HTTP) also runs under a total
deadline (`deadline`, set by functions/common/http.py): while one is set, a call does not start once the deadline
has passed (DeadlineExceededError), and a failed attempt is retried only if another full attempt still fits the
call's own budget (read timeout + RETRY_MARGIN_SECONDS from the call's start) and the deadline. A frozen store
(accepts connections, never answers) therefore fails after one read timeout, about 2 s, not after three; a refused
connection or a throttled call is retried at once. Offline work (training, the demo's set-up) runs without a
deadline and keeps botocore's 3 attempts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from model.domain.settings import Settings, get_settings

MAX_ATTEMPTS = 3
RETRY_MARGIN_SECONDS = 0.5  # under a deadline, a retry must be able to end within read timeout + this of the start
POOL_CONNECTIONS = 16  # >= the threads that share a client (the batch endpoint's parallel store calls)
_STARTED = "nbc_call_started"

# The monotonic instant by which the current request must be answered (None: no deadline, e.g. offline work).
# A ContextVar: each request (thread or task) has its own; copy_context() carries it into worker threads.
_deadline: ContextVar[float | None] = ContextVar("nbc_deadline", default=None)


class DeadlineExceededError(BotoCoreError):
    """The request's time budget is spent: no further AWS call is started (HTTP: 503 with Retry-After)."""

    fmt = "the request's time budget is spent ({operation} not started)"


@contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Run the block under a total deadline `seconds` from now (an outer, earlier deadline is kept)."""
    at = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(at if outer is None else min(at, outer))
    try:
        yield at
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline (negative once passed), None without one."""
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


def _before_call(context: dict[str, Any], model: Any = None, **_: Any) -> None:
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlineExceededError(operation=getattr(model, "name", "call"))
    context[_STARTED] = time.monotonic()


def _config(connect: float, read: float) -> Config:
    return Config(
        connect_timeout=connect,
        read_timeout=read,
        retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        max_pool_connections=POOL_CONNECTIONS,
    )


def config(settings: Settings | None = None) -> Config:
    """The botocore configuration of every client: short timeouts, a bounded retry budget."""
    s = settings or get_settings()
    return _config(s.aws_connect_timeout, s.aws_read_timeout)


def _with_budgets(client: Any, read_timeout: float) -> Any:
    def veto(request_dict: dict[str, Any] | None = None, **_: Any) -> bool | None:
        """needs-retry hook, ahead of botocore's: False vetoes a retry that would overrun the budgets; None lets
        botocore's standard policy decide (attempt count, retryable errors, backoff)."""
        left = remaining()
        if left is None:
            return None
        now = time.monotonic()
        started = (request_dict or {}).get("context", {}).get(_STARTED, now)
        if left < read_timeout or now - started > RETRY_MARGIN_SECONDS:
            return False
        return None

    events, service = client.meta.events, client.meta.service_model.service_id.hyphenize()
    events.register(f"before-call.{service}", _before_call, unique_id=f"nbc-deadline-before-call-{service}")
    # First among the service's needs-retry handlers: botocore's retry handler is registered there too, and the
    # first answer that is not None wins (False: no retry).
    events.register_first(f"needs-retry.{service}", veto, unique_id=f"nbc-deadline-retry-{service}")
    return client


@lru_cache(maxsize=16)
def _session_client(service: str, endpoint: str | None, region: str, connect: float, read: float) -> Any:
    session: Any = boto3.session.Session()  # `service` is dynamic: the typed overloads cannot apply
    made = session.client(service, endpoint_url=endpoint, region_name=region, config=_config(connect, read))
    return _with_budgets(made, read)


@lru_cache(maxsize=16)
def _session_resource(service: str, endpoint: str | None, region: str, connect: float, read: float) -> Any:
    session: Any = boto3.session.Session()
    resource = session.resource(service, endpoint_url=endpoint, region_name=region, config=_config(connect, read))
    _with_budgets(resource.meta.client, read)
    return resource


def client(service: str, settings: Settings | None = None) -> Any:
    s = settings or get_settings()
    return _session_client(service, s.aws_endpoint_url, s.region, s.aws_connect_timeout, s.aws_read_timeout)


def resource(service: str, settings: Settings | None = None) -> Any:
    s = settings or get_settings()
    return _session_resource(service, s.aws_endpoint_url, s.region, s.aws_connect_timeout, s.aws_read_timeout)


def reset_clients() -> None:
    """Forget cached clients (tests that switch endpoints, or after settings change)."""
    _session_client.cache_clear()
    _session_resource.cache_clear()
