"""Training sources: local files, a parallel Scan of the table (moto over HTTP), a DynamoDB export."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.adapters import aws, dynamodb, profiles, touchpoints
from model.adapters.table import customer_pk, decision_sk
from model.domain.schemas import Profile, Touchpoint
from model.domain.settings import get_settings
from training import sources
from training.dataset import normalise_touchpoints, profiles_map

T0 = datetime(2026, 10, 1, 9, tzinfo=UTC)


def _touchpoints(n: int = 30) -> list[Touchpoint]:
    kinds = ["sent", "opened", "clicked", "converted"]
    return [
        Touchpoint(
            event_id=f"e{i}",
            customer_id=f"c{i % 7}",
            channel=["email", "sms", "push"][i % 3],
            event_type=kinds[i % 4],
            occurred_at=T0 + timedelta(minutes=i),
            message_id="m1" if i % 4 == 0 else None,
            decision_id=f"d{i}" if i % 4 == 0 else None,
            value=12.5 if i % 4 == 3 else 0.0,
            attributes={"src": "test"},
        )
        for i in range(n)
    ]


def _decision_item(i: int) -> dict:
    return {
        "PK": {"S": customer_pk(f"c{i % 7}")},
        "SK": {"S": decision_sk(f"d{i}")},
        "decision_id": {"S": f"d{i}"},
        "decided_at": {"S": (T0 - timedelta(hours=1)).isoformat()},
        "channel": {"S": "email"},
        "send_at": {"S": T0.isoformat()},
        "message_id": {"S": "m1"},
        "propensity": {"N": "0.25"},
        "policy": {"S": "model"},
    }


def _check(src: sources.Sources, n: int = 30) -> None:
    assert src.touchpoints.num_rows == n
    norm = normalise_touchpoints(src.touchpoints)
    assert norm.height == n
    rows = {r["event_id"]: r for r in src.touchpoints.to_pylist()}
    assert rows["e3"]["value"] == 12.5
    assert rows["e3"]["event_type"] == "converted"
    assert rows["e0"]["decision_id"] == "d0"
    assert rows["e0"]["customer_id"] == "c0"
    assert float(norm.filter(norm["event_id"] == "e5")["ts"][0]) == (T0 + timedelta(minutes=5)).timestamp()
    assert src.profiles is not None
    profiles = profiles_map(src.profiles)
    assert profiles["c1"].timezone == "Europe/Paris"
    assert profiles["c1"].attributes["segment"] == "vip"
    assert src.decisions is not None
    assert src.decisions.num_rows == 2
    assert set(src.decisions["propensity"].to_pylist()) == {0.25}


def _profile() -> Profile:
    return Profile(timezone="Europe/Paris", consent={"sms": True}, attributes={"segment": "vip", "tenure_days": 30})


def test_table_scan_over_http(local_endpoint: str) -> None:
    touchpoints.put_touchpoints(_touchpoints())
    profiles.put_profile("c1", _profile())
    ddb = aws.client("dynamodb")
    for i in (0, 4):
        ddb.put_item(TableName=get_settings().table_name, Item=_decision_item(i))
    _check(sources.read_table(segments=3))
    _check(sources.load(f"dynamodb://{get_settings().table_name}"))


def _export_lines() -> list[bytes]:
    items = [touchpoints.touchpoint_item(tp) for tp in _touchpoints()]
    prof = {k: dynamodb.to_ddb(v) for k, v in _profile().model_dump(mode="json").items()}
    items.append({"PK": {"S": customer_pk("c1")}, "SK": {"S": "PROFILE"}, **prof})
    items += [_decision_item(0), _decision_item(4)]
    items.append({"PK": {"S": customer_pk("c1")}, "SK": {"S": "AGG"}, "state": {"S": "{}"}})  # skipped
    half = len(items) // 2
    return [
        gzip.compress(b"\n".join(json.dumps({"Item": it}).encode() for it in part) + b"\n")
        for part in (items[:half], items[half:])
    ]


def test_export_from_a_local_folder(tmp_path: Path) -> None:
    data = tmp_path / "AWSDynamoDB" / "01234-abcd" / "data"
    data.mkdir(parents=True)
    for i, blob in enumerate(_export_lines()):
        (data / f"part{i}.json.gz").write_bytes(blob)
    (tmp_path / "AWSDynamoDB" / "01234-abcd" / "manifest-summary.json").write_text("{}")
    _check(sources.read_export(tmp_path))
    _check(sources.load(str(tmp_path)))


def test_export_from_s3(mocked_aws: None) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="exports")
    for i, blob in enumerate(_export_lines()):
        s3.put_object(Bucket="exports", Key=f"nbc/AWSDynamoDB/0123/data/part{i}.json.gz", Body=blob)
    s3.put_object(Bucket="exports", Key="nbc/AWSDynamoDB/0123/manifest-summary.json", Body=b"{}")
    _check(sources.load("s3://exports/nbc"))


def test_export_table_to_point_in_time_then_read(local_endpoint: str) -> None:
    """The retraining path: DynamoDB's own export (moto writes it in AWS's format) read back from S3."""
    touchpoints.put_touchpoints(_touchpoints())
    profiles.put_profile("c1", _profile())
    ddb = aws.client("dynamodb")
    for i in (0, 4):
        ddb.put_item(TableName=get_settings().table_name, Item=_decision_item(i))
    aws.client("s3").create_bucket(Bucket="exports")
    uri = sources.export_table("exports", "nbc/run-1")
    assert uri == "s3://exports/nbc/run-1"
    _check(sources.load(uri))


def test_local_parquet_and_ndjson(tmp_path: Path) -> None:
    tps = [tp.model_dump(mode="json") for tp in _touchpoints()]
    (tmp_path / "touchpoints.ndjson").write_text("\n".join(json.dumps(t) for t in tps))
    src = sources.load(str(tmp_path))
    assert src.touchpoints.num_rows == 30
    assert src.profiles is None
    assert normalise_touchpoints(src.touchpoints).height == 30
    flat = [{**t, "attributes": json.dumps(t["attributes"])} for t in tps]
    pq.write_table(pa.Table.from_pylist(flat), tmp_path / "tp.parquet")
    assert sources.load(str(tmp_path / "tp.parquet")).touchpoints.num_rows == 30


def test_unknown_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(sources.SourceError, match="unknown source"):
        sources.load(str(tmp_path / "missing"))
    with pytest.raises(sources.SourceError, match="no touchpoints"):
        sources.load(str(tmp_path))
