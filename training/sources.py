"""Where the touchpoints come from: local files, the DynamoDB table, or a DynamoDB export in S3.

Every source returns the same `Sources` of pyarrow Tables (touchpoints with the Touchpoint fields; profiles
as customer_id + Profile fields, JSON-encoded; decisions), so the dataset code never knows the origin.

* local: a folder holding touchpoints.(parquet|ndjson|jsonl) and optionally profiles.* and decisions.*, or
  one touchpoint file;
* table: a parallel Scan by segments (one thread per segment) of the single table; items are told apart by
  their sort key: TP#<event_id>, PROFILE, DEC#<decision_id> (the aggregate, AGG, is derived and skipped);
* export: DynamoDB's export-to-S3 format, gzipped DynamoDB-JSON lines ({"Item": {...}}) under
  `.../AWSDynamoDB/<export-id>/data/`, read from an s3:// prefix or a local copy of it.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from model.adapters import aws
from model.adapters.dynamodb import from_image
from model.adapters.table import PK, SK
from model.domain.settings import get_settings

TOUCHPOINT_FIELDS = (
    "event_id",
    "customer_id",
    "channel",
    "event_type",
    "occurred_at",
    "campaign_id",
    "message_id",
    "decision_id",
    "value",
    "attributes",
)
PROFILE_FIELDS = ("customer_id", "timezone", "consent", "quiet_hours", "attributes")
DECISION_FIELDS = (
    "decision_id",
    "customer_id",
    "decided_at",
    "channel",
    "send_at",
    "message_id",
    "propensity",
    "policy",
)
_SCHEMAS = {
    "touchpoints": pa.schema(
        [(f, pa.float64() if f == "value" else pa.string()) for f in TOUCHPOINT_FIELDS],
    ),
    "profiles": pa.schema([(f, pa.string()) for f in PROFILE_FIELDS]),
    "decisions": pa.schema([(f, pa.float64() if f == "propensity" else pa.string()) for f in DECISION_FIELDS]),
}


SCAN_PAGE = 1000  # items per Scan page


class SourceError(ValueError):
    """The source is missing, empty or in a format we do not read."""


@dataclass
class Sources:
    touchpoints: pa.Table
    profiles: pa.Table | None = None
    decisions: pa.Table | None = None


# --- local files -----------------------------------------------------------------------------------------


def _read_ndjson(path: Path) -> pa.Table:
    """NDJSON read with an explicit schema: the project's fields from every line, not the first line's keys (a
    `value` missing from line 1 is kept on the others). Nested values (attributes, consent) keep their JSON
    text, as in the Parquet files; keys the pipeline does not read are left out."""
    stem = path.name.split(".", 1)[0]
    kind = next((k for k in ("profiles", "decisions") if stem.startswith(k)), "touchpoints")
    if path.stat().st_size == 0:
        return _SCHEMAS[kind].empty_table()
    try:
        df = pl.read_ndjson(path, schema={f.name: pl.String for f in _SCHEMAS[kind]})
    except pl.exceptions.PolarsError as err:
        raise SourceError(f"{path} is not NDJSON (one JSON object per line): {str(err).splitlines()[0]}") from None
    try:
        return df.to_arrow().cast(_SCHEMAS[kind])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise SourceError(f"{path}: {err}; check and convert the file with `nbc import`") from None


def _read_file(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    if path.suffix in (".ndjson", ".jsonl", ".json"):
        return _read_ndjson(path)
    raise SourceError(f"unsupported file type {path.suffix!r} ({path}): use .parquet, .ndjson or .jsonl")


def _find(folder: Path, stem: str) -> Path | None:
    for ext in (".parquet", ".ndjson", ".jsonl"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def read_local(path: str | Path) -> Sources:
    p = Path(path)
    if p.is_file():
        return Sources(_read_file(p))
    if not p.is_dir():
        raise SourceError(f"no such file or folder: {p}")
    tp = _find(p, "touchpoints")
    if tp is None:
        raise SourceError(f"{p} holds no touchpoints.parquet / touchpoints.ndjson / touchpoints.jsonl")
    prof, dec = _find(p, "profiles"), _find(p, "decisions")
    return Sources(_read_file(tp), _read_file(prof) if prof else None, _read_file(dec) if dec else None)


# --- DynamoDB items (table scan and export share this) ---------------------------------------------------


def _customer(doc: dict[str, Any]) -> str:
    pk = str(doc.get(PK, ""))
    return str(doc.get("customer_id") or (pk[2:] if pk.startswith("C#") else pk))


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


class _Collector:
    """Sorts plain (already decoded) items into touchpoint, profile and decision rows."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {"touchpoints": [], "profiles": [], "decisions": []}

    def add(self, doc: dict[str, Any]) -> None:
        sk = str(doc.get(SK, ""))
        if sk.startswith("TP#"):
            row: dict[str, Any] = {f: _str(doc.get(f)) for f in TOUCHPOINT_FIELDS if f != "value"}
            row["customer_id"] = _customer(doc)
            row["value"] = float(doc.get("value") or 0.0)
            self.rows["touchpoints"].append(row)
        elif sk == "PROFILE":
            nested = doc.get("profile")
            prof: dict[str, Any] = nested if isinstance(nested, dict) else doc
            row = {f: _str(prof.get(f)) for f in PROFILE_FIELDS}
            row["customer_id"] = _customer(doc)
            self.rows["profiles"].append(row)
        elif sk.startswith("DEC#"):
            row = {f: _str(doc.get(f)) for f in DECISION_FIELDS if f != "propensity"}
            row["decision_id"] = row["decision_id"] or sk[4:]
            row["customer_id"] = _customer(doc)
            row["decided_at"] = row["decided_at"] or _str(doc.get("created_at"))
            prop = doc.get("propensity")
            row["propensity"] = float(prop) if prop is not None else None
            self.rows["decisions"].append(row)

    def extend(self, docs: Iterable[dict[str, Any]]) -> None:
        for doc in docs:
            self.add(doc)

    def merge(self, other: _Collector) -> None:
        for k, v in other.rows.items():
            self.rows[k].extend(v)

    def sources(self, origin: str) -> Sources:
        tables = {k: pa.Table.from_pylist(v, schema=_SCHEMAS[k]) for k, v in self.rows.items()}
        if tables["touchpoints"].num_rows == 0:
            raise SourceError(
                f"no touchpoints found in {origin}: send them to the API (POST /v1/touchpoints) or import your "
                "history with `nbc import SOURCE --out DIR` and train on DIR"
            )
        return Sources(
            tables["touchpoints"],
            tables["profiles"] if tables["profiles"].num_rows else None,
            tables["decisions"] if tables["decisions"].num_rows else None,
        )


def _scan_segment(table: str, segment: int, total: int) -> _Collector:
    ddb = aws.client("dynamodb")
    out = _Collector()
    # Bounded pages keep each response quick to produce (DynamoDB caps a page at 1 MB anyway).
    kwargs: dict[str, Any] = {"TableName": table, "Segment": segment, "TotalSegments": total, "Limit": SCAN_PAGE}
    while True:
        page = ddb.scan(**kwargs)
        out.extend(from_image(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def read_table(table: str | None = None, segments: int = 4) -> Sources:
    """Parallel Scan of the table by `segments` (one thread each); boto3 clients are thread-safe."""
    name = table or get_settings().table_name
    aws.client("dynamodb")  # build the cached client once, before the threads share it
    merged = _Collector()
    with ThreadPoolExecutor(max_workers=segments) as pool:
        for part in pool.map(lambda s: _scan_segment(name, s, segments), range(segments)):
            merged.merge(part)
    return merged.sources(f"table {name}")


# --- DynamoDB export to S3 -------------------------------------------------------------------------------


def _export_lines(data: bytes) -> Iterator[dict[str, Any]]:
    for line in gzip.decompress(data).splitlines():
        if line.strip():
            rec = json.loads(line)
            yield from_image(rec.get("Item", rec))


def export_table(bucket: str, prefix: str, table: str | None = None, timeout: float = 600.0) -> str:
    """Export the table to S3 with ExportTableToPointInTime (what the scheduled retraining does), wait for it,
    and return the export's s3:// URI for `read_export`. Unlike a Scan, it consumes no read capacity."""
    ddb = aws.client("dynamodb")
    arn = ddb.describe_table(TableName=table or get_settings().table_name)["Table"]["TableArn"]
    desc = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix=prefix)["ExportDescription"]
    deadline = time.monotonic() + timeout
    while desc["ExportStatus"] == "IN_PROGRESS":
        if time.monotonic() > deadline:
            raise SourceError(f"export {desc['ExportArn']} still running after {timeout:.0f} s")
        time.sleep(0.5)
        desc = ddb.describe_export(ExportArn=desc["ExportArn"])["ExportDescription"]
    if desc["ExportStatus"] != "COMPLETED":
        raise SourceError(f"export failed: {desc.get('FailureCode')} {desc.get('FailureMessage')}")
    return f"s3://{bucket}/{prefix}"


def read_export(uri: str | Path) -> Sources:
    """All data files of a DynamoDB export (s3://bucket/prefix or a local folder), gzipped DynamoDB JSON."""
    out = _Collector()
    text = str(uri)
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        s3 = aws.client("s3")
        keys = [
            obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if "/data/" in obj["Key"] and obj["Key"].endswith(".gz")
        ]
        if not keys:
            raise SourceError(f"no export data files (…/data/*.json.gz or *.gz) under {text}")
        with ThreadPoolExecutor(max_workers=4) as pool:
            blobs = pool.map(lambda k: s3.get_object(Bucket=bucket, Key=k)["Body"].read(), keys)
            for blob in blobs:
                out.extend(_export_lines(blob))
    else:
        files = sorted(p for p in Path(text).rglob("*.gz") if "data" in p.parts)
        if not files:
            raise SourceError(f"no export data files (…/data/*.json.gz or *.gz) under {text}")
        for f in files:
            out.extend(_export_lines(f.read_bytes()))
    return out.sources(f"export {text}")


def read_decisions(path: str | Path) -> pa.Table:
    """A decisions file (Parquet or NDJSON) to pair with a source that lacks them (e.g. a simulation's)."""
    return _read_file(Path(path))


def load(source: str) -> Sources:
    """`PATH` (files or a local export), `s3://…` (an export), or `dynamodb://TABLE` / `table:NAME`."""
    if source.startswith("s3://"):
        return read_export(source)
    for scheme in ("dynamodb://", "table:", "ddb:"):
        if source.startswith(scheme):
            return read_table(source[len(scheme) :] or None)
    path = Path(source)
    if path.is_dir() and any(p for p in path.rglob("*.gz") if "data" in p.parts):
        return read_export(path)
    if path.exists():
        return read_local(path)
    raise SourceError(f"unknown source {source!r}: a file or folder, s3://export-prefix, or dynamodb://TABLE")


# --- partitioned by customer (the Dask engine) -----------------------------------------------------------

PART = "_part"  # the hash bucket column: partition i of every frame holds the customers of bucket i


@dataclass
class PartitionedSources:
    """The source as Dask dataframes with the same `partitions` buckets of whole customers (bucket = a stable hash
    of the customer id), so partition i of touchpoints, profiles and decisions describes the same customers."""

    touchpoints: Any  # dask.dataframe.DataFrame
    profiles: Any | None
    decisions: Any | None
    partitions: int


def _bucketed(frame: Any, partitions: int) -> Any:
    """Shuffle a Dask dataframe so that partition i holds exactly the customers of hash bucket i."""
    import pandas as pd

    def bucket(ids: pd.Series) -> pd.Series:
        # pandas' own hash of the values (a fixed key, the same in every process), not Python's salted hash().
        return (pd.util.hash_pandas_object(ids.astype(str), index=False) % partitions).astype("int64")

    with_part = frame.assign(**{PART: frame["customer_id"].map_partitions(bucket, meta=("customer_id", "int64"))})
    # the task-based shuffle: the peer-to-peer one costs tens of seconds of set-up per frame on small data
    return with_part.set_index(PART, divisions=[*range(partitions), partitions - 1], shuffle_method="tasks")


def _parquet_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.parquet", folder / stem):
        if candidate.is_file() or (candidate.is_dir() and any(candidate.rglob("*.parquet"))):
            return candidate
    return None


def read_partitioned(source: str, partitions: int, decisions: str | None = None) -> PartitionedSources:
    """The source read as Dask dataframes partitioned by customer hash (`partitions` buckets).

    Parquet (a folder with touchpoints.parquet or a touchpoints/ folder of Parquet files, the same for profiles
    and decisions, locally or on s3://) is read lazily by the workers; any other source (NDJSON, a DynamoDB
    export or table) is loaded by `load` first and then handed to the cluster. `decisions`: a decisions file
    to use instead of the source's own."""
    import dask.dataframe as dd

    from_pandas: Any = dd.from_pandas
    if partitions < 1:
        raise SourceError("partitions must be at least 1")
    frames: dict[str, Any] = {}
    folder = Path(source)
    tp_path = _parquet_path(folder, "touchpoints") if folder.is_dir() else None
    if tp_path is not None:
        frames["touchpoints"] = dd.read_parquet(str(tp_path))
        for stem in ("profiles", "decisions"):
            found = _parquet_path(folder, stem)
            frames[stem] = dd.read_parquet(str(found)) if found is not None else None
    elif source.startswith("s3://") and not source.rstrip("/").endswith(("AWSDynamoDB", "data")):
        try:
            frames["touchpoints"] = dd.read_parquet(source.rstrip("/") + "/touchpoints")
        except (OSError, ValueError):
            frames = {}
        for stem in ("profiles", "decisions") if frames else ():
            try:
                frames[stem] = dd.read_parquet(source.rstrip("/") + f"/{stem}")
            except (OSError, ValueError):
                frames[stem] = None
    if not frames:
        loaded = load(source)
        npart = max(1, min(partitions, loaded.touchpoints.num_rows // 100_000 + 1))
        frames = {
            name: from_pandas(table.to_pandas(), npartitions=npart) if table is not None else None
            for name, table in (
                ("touchpoints", loaded.touchpoints),
                ("profiles", loaded.profiles),
                ("decisions", loaded.decisions),
            )
        }
    if decisions is not None:
        frames["decisions"] = from_pandas(read_decisions(decisions).to_pandas(), npartitions=1)
    return PartitionedSources(
        touchpoints=_bucketed(frames["touchpoints"], partitions),
        profiles=_bucketed(frames["profiles"], partitions) if frames.get("profiles") is not None else None,
        decisions=_bucketed(frames["decisions"], partitions) if frames.get("decisions") is not None else None,
        partitions=partitions,
    )


def partition_table(frame: Any) -> pa.Table:
    """One partition (a pandas dataframe) as the Arrow table the dataset code reads."""
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    return table.drop_columns([PART]) if PART in table.column_names else table
