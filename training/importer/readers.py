"""Bounded batches of source rows: CSV, Parquet or NDJSON, local or s3://, gzip or not.

Each file is read in batches of at most a few MB (pyarrow's streaming CSV reader, Parquet row groups, NDJSON cut
at line boundaries and parsed by polars with an explicit schema), so memory does not grow with the file. CSV
and NDJSON columns arrive as strings (no type guessed from the first block); the importer converts them by the
online schemas' rules. Rows a parser cannot read (a CSV row with the wrong number of fields, a line that is not
JSON) come back beside the batch, to be counted, never silently skipped.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from model.adapters import aws
from training.sources import SourceError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "ndjson",
}
ROLES = ("touchpoints", "profiles", "decisions")
BLOCK_BYTES = 4 << 20  # CSV block / NDJSON chunk: a batch is a few MB of text
PARQUET_ROWS = 65_536
NULLS = ["", "NULL", "null", "None"]


@dataclass(frozen=True)
class SourceFile:
    uri: str  # a local path or s3://bucket/key
    fmt: str  # csv | tsv | parquet | ndjson
    gzip: bool
    role: str  # touchpoints | profiles | decisions (by file name; everything else is touchpoints)
    size: int | None = None

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class Batch:
    frame: pl.DataFrame
    first_row: int  # 0-based index of the batch's first row in its file
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (raw text, parser's message)


def describe(name: str) -> tuple[str, bool, str] | None:
    """(format, gzip, role) from a file name, or None when it is not a data file."""
    lower = name.lower()
    gz = lower.endswith(".gz")
    base = lower[:-3] if gz else lower
    fmt = FORMATS.get(Path(base).suffix)
    if fmt is None:
        return None
    stem = Path(base).name.split(".", 1)[0]
    role = next((r for r in ROLES if stem.startswith(r)), "touchpoints")
    return fmt, gz, role


def _s3_split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def expand(uris: list[str]) -> list[SourceFile]:
    """Files to read: each SOURCE is a file, a folder (its data files, recursively) or an s3:// key or prefix."""
    out: list[SourceFile] = []
    for uri in uris:
        if uri.startswith("s3://"):
            out.extend(_expand_s3(uri))
            continue
        path = Path(uri)
        if path.is_file():
            desc = describe(path.name)
            if desc is None:
                raise SourceError(
                    f"{path}: unknown file type; use .csv, .tsv, .parquet, .ndjson or .jsonl (.gz or not)"
                )
            out.append(SourceFile(str(path), *desc, size=path.stat().st_size))
        elif path.is_dir():
            found = [
                SourceFile(str(p), *d, size=p.stat().st_size)
                for p in sorted(path.rglob("*"))
                if p.is_file() and not p.name.startswith(".") and (d := describe(p.name)) is not None
            ]
            if not found:
                raise SourceError(f"{path} holds no .csv, .tsv, .parquet, .ndjson or .jsonl file")
            out.extend(found)
        else:
            raise SourceError(f"no such file or folder: {path}")
    return out


def _expand_s3(uri: str) -> list[SourceFile]:
    bucket, key = _s3_split(uri)
    s3 = aws.client("s3")
    objects = [
        (obj["Key"], int(obj["Size"]))
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
        for obj in page.get("Contents", [])
    ]
    exact = [o for o in objects if o[0] == key]
    chosen = exact or [o for o in objects if not o[0].endswith("/")]
    out = [
        SourceFile(f"s3://{bucket}/{k}", *d, size=size)
        for k, size in sorted(chosen)
        if (d := describe(k.rsplit("/", 1)[-1])) is not None
    ]
    if not out:
        raise SourceError(f"no .csv, .tsv, .parquet, .ndjson or .jsonl object under {uri}")
    return out


def _raw(sf: SourceFile) -> IO[bytes]:
    if sf.uri.startswith("s3://"):
        bucket, key = _s3_split(sf.uri)
        try:
            body: IO[bytes] = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as err:  # botocore's errors: one line naming the object
            raise SourceError(f"cannot read {sf.uri}: {err}") from None
        return body
    return open(sf.uri, "rb")


def open_binary(sf: SourceFile) -> IO[bytes]:
    """The file's bytes as a stream, gunzipped on the fly when it is .gz."""
    raw = _raw(sf)
    return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")) if sf.gzip else raw


def columns(sf: SourceFile) -> list[str] | None:
    """The file's column names (None for NDJSON, whose lines may each have other keys)."""
    if sf.fmt in ("csv", "tsv"):
        with open_binary(sf) as stream:
            reader = pacsv.open_csv(
                pa.PythonFile(stream, mode="r"),
                read_options=pacsv.ReadOptions(block_size=1 << 16),
                parse_options=_csv_parse(sf, []),
                convert_options=pacsv.ConvertOptions(strings_can_be_null=True, null_values=NULLS),
            )
            names = list(reader.schema.names)
            reader.close()
            return names
    if sf.fmt == "parquet":
        with _Parquet(sf) as pf:
            return list(pf.schema_arrow.names)
    return None


def _csv_parse(sf: SourceFile, unreadable: list[tuple[str, str]]) -> pacsv.ParseOptions:
    def skip(row: Any) -> str:
        unreadable.append((str(row.text)[:500], f"expected {row.expected_columns} fields, found {row.actual_columns}"))
        return "skip"

    return pacsv.ParseOptions(delimiter="\t" if sf.fmt == "tsv" else ",", invalid_row_handler=skip)


class _Parquet:
    """A ParquetFile: local files directly, s3:// or gzipped ones through a temporary file on disk."""

    def __init__(self, sf: SourceFile) -> None:
        self.sf = sf
        self.tmp: Any = None

    def __enter__(self) -> pq.ParquetFile:
        if not self.sf.uri.startswith("s3://") and not self.sf.gzip:
            return pq.ParquetFile(self.sf.uri)
        self.tmp = tempfile.NamedTemporaryFile(suffix=".parquet")
        with open_binary(self.sf) as stream:
            shutil.copyfileobj(stream, self.tmp, length=1 << 20)
        self.tmp.flush()
        return pq.ParquetFile(self.tmp.name)

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.close()


def batches(sf: SourceFile, wanted: list[str]) -> Iterator[Batch]:
    """Batches holding the `wanted` columns the file has (all of them for NDJSON; absent keys are null)."""
    if sf.fmt in ("csv", "tsv"):
        yield from _csv_batches(sf, wanted)
    elif sf.fmt == "parquet":
        with _Parquet(sf) as pf:
            present = [c for c in wanted if c in pf.schema_arrow.names]
            start = 0
            for rb in pf.iter_batches(batch_size=PARQUET_ROWS, columns=present):
                frame = pl.from_arrow(rb)
                assert isinstance(frame, pl.DataFrame)
                yield Batch(frame, start)
                start += frame.height
    else:
        yield from _ndjson_batches(sf, wanted)


def _csv_batches(sf: SourceFile, wanted: list[str]) -> Iterator[Batch]:
    names = columns(sf) or []
    present = [c for c in wanted if c in names]
    unreadable: list[tuple[str, str]] = []
    with open_binary(sf) as stream:
        reader = pacsv.open_csv(
            pa.PythonFile(stream, mode="r"),
            read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=_csv_parse(sf, unreadable),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in names},
                include_columns=present,
                strings_can_be_null=True,
                null_values=NULLS,
            ),
        )
        start = 0
        for rb in reader:
            frame = pl.from_arrow(rb)
            assert isinstance(frame, pl.DataFrame)
            yield Batch(frame, start, unreadable[:])
            unreadable.clear()
            start += frame.height
        if unreadable:
            yield Batch(pl.DataFrame(schema={c: pl.String for c in present}), start, unreadable[:])


def _ndjson(chunk: bytes, schema: dict[str, Any]) -> Batch:
    try:
        return Batch(pl.read_ndjson(io.BytesIO(chunk), schema=schema), 0)
    except pl.exceptions.PolarsError:
        pass
    good: list[bytes] = []
    bad: list[tuple[str, str]] = []
    for line in chunk.splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            if not isinstance(doc, dict):
                raise ValueError("a line must be one JSON object")
            good.append(line)
        except ValueError as err:
            bad.append((line[:500].decode("utf-8", "replace"), f"not a JSON object: {err}"))
    frame = pl.read_ndjson(io.BytesIO(b"\n".join(good)), schema=schema) if good else pl.DataFrame(schema=schema)
    return Batch(frame, 0, bad)


def _ndjson_batches(sf: SourceFile, wanted: list[str]) -> Iterator[Batch]:
    # Every wanted key is read as a string whatever its JSON type (objects keep their JSON text), from every
    # line: the schema is explicit, never inferred from the first lines.
    schema = {c: pl.String for c in wanted}
    start = 0
    rest = b""
    with open_binary(sf) as stream:
        while True:
            block = stream.read(BLOCK_BYTES)
            if not block:
                break
            data = rest + block
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            rest = data[cut + 1 :]
            batch = _ndjson(data[: cut + 1], schema)
            batch.first_row = start
            start += batch.frame.height
            yield batch
        if rest.strip():
            batch = _ndjson(rest, schema)
            batch.first_row = start
            yield batch
