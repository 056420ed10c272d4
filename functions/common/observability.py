"""Powertools logger, tracer and metrics shared by every function (configured by POWERTOOLS_* variables)."""

from __future__ import annotations

import hashlib
import os
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "nbc")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "NextBestChannel")
if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")  # no X-Ray daemon outside Lambda

# Routes that record no metric (a profile read, say) are normal, not worth a warning per request.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def pseudonym(customer_id: str) -> str:
    """A stable, non-reversible tag for logs: customer ids never appear in clear text at INFO."""
    return hashlib.sha256(customer_id.encode()).hexdigest()[:12]
