"""Decision items: served decisions (PutItem / BatchWriteItem) and imported ones share one format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from model.adapters import aws, erasure
from model.adapters.decision_log import import_decisions, log_decisions
from model.adapters.table import customer_pk
from model.domain.decide import decide
from model.domain.recommend_schemas import RecommendationRequest
from model.domain.settings import get_settings

pytestmark = pytest.mark.usefixtures("mocked_aws")
NOW = datetime(2026, 11, 23, 8, 12, tzinfo=UTC)


def items(customer_id: str) -> list[dict]:
    resp = aws.client("dynamodb").query(
        TableName=get_settings().table_name,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :dec)",
        ExpressionAttributeValues={":pk": {"S": customer_pk(customer_id)}, ":dec": {"S": "DEC#"}},
    )
    return list(resp["Items"])


def test_served_decisions_are_stored_one_or_many() -> None:
    one = decide(RecommendationRequest(customer_id="c-1", now=NOW), None, None, None)
    log_decisions([one])
    many = [decide(RecommendationRequest(customer_id="c-2", now=NOW), None, None, None) for _ in range(30)]
    log_decisions(many)  # 30 > 25: two BatchWriteItem calls
    (item,) = items("c-1")
    assert item["decision_id"]["S"] == one.decision_id
    assert item["policy"]["S"] == one.policy.value
    assert float(item["propensity"]["N"]) == pytest.approx(one.propensity)
    assert item["channel"]["S"] == one.recommendations[0].channel
    assert {i["decision_id"]["S"] for i in items("c-2")} == {r.decision_id for r in many}


def test_imported_decisions_use_the_same_fields() -> None:
    rows = [
        {
            "decision_id": f"d{i}",
            "customer_id": "c-9",
            "decided_at": NOW - timedelta(days=1),
            "channel": "email",
            "send_at": NOW,
            "message_id": "m1",
            "propensity": 0.25,
            "policy": "logging",
        }
        for i in range(27)
    ]
    assert import_decisions(rows) == 27
    stored = {i["decision_id"]["S"]: i for i in items("c-9")}
    assert len(stored) == 27
    d0 = stored["d0"]
    assert (d0["channel"]["S"], d0["message_id"]["S"], d0["policy"]["S"]) == ("email", "m1", "logging")
    assert float(d0["propensity"]["N"]) == 0.25
    assert datetime.fromisoformat(d0["send_at"]["S"]) == NOW
    assert int(d0["expires_at"]["N"]) > NOW.timestamp()


def test_decisions_about_erased_customers_are_not_stored() -> None:
    erasure.erase_customer("c-gone")
    served = [
        decide(RecommendationRequest(customer_id=c, now=NOW), None, None, None) for c in ("c-gone", "c-3", "c-gone")
    ]
    assert log_decisions(served) == 1
    assert items("c-gone") == []
    assert len(items("c-3")) == 1
    rows = [{"decision_id": f"x{i}", "customer_id": c, "decided_at": NOW} for i, c in enumerate(["c-gone", "c-4"])]
    assert import_decisions(rows) == 1
    assert items("c-gone") == []
