"""The local store's file: every item of the embedded table saved and restored as it was, a corrupt file refused."""

from __future__ import annotations

import gzip
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from model.adapters import aws
from model.adapters.table import ensure_table
from model.domain.settings import get_settings
from nbc.local import snapshot

ITEMS: list[dict[str, Any]] = [
    {
        "PK": {"S": "C#c-1"},
        "SK": {"S": "AGG"},
        "n": {"N": "3"},
        "doc": {"M": {"l": {"L": [{"S": "x"}, {"B": b"\x01"}]}}},
    },
    {"PK": {"S": "C#c-1"}, "SK": {"S": "TP#e-1"}, "blob": {"B": b"\x00\xffraw"}, "bs": {"BS": [b"a", b"b"]}},
    {"PK": {"S": "C#c-2"}, "SK": {"S": "PROFILE"}, "tags": {"SS": ["a", "b"]}, "ok": {"BOOL": True}},
    {"PK": {"S": "OTHER"}, "SK": {"S": "X"}, "none": {"NULL": True}},
]


def _all(table: str) -> list[dict[str, Any]]:
    items = aws.client("dynamodb").scan(TableName=table)["Items"]
    return sorted(items, key=lambda i: (i["PK"]["S"], i["SK"]["S"]))


def test_saved_table_is_restored_item_for_item(
    local_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ddb = aws.client("dynamodb")
    source = get_settings().table_name
    for item in ITEMS:
        ddb.put_item(TableName=source, Item=item)
    path = tmp_path / "local" / "table.jsonl.gz"
    assert snapshot.save(path) == 2  # customers (C#...), not items
    assert not path.with_name(path.name + ".partial").exists()

    monkeypatch.setenv("NBC_TABLE_NAME", f"nbc-{uuid.uuid4().hex[:8]}")  # a restart: a new, empty table
    get_settings.cache_clear()
    ensure_table()
    target = get_settings().table_name
    assert _all(target) == []
    assert snapshot.load(path) == 2
    assert _all(target) == _all(source)
    assert len(_all(target)) == len(ITEMS)


def test_default_file_lives_beside_a_local_model_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NBC_MODEL_STORE", str(tmp_path / "nbc" / "models"))
    get_settings.cache_clear()
    assert snapshot.default_path() == tmp_path / "nbc" / "local" / "table.jsonl.gz"
    monkeypatch.setenv("NBC_MODEL_STORE", "s3://bucket/models")
    get_settings.cache_clear()
    assert snapshot.default_path() is None


def test_a_corrupt_file_is_refused_with_its_name(local_endpoint: str, tmp_path: Path) -> None:
    path = tmp_path / "table.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.write('{"PK": {"S": "C#c-1"}, "SK": {"S": "AGG"}}\nnot json\n')
    ignore = lambda _event, _ctx: None  # noqa: E731
    with pytest.raises(snapshot.SnapshotError, match="line 2"), snapshot.served_table(path, ignore, say=print):
        pass
    path.write_bytes(b"not gzip at all")
    with pytest.raises(snapshot.SnapshotError, match=re.escape(str(path))), snapshot.served_table(path, ignore):
        pass
