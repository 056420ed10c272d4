"""The local stream pump delivers the table's real stream records, shaped as Lambda stream events."""

from __future__ import annotations

from typing import Any

from model.adapters import aws
from model.domain.settings import get_settings
from nbc.local.aws import StreamPump


def test_pump_delivers_every_insert_once(local_endpoint: str) -> None:
    ddb = aws.client("dynamodb")
    table = get_settings().table_name
    for i in range(7):
        ddb.put_item(TableName=table, Item={"PK": {"S": "C#c1"}, "SK": {"S": f"TP#e{i}"}, "TS": {"S": f"t{i}"}})

    events: list[dict[str, Any]] = []
    pump = StreamPump(lambda event, _ctx: events.append(event), batch_size=3)
    assert pump.drain() == 7
    records = [r for e in events for r in e["Records"]]
    assert [r["dynamodb"]["Keys"]["SK"]["S"] for r in records] == [f"TP#e{i}" for i in range(7)]
    assert all(r["eventName"] == "INSERT" and ":table/" in r["eventSourceARN"] for r in records)
    assert all(isinstance(r["dynamodb"]["ApproximateCreationDateTime"], int) for r in records)
    assert max(len(e["Records"]) for e in events) <= 3

    ddb.put_item(TableName=table, Item={"PK": {"S": "C#c1"}, "SK": {"S": "TP#e7"}, "TS": {"S": "t7"}})
    assert pump.drain() == 1  # resumes where it stopped
