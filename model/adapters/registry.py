"""The model store: versioned model artifacts with a manifest, and a CURRENT pointer (local folder or S3).

    <root>/<version>/manifest.json     what the model expects (features, encoding, channels) and how it scored
    <root>/<version>/<file>            e.g. model.txt (LightGBM), report.json, a compiled model
    <root>/CURRENT                     the version that scoring loads (a small text object)

A version is complete once its manifest exists: `publish` writes the files first and the manifest last, so a
reader never sees a half-written version. Import-light: no lightgbm here (the scoring function imports it).
"""

from __future__ import annotations

import os
import re
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from model.adapters import aws
from model.domain.manifest import Manifest, new_version, schema_hash

__all__ = ["Manifest", "ModelStore", "StoreError", "new_version", "schema_hash"]

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


class StoreError(Exception):
    """A missing version or file, or an invalid name."""


def _check(name: str, what: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise StoreError(f"invalid {what} {name!r}: letters, digits, '.', '_' and '-' only")
    return name


class _Backend(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes: ...  # raises StoreError when missing

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def children(self) -> list[str]: ...  # first-level names under the root

    @abstractmethod
    def describe(self, key: str) -> str: ...


class _LocalBackend(_Backend):
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a reader sees the old file or the new one, never a torn write.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"not found: {self.describe(key)}") from None

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def children(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if p.is_dir()]

    def describe(self, key: str) -> str:
        return str(self.root / key)


class _S3Backend(_Backend):
    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @property
    def _s3(self) -> Any:
        return aws.client("s3")

    def put(self, key: str, data: bytes) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        s3 = self._s3
        try:
            body: bytes = s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except s3.exceptions.NoSuchKey:
            raise StoreError(f"not found: {self.describe(key)}") from None
        return body

    def exists(self, key: str) -> bool:
        resp = self._s3.list_objects_v2(Bucket=self.bucket, Prefix=self._key(key), MaxKeys=1)
        return any(obj["Key"] == self._key(key) for obj in resp.get("Contents", []))

    def children(self) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        out: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base, Delimiter="/"):
            out.extend(p["Prefix"][len(base) :].rstrip("/") for p in page.get("CommonPrefixes", []))
        return out

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


def blobs(uri: str, what: str = "store") -> _Backend:
    """Named byte objects under a local folder or an S3 prefix (`/path/dir`, a relative path, `s3://bucket/prefix`):
    the model store's backend, shared with other writers of files (audience decisions)."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[5:].partition("/")
        if not bucket:
            raise StoreError(f"invalid S3 {what} {uri!r}: expected s3://bucket/prefix")
        return _S3Backend(bucket, prefix)
    if "://" in uri:
        raise StoreError(f"unsupported {what} {uri!r}: use a folder path or s3://bucket/prefix")
    return _LocalBackend(Path(uri).expanduser())


class ModelStore:
    """Versioned models under one root: a local folder or an S3 prefix."""

    def __init__(self, backend: _Backend, uri: str) -> None:
        self._backend = backend
        self.uri = uri

    @classmethod
    def from_uri(cls, uri: str) -> ModelStore:
        """`/path/dir` (or a relative path) or `s3://bucket/prefix`."""
        return cls(blobs(uri, "model store"), uri)

    def __repr__(self) -> str:
        return f"ModelStore({self.uri!r})"

    def publish(self, version: str, files: dict[str, bytes], manifest: Manifest) -> None:
        """Write a new version: its files first, the manifest last (the manifest marks it complete)."""
        _check(version, "version")
        if manifest.version != version:
            raise StoreError(f"manifest version {manifest.version!r} differs from {version!r}")
        if self._backend.exists(f"{version}/{MANIFEST}"):
            raise StoreError(f"version {version!r} already exists in {self.uri}")
        for name, data in files.items():
            if _check(name, "file name") == MANIFEST:
                raise StoreError(f"{MANIFEST} is written from the manifest argument")
            self._backend.put(f"{version}/{name}", data)
        self._backend.put(f"{version}/{MANIFEST}", manifest.model_dump_json(indent=2).encode())

    def add_file(self, version: str, name: str, data: bytes) -> None:
        """Add a file to an existing version (e.g. a compiled model, written at promotion)."""
        _check(version, "version")
        if _check(name, "file name") in (MANIFEST, CURRENT):
            raise StoreError(f"{name} cannot be overwritten through add_file")
        if not self._backend.exists(f"{version}/{MANIFEST}"):
            raise StoreError(f"unknown version {version!r} in {self.uri}")
        self._backend.put(f"{version}/{name}", data)

    def update_manifest(self, manifest: Manifest) -> None:
        """Rewrite an existing version's manifest (e.g. to register a file added at promotion)."""
        version = _check(manifest.version, "version")
        if not self._backend.exists(f"{version}/{MANIFEST}"):
            raise StoreError(f"unknown version {version!r} in {self.uri}")
        self._backend.put(f"{version}/{MANIFEST}", manifest.model_dump_json(indent=2).encode())

    def read(self, version: str, name: str) -> bytes:
        return self._backend.get(f"{_check(version, 'version')}/{_check(name, 'file name')}")

    def has(self, version: str, name: str) -> bool:
        return self._backend.exists(f"{_check(version, 'version')}/{_check(name, 'file name')}")

    def manifest(self, version: str) -> Manifest:
        return Manifest.model_validate_json(self.read(version, MANIFEST))

    def versions(self) -> list[str]:
        """Complete versions (with a manifest), oldest first (names sort by creation time)."""
        names = [n for n in self._backend.children() if _NAME.match(n)]
        return sorted(n for n in names if self._backend.exists(f"{n}/{MANIFEST}"))

    def current(self) -> str | None:
        if not self._backend.exists(CURRENT):
            return None
        return self._backend.get(CURRENT).decode().strip() or None

    def set_current(self, version: str) -> None:
        _check(version, "version")
        if not self._backend.exists(f"{version}/{MANIFEST}"):
            raise StoreError(f"unknown version {version!r} in {self.uri}")
        self._backend.put(CURRENT, f"{version}\n".encode())

    def path_of(self, version: str, name: str) -> str:
        """Where a file lives (a local path or an s3:// URI), for messages and reports."""
        return self._backend.describe(f"{version}/{name}")
