"""The single DynamoDB table: key design and creation (locally; in the cloud template.yaml owns it).

    PK            SK                 item
    C#<customer>  TP#<event_id>      a touchpoint (LSI `by_time` sorts a customer's touchpoints by TS)
    C#<customer>  AGG                the feature aggregate (JSON state + version for optimistic locking)
    C#<customer>  PROFILE            the declared profile (time zone, consent, quiet hours, attributes)
    C#<customer>  DEC#<decision_id>  a served decision (policy, propensity) for off-policy evaluation
    C#<customer>  ERASED             the erasure tombstone (erased_at, TTL): no item of the customer is written
                                     while it lives

Keying touchpoints by event_id makes writes idempotent: the same event twice is one item. A touchpoint is
written once (conditional on its absence) and never rewritten; the aggregator only adds `agg_version`, the
version of the aggregate that folded it, in the same transaction that writes that aggregate.
"""

from __future__ import annotations

from typing import Any

from model.adapters import aws
from model.domain.settings import Settings, get_settings

PK, SK, TS, TTL = "PK", "SK", "TS", "expires_at"
BY_TIME = "by_time"
AGG_SK, PROFILE_SK, ERASED_SK = "AGG", "PROFILE", "ERASED"
FOLDED = "agg_version"  # on a touchpoint: the aggregate version that folded it (absent: not folded yet)


def customer_pk(customer_id: str) -> str:
    return f"C#{customer_id}"


def touchpoint_sk(event_id: str) -> str:
    return f"TP#{event_id}"


def decision_sk(decision_id: str) -> str:
    return f"DEC#{decision_id}"


def table_definition(name: str) -> dict[str, Any]:
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": PK, "AttributeType": "S"},
            {"AttributeName": SK, "AttributeType": "S"},
            {"AttributeName": TS, "AttributeType": "S"},
        ],
        "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
        "LocalSecondaryIndexes": [
            {
                "IndexName": BY_TIME,
                "KeySchema": [
                    {"AttributeName": PK, "KeyType": "HASH"},
                    {"AttributeName": TS, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    }


def ensure_table(settings: Settings | None = None) -> str:
    """Create the table (with stream, TTL and point-in-time recovery) if it does not exist; return its stream ARN."""
    s = settings or get_settings()
    ddb = aws.client("dynamodb", s)
    try:
        desc = ddb.describe_table(TableName=s.table_name)["Table"]
    except ddb.exceptions.ResourceNotFoundException:
        desc = ddb.create_table(**table_definition(s.table_name))["TableDescription"]
        ddb.get_waiter("table_exists").wait(TableName=s.table_name)
        ddb.update_time_to_live(TableName=s.table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL})
        # As in template.yaml: PITR protects the data and is what ExportTableToPointInTime (retraining) reads.
        ddb.update_continuous_backups(
            TableName=s.table_name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    return str(desc.get("LatestStreamArn", ""))
