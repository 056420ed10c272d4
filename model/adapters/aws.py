"""boto3 clients and resources built from settings (endpoint, region): moto locally, AWS in the cloud."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

from model.domain.settings import Settings, get_settings

_CONFIG = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=2, read_timeout=30)


@lru_cache(maxsize=16)
def _session_client(service: str, endpoint: str | None, region: str) -> Any:
    session: Any = boto3.session.Session()  # `service` is dynamic: the typed overloads cannot apply
    return session.client(service, endpoint_url=endpoint, region_name=region, config=_CONFIG)


@lru_cache(maxsize=16)
def _session_resource(service: str, endpoint: str | None, region: str) -> Any:
    session: Any = boto3.session.Session()
    return session.resource(service, endpoint_url=endpoint, region_name=region, config=_CONFIG)


def client(service: str, settings: Settings | None = None) -> Any:
    s = settings or get_settings()
    return _session_client(service, s.aws_endpoint_url, s.region)


def resource(service: str, settings: Settings | None = None) -> Any:
    s = settings or get_settings()
    return _session_resource(service, s.aws_endpoint_url, s.region)


def reset_clients() -> None:
    """Forget cached clients (tests that switch endpoints, or after settings change)."""
    _session_client.cache_clear()
    _session_resource.cache_clear()
