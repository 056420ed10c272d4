"""Powertools logger, tracer and metrics shared by every function (configured by POWERTOOLS_* variables)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "nbc")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "NextBestChannel")
if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")  # no X-Ray daemon outside Lambda

# Routes that record no metric (a profile read, say) are normal, not worth a warning per request.
warnings.filterwarnings("ignore", message="No application metrics to publish")


class _EMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF provider, minus one leak: with POWERTOOLS_METRICS_DISABLED (local runs, the demo) its
    flush keeps the metric set, which then grows across invocations until add_metric prints it anyway at 100
    values. Here a disabled flush discards the set."""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        if is_metrics_disabled():
            self.clear_metrics()
            return
        super().flush_metrics(raise_on_empty_metrics)


logger = Logger()
tracer = Tracer()
# The provider shares Metrics' class-level sets, as the default one does (one metric set per process).
metrics = Metrics(
    provider=_EMFProvider(
        metric_set=Metrics._metrics,
        dimension_set=Metrics._dimensions,
        metadata_set=Metrics._metadata,
        default_dimensions=Metrics._default_dimensions,
    )
)


# What powertools' inject_lambda_context adds to every later log line of the process (the logger is shared).
LAMBDA_CONTEXT_KEYS = ("cold_start", "function_name", "function_memory_size", "function_arn", "function_request_id")
MIN_KEY_BYTES = 16

_key_lock = threading.Lock()
_key: bytes | None = None


def forget_lambda_context() -> None:
    """Drop the Lambda context keys from the shared logger. Locally one process runs several handlers (`nbc serve`:
    the HTTP API and the stream pump's aggregator); without this, HTTP log lines would carry the aggregator's
    function name and request id once it has run."""
    logger.remove_keys(LAMBDA_CONTEXT_KEYS)


def _configured_key() -> bytes | None:
    """The pseudonym key: NBC_PSEUDONYM_KEY, else the SSM SecureString named by NBC_PSEUDONYM_KEY_PARAMETER (in AWS;
    template.yaml's PseudonymKeyParameter), else None."""
    from model.domain.settings import get_settings

    settings = get_settings()
    if settings.pseudonym_key is not None:
        return settings.pseudonym_key.get_secret_value().encode()
    name = settings.pseudonym_key_parameter
    if not name:
        return None
    from model.adapters import aws

    try:
        value = aws.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except Exception as exc:  # unreadable parameter: logs keep working, with a per-process key
        logger.warning("pseudonym key parameter unreadable", extra={"parameter": name, "error": type(exc).__name__})
        return None
    return str(value).encode()


def pseudonym_key() -> bytes:
    """The HMAC key of pseudonyms, read once per process. Without a configured one, a random key for this process
    (pseudonyms then differ between processes) and a warning, once."""
    global _key
    with _key_lock:
        if _key is None:
            key = _configured_key()
            if key is None:
                logger.warning(
                    "no pseudonym key configured (NBC_PSEUDONYM_KEY or NBC_PSEUDONYM_KEY_PARAMETER): using a random "
                    "key for this process; pseudonyms will not match across processes"
                )
                key = secrets.token_bytes(32)
            elif len(key) < MIN_KEY_BYTES:
                logger.warning("the pseudonym key is short: use 32 random bytes or more", extra={"bytes": len(key)})
            _key = key
        return _key


def reset_pseudonym_key() -> None:
    """Forget the key (tests, or after the configuration changed)."""
    global _key
    with _key_lock:
        _key = None


def pseudonym(customer_id: str) -> str:
    """A stable tag for logs, keyed: HMAC-SHA256 of the id under a secret key, 16 hex characters. Without the
    key it cannot be reversed by guessing ids (an unkeyed hash of `c-1` is found on the first try)."""
    return hmac.new(pseudonym_key(), customer_id.encode(), hashlib.sha256).hexdigest()[:16]
