"""The shared powertools metrics: emitted as EMF when enabled, silent (and not accumulating) when disabled."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.metrics import MetricUnit

from functions.common.observability import metrics


@metrics.log_metrics
def _handler(event: dict[str, int], context: object) -> None:
    for _ in range(event["values"]):
        metrics.add_metric(name="Things", unit=MetricUnit.Count, value=1)


def _emf_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_disabled_metrics_never_print_and_do_not_pile_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for _ in range(30):  # 30 x 10 values: plain powertools prints the set once it holds 100 values
        _handler({"values": 10}, None)
    assert _emf_lines(capsys.readouterr().out) == []
    assert metrics.provider.metric_set == {}


def test_enabled_metrics_flush_as_emf(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    _handler({"values": 3}, None)
    (line,) = _emf_lines(capsys.readouterr().out)
    assert line["Things"] == [1.0, 1.0, 1.0]
    assert metrics.provider.metric_set == {}
