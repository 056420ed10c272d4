"""Powertools logger, tracer and metrics shared by every function (configured by POWERTOOLS_* variables)."""

from __future__ import annotations

import hashlib
import os
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


def pseudonym(customer_id: str) -> str:
    """A stable, non-reversible tag for logs: customer ids never appear in clear text at INFO."""
    return hashlib.sha256(customer_id.encode()).hexdigest()[:12]
