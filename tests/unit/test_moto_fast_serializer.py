"""The embedded moto's fast DynamoDB item serializer writes exactly what moto's generic shape walk writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from moto.core import serialize
from moto.core.utils import get_service_model

from nbc.local import moto_fixes

ITEM: dict[str, Any] = {
    "PK": {"S": "C#c-1"},
    "SK": {"S": "TP#e-1"},
    "n": {"N": "12.5"},
    "blob": {"B": b"\x00\x01binary"},
    "empty": {"S": ""},
    "tags": {"SS": ["a", "b"]},
    "nums": {"NS": ["1", "2"]},
    "blobs": {"BS": [b"x", b"y"]},
    "flag": {"BOOL": False},
    "nothing": {"NULL": True},
    "doc": {"M": {"inner": {"L": [{"S": "x"}, {"N": "3"}, {"M": {"deep": {"B": b"z"}}}]}, "none": {"NULL": True}}},
}
ODD: dict[str, Any] = {"PK": {"S": "C#c-2"}, "weird": {"s": "lower-case key: generic path"}}

CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("dynamodb", "GetItem", {"Item": ITEM}),
    ("dynamodb", "BatchGetItem", {"Responses": {"nbc": [ITEM, ODD]}, "UnprocessedKeys": {}}),
    ("dynamodb", "Query", {"Items": [ITEM, ITEM], "Count": 2, "ScannedCount": 2, "LastEvaluatedKey": None}),
    ("dynamodb", "Scan", {"Items": [ODD], "Count": 1, "ScannedCount": 1}),
    (
        "dynamodbstreams",
        "GetRecords",
        {
            "Records": [
                {
                    "eventID": "1",
                    "eventName": "INSERT",
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "dynamodb": {
                        "ApproximateCreationDateTime": datetime(2026, 12, 2, 4, 0, tzinfo=UTC),
                        "Keys": {"PK": ITEM["PK"], "SK": ITEM["SK"]},
                        "NewImage": ITEM,
                        "SequenceNumber": 1100000000017454423009,
                        "SizeBytes": 321,
                        "StreamViewType": "NEW_IMAGE",
                    },
                }
            ],
            "NextShardIterator": "arn:iterator",
        },
    ),
]


def _body(cls: type[serialize.ResponseSerializer], service: str, operation: str, result: Any) -> Any:
    model = get_service_model(service).operation_model(operation)
    out = cls(operation_model=model, value_picker=serialize.XFormedAttributePicker()).serialize(result)
    return out["status_code"], out["headers"], json.loads(out["body"])


@pytest.mark.parametrize(("service", "operation", "result"), CASES, ids=[c[1] for c in CASES])
def test_fast_serializer_writes_what_the_generic_one_writes(service: str, operation: str, result: Any) -> None:
    generic = _body(serialize.JSONSerializer, service, operation, result)
    fast = _body(moto_fixes._FastItemsSerializer, service, operation, result)
    assert fast == generic
    assert generic[2]  # the case serialises something


def test_items_take_the_fast_path_and_odd_shapes_the_generic_one() -> None:
    model = get_service_model("dynamodb").operation_model("GetItem")
    fast = moto_fixes._FastItemsSerializer(operation_model=model)
    assert fast._attribute_map(ITEM) is not None
    assert fast._attribute_map(ODD) is None


def test_installed_for_dynamodb_and_its_streams_only() -> None:
    moto_fixes.install()
    for service in ("dynamodb", "dynamodbstreams"):
        assert serialize.get_serializer_class(service, "json") is moto_fixes._FastItemsSerializer
    assert serialize.get_serializer_class("sqs", "json") is serialize.JSONSerializer
