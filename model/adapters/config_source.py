"""The configuration document in AWS: read once per process from S3 or SSM Parameter Store, handed to the domain.

``NBC_CONFIG_LOCATION`` (set by template.yaml's ``ConfigLocation`` parameter) names it: ``s3://bucket/key`` or an
SSM parameter name (``/nbc/config``; String or SecureString). The text goes to
`model.domain.settings.use_config_text`, which parses it (the domain does no I/O) and places it above local
files and below single environment variables. Empty or unset: nothing is read.

A location that cannot be read or does not parse stops the process (the caller's cold start fails): serving
with the default consent, caps and costs instead of the declared ones would be worse than not serving.
"""

from __future__ import annotations

import os
import threading

from model.adapters import aws
from model.domain.settings import use_config_text

LOCATION_ENV = "NBC_CONFIG_LOCATION"
MAX_BYTES = 1_000_000  # a configuration document, not a data set
_lock = threading.Lock()
_loaded: dict[str, str] = {}  # location -> text, once per process


class ConfigUnavailableError(RuntimeError):
    """The configured document cannot be read or is not a valid configuration."""


def fetch_text(location: str) -> str:
    """The document's text from ``s3://bucket/key`` or the SSM parameter of that name."""
    try:
        if location.startswith("s3://"):
            bucket, _, key = location.removeprefix("s3://").partition("/")
            if not bucket or not key:
                raise ConfigUnavailableError(f"configuration location {location!r}: expected s3://bucket/key")
            body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read(MAX_BYTES + 1)
            if len(body) > MAX_BYTES:
                raise ConfigUnavailableError(f"configuration {location} is larger than {MAX_BYTES} bytes")
            return bytes(body).decode("utf-8")
        param = aws.client("ssm").get_parameter(Name=location, WithDecryption=True)["Parameter"]
        return str(param["Value"])
    except ConfigUnavailableError:
        raise
    except Exception as exc:  # botocore errors, decoding: say where and what, not a stack of internals
        raise ConfigUnavailableError(f"configuration {location} unreadable: {type(exc).__name__}: {exc}") from exc


def load_configured(location: str | None = None) -> str | None:
    """Read the configured document once per process and put it in force; returns its location (None: none)."""
    where = (location if location is not None else os.environ.get(LOCATION_ENV, "")).strip()
    if not where:
        return None
    with _lock:
        if where in _loaded:
            return where
        text = fetch_text(where)
        try:
            use_config_text(text, origin=where)
        except ValueError as exc:
            raise ConfigUnavailableError(str(exc)) from None
        _loaded[where] = text
    return where


def forget() -> None:
    """Forget what was read (tests)."""
    with _lock:
        _loaded.clear()
