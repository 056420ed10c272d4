"""The model store: local folder and S3 (moto), publish / read / versions / CURRENT."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from model.adapters import aws
from model.adapters.registry import Manifest, ModelStore, StoreError, schema_hash


def _manifest(version: str, snips: float = 1.0) -> Manifest:
    features, categorical, levels = ["a", "channel", "message"], ["channel", "message"], {"message": ["m1", "m2"]}
    t0 = datetime(2026, 8, 1, tzinfo=UTC)
    return Manifest(
        version=version,
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
        training_window=(t0, datetime(2026, 10, 1, tzinfo=UTC)),
        features=features,
        categorical=categorical,
        schema_hash=schema_hash(features, categorical, levels),
        levels=levels,
        channels=["email", "sms"],
        objective="conversion",
        attribution_window_days=7.0,
        metrics={"auc": 0.7},
        policy_value={"model_snips": snips},
        code_version="test",
        files={"lightgbm": "model.txt"},
    )


def _exercise(store: ModelStore) -> None:
    assert store.versions() == []
    assert store.current() is None
    store.publish("v1", {"model.txt": b"tree"}, _manifest("v1"))
    store.publish("v2", {"model.txt": b"tree2", "report.json": b"{}"}, _manifest("v2", 2.0))
    assert store.versions() == ["v1", "v2"]
    assert store.read("v2", "model.txt") == b"tree2"
    m = store.manifest("v2")
    assert m.policy_value == {"model_snips": 2.0}
    assert m.check_hash()
    assert m.training_window[0] == datetime(2026, 8, 1, tzinfo=UTC)
    store.set_current("v1")
    assert store.current() == "v1"
    store.set_current("v2")
    assert store.current() == "v2"
    store.add_file("v2", "model.so", b"compiled")
    assert store.read("v2", "model.so") == b"compiled"
    assert store.has("v2", "model.so")
    assert not store.has("v1", "model.so")
    with pytest.raises(StoreError, match="already exists"):
        store.publish("v1", {}, _manifest("v1"))
    with pytest.raises(StoreError, match="unknown version"):
        store.set_current("nope")
    with pytest.raises(StoreError, match="unknown version"):
        store.add_file("nope", "x.bin", b"")
    with pytest.raises(StoreError, match="not found"):
        store.read("v1", "missing.txt")
    with pytest.raises(StoreError, match="invalid"):
        store.read("../etc", "passwd")


def test_local_store(tmp_path: Path) -> None:
    _exercise(ModelStore.from_uri(f"{tmp_path}/models"))


def test_s3_store(mocked_aws: None) -> None:
    aws.client("s3").create_bucket(Bucket="models-bucket")
    _exercise(ModelStore.from_uri("s3://models-bucket/models"))
    keys = {o["Key"] for o in aws.client("s3").list_objects_v2(Bucket="models-bucket")["Contents"]}
    assert {"models/CURRENT", "models/v1/manifest.json", "models/v2/model.txt"} <= keys


def test_incomplete_version_is_invisible(tmp_path: Path) -> None:
    store = ModelStore.from_uri(str(tmp_path))
    (tmp_path / "v0").mkdir()
    (tmp_path / "v0" / "model.txt").write_bytes(b"half")
    assert store.versions() == []


def test_schema_hash_changes_with_levels() -> None:
    a = schema_hash(["x"], ["x"], {"message": ["m1"]})
    assert a == schema_hash(["x"], ["x"], {"message": ["m1"]})
    assert a != schema_hash(["x"], ["x"], {"message": ["m1", "m2"]})


def test_bad_uri() -> None:
    with pytest.raises(StoreError):
        ModelStore.from_uri("gs://bucket/x")
