"""The local store on disk: the embedded DynamoDB table saved as raw items to a gzipped JSON-lines file and loaded
back, so the demo's customers, and what `nbc serve` ingested, survive a restart.

Raw items (Scan, then BatchWriteItem) rather than a replay of the touchpoints: nothing is re-aggregated, so a
restore takes seconds. The file lives beside the local model store (`.nbc/local/table.jsonl.gz` for the default
`.nbc/models`): the model and the customers it was trained on travel together, and a test's own model store
(a temporary folder) never meets the developer's snapshot.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from model.adapters import aws
from model.adapters.table import PK, customer_pk
from model.domain.settings import Settings, get_settings
from nbc.local.aws import StreamPump

FILE_NAME = "table.jsonl.gz"
BATCH_WRITE = 25  # DynamoDB's BatchWriteItem maximum
CUSTOMER_PREFIX = customer_pk("")


def default_path(settings: Settings | None = None) -> Path | None:
    """`<model store's parent>/local/table.jsonl.gz` for a local model store; None for an s3:// store (the
    embedded S3 is not saved, so its models would be gone anyway: name a file with `nbc serve --state`)."""
    store = (settings or get_settings()).model_store
    if "://" in store:
        return None
    return Path(store).parent / "local" / FILE_NAME


def _encode(value: dict[str, Any]) -> dict[str, Any]:
    """An AttributeValue as DynamoDB JSON (binary base64-encoded, as in DynamoDB's own exports)."""
    (kind, inner), *_ = value.items()
    if kind == "B":
        return {"B": base64.b64encode(inner).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(v).decode() for v in inner]}
    if kind == "M":
        return {"M": {k: _encode(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_encode(v) for v in inner]}
    return value


def _decode(value: dict[str, Any]) -> dict[str, Any]:
    (kind, inner), *_ = value.items()
    if kind == "B":
        return {"B": base64.b64decode(inner)}
    if kind == "BS":
        return {"BS": [base64.b64decode(v) for v in inner]}
    if kind == "M":
        return {"M": {k: _decode(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_decode(v) for v in inner]}
    return value


def _scan(table: str) -> Iterator[dict[str, Any]]:
    client = aws.client("dynamodb", get_settings().model_copy(update={"aws_read_timeout": 120.0}))
    for page in client.get_paginator("scan").paginate(TableName=table):
        yield from page.get("Items", [])


def _customers(pks: set[str]) -> int:
    return sum(1 for pk in pks if pk.startswith(CUSTOMER_PREFIX))


def save(path: Path, settings: Settings | None = None) -> int:
    """Write every item of the table to `path` (atomically: a crash mid-way keeps the previous file); return the
    number of customers saved."""
    table = (settings or get_settings()).table_name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    pks: set[str] = set()
    with gzip.open(partial, "wt", encoding="utf-8", compresslevel=5) as out:
        for item in _scan(table):
            pks.add(item[PK]["S"])
            out.write(json.dumps({k: _encode(v) for k, v in item.items()}, separators=(",", ":")))
            out.write("\n")
    os.replace(partial, path)
    return _customers(pks)


def _items(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                yield {k: _decode(v) for k, v in raw.items()}
            except (ValueError, TypeError, AttributeError) as exc:
                raise ValueError(f"{path}: line {number} is not a DynamoDB item ({exc})") from exc


def load(path: Path, settings: Settings | None = None) -> int:
    """Write every item of the file into the (empty, just provisioned) table; return the number of customers."""
    table = (settings or get_settings()).table_name
    client = aws.client("dynamodb", get_settings().model_copy(update={"aws_read_timeout": 120.0}))
    pks: set[str] = set()
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        pending: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in batch]}
        while pending:  # unprocessed items are retried (moto returns none; DynamoDB may under throttling)
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        batch.clear()

    for item in _items(path):
        pks.add(item[PK]["S"])
        batch.append(item)
        if len(batch) == BATCH_WRITE:
            flush()
    if batch:
        flush()
    return _customers(pks)


def _count(customers: int) -> str:
    return f"{customers:,} customer{'' if customers == 1 else 's'}"


class SnapshotError(RuntimeError):
    """The local store's file cannot be read."""


@contextmanager
def served_table(
    path: Path | None, aggregate: Callable[[dict[str, Any], Any], Any], say: Callable[[str], None] = print
) -> Iterator[StreamPump]:
    """Inside `local_aws()`: restore the table from `path` (None: start empty, save nothing), pump its stream into
    `aggregate` (the Lambda event source mapping's part), and at exit fold what is pending, then save."""
    if path is not None and path.exists():
        try:
            restored = load(path)
        except (OSError, EOFError, ValueError, KeyError) as exc:
            raise SnapshotError(f"cannot read the local store {path}: {exc} (move it away, or --no-persist)") from exc
        say(f"{_count(restored)} restored from {path}")
    elif path is not None:
        say(f"no local store at {path} yet: starting with an empty table")
    pump = StreamPump(aggregate)
    pump.skip_existing()  # restored touchpoints are folded already
    pump.start()
    try:
        yield pump
    finally:
        pump.stop()
        if path is not None:
            try:
                pump.drain()  # what arrived since the last poll is folded before it is saved
            except Exception:  # the touchpoints are saved either way; their aggregate may lag
                logging.getLogger(__name__).exception("stream pump failed before saving")
            say(f"{_count(save(path))} saved to {path}")
