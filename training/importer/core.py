"""`nbc import`: sources -> DIR/{touchpoints,profiles,decisions}.parquet + DIR/quality.json + DIR/nbc.toml.

Per batch (bounded, see readers.py): the mapping is applied column-wise in polars (rename, [values.*],
[constants], [[derive]] rules); then every touchpoint is validated by the online `Touchpoint` model itself (the
one definition of a valid touchpoint, shared with the HTTP API) and written at once with a Parquet writer;
decisions are written as they are read. Profiles are gathered and validated by profiles.py, timestamps parsed
by times.py, DIR/nbc.toml written by declarations.py. What is left in memory across batches grows with distinct
event ids (duplicates), customers and profile attributes, never with the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from model.domain.schemas import Touchpoint
from model.domain.settings import reload_settings, use_config
from training.importer import mapping as mapping_mod
from training.importer import quality as quality_mod
from training.importer import readers
from training.importer.declarations import declarations_toml
from training.importer.mapping import TOUCHPOINT_COLUMNS, Derive, Mapping
from training.importer.profiles import Profiles
from training.importer.quality import Quality, shown
from training.importer.times import BadTimeError, parse_time
from training.sources import DECISION_FIELDS, PROFILE_FIELDS, SourceError

TOUCHPOINT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("customer_id", pa.string()),
        ("channel", pa.string()),
        ("event_type", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("campaign_id", pa.string()),
        ("message_id", pa.string()),
        ("decision_id", pa.string()),
        ("value", pa.float64()),
        ("attributes", pa.string()),
    ]
)
TOUCHPOINT_FRAME = {
    f.name: pl.Int64 if f.name == "occurred_at" else pl.Float64 if f.name == "value" else pl.String
    for f in TOUCHPOINT_SCHEMA
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
# A touchpoint the schema refuses is counted once, under its first failing field in this order.
PRIORITY = (
    "customer_id",
    "occurred_at",
    "channel",
    "event_type",
    "event_id",
    "value",
    "campaign_id",
    "message_id",
    "decision_id",
    "attributes",
)
Progress = Callable[[int, int], None]  # (rows read, rows kept)


@dataclass
class Options:
    out: Path
    mapping: Mapping | None = None
    as_of: datetime | None = None
    strict: bool = False
    progress: Progress | None = None


@dataclass
class ImportResult:
    out: Path
    quality: dict[str, Any]
    ok: bool  # False: --strict and something was dropped (only quality.json was written)
    seconds: float = 0.0
    files: dict[str, int] = field(default_factory=dict)  # file -> rows written


def event_id(parts: tuple[Any, ...]) -> str:
    """A deterministic id from a touchpoint's identifying fields: the same row imported twice is one event."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return "h" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _reason(err: ValidationError) -> tuple[str, str, str]:
    """(reason, field, message) of the first failing field in PRIORITY order."""
    by_field = {str(e["loc"][0]): e for e in err.errors() if e.get("loc")}
    for fld in (*PRIORITY, *by_field):
        e = by_field.get(fld)
        if e is None:
            continue
        msg = str(e.get("msg", "invalid"))
        missing = e.get("type") == "missing"
        if fld == "customer_id":
            reason = "missing_customer" if missing else "bad_customer_id"
        elif fld == "occurred_at":
            reason = "missing_timestamp" if missing else "naive_timestamp" if "offset" in msg else "bad_timestamp"
        elif fld == "channel":
            reason = "missing_channel" if missing else "unknown_channel"
        elif fld == "event_type":
            reason = "missing_event_type" if missing else "unknown_event_type"
        else:
            reason = f"bad_{fld}"
        return reason, fld, f"{fld}: {msg}"
    return "invalid", "", str(err).splitlines()[0]


class Importer:
    def __init__(self, mapping: Mapping, quality: Quality, out: Path, as_of: float | None) -> None:
        self.m = mapping
        self.q = quality
        self.as_of = as_of
        self.zone = ZoneInfo(mapping.timezone) if mapping.timezone else None
        self.seen: set[str] = set()
        self.tp_path = out / ".touchpoints.parquet.part"
        self.tp_writer: pq.ParquetWriter | None = None
        self.dec_path = out / ".decisions.parquet.part"
        self.dec_writer: pq.ParquetWriter | None = None
        self.profiles = Profiles(mapping, quality)
        self.columns_seen: dict[str, bool] = {}
        self.first_row = 0  # of the batch being read
        self.progress: Progress | None = None

    # --- touchpoints ---------------------------------------------------------------------------------------

    def _value_expr(self, rule: Derive | None, df: pl.DataFrame) -> pl.Expr:
        if rule is not None and isinstance(rule.value, float):
            return pl.lit(rule.value)
        if rule is not None and isinstance(rule.value, str):
            return pl.col(rule.value) if rule.value in df.columns else pl.lit(None)
        if rule is not None and rule.event_type != "converted":
            return pl.lit(None)
        return self._field("value", df)

    def _field(self, fld: str, df: pl.DataFrame) -> pl.Expr:
        src = self.m.columns.get(fld)
        if src is not None and src in df.columns:
            expr = pl.col(src)
        elif fld in self.m.constants:
            expr = pl.lit(self.m.constants[fld])
        else:
            expr = pl.lit(None, dtype=pl.String)
        if fld in self.m.values:
            expr = expr.cast(pl.String).replace(self.m.values[fld])
        return expr

    def _project(self, df: pl.DataFrame, first_row: int, rule: Derive | None) -> pl.DataFrame:
        rows = pl.int_range(first_row, first_row + df.height, dtype=pl.Int64, eager=True).alias("_row")
        df = df.with_columns(rows)
        if rule is not None and rule.when_column is not None:
            col = pl.col(rule.when_column).cast(pl.String) if rule.when_column in df.columns else pl.lit(None)
            cond = pl.lit(True)
            if rule.when_in:
                cond = cond & col.is_in(list(rule.when_in))
            if rule.when_not_in:
                cond = cond & ~col.is_in(list(rule.when_not_in)).fill_null(False)
            df = df.filter(cond.fill_null(False))
        exprs = []
        for fld in TOUCHPOINT_COLUMNS:
            if fld == "value":
                expr = self._value_expr(rule, df)
            elif rule is not None and fld == "event_type":
                expr = pl.lit(rule.event_type)
            elif rule is not None and fld == "channel" and rule.channel:
                expr = pl.lit(rule.channel)
            else:
                expr = self._field(fld, df)
            exprs.append(expr.alias(fld))
        out = df.select(*exprs, "_row")
        # An empty string is a missing value, whatever the format (the CSV reader already reads it so).
        text = [c for c, t in out.schema.items() if t == pl.String]
        return out.with_columns(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in text)

    def touchpoints(self, batch: readers.Batch, source: str) -> None:
        df = batch.frame
        self.first_row = batch.first_row
        self.q.rows_read += df.height + len(batch.unreadable)
        for text, msg in batch.unreadable:
            self.q.touchpoints += 1
            self.q.drop("unreadable_row", {"source": source, "raw": text, "error": msg})
        for src in self.m.uses():
            if src in df.columns and not self.columns_seen.get(src):
                self.columns_seen[src] = bool(df[src].is_not_null().any())
        rules: list[Derive | None] = list(self.m.derive) or [None]
        for k, rule in enumerate(rules):
            projected = self._project(df, batch.first_row, rule)
            suffix = None
            if rule is not None:
                same = sum(r is not None and r.event_type == rule.event_type for r in rules) > 1
                suffix = f"{rule.event_type}.{k}" if same else rule.event_type
            self._validate(projected, df, source, rule, suffix)
        if self.m.attributes or "timezone" in self.m.columns:
            self.profiles.collect(df)

    def _validate(
        self, frame: pl.DataFrame, raw: pl.DataFrame, source: str, rule: Derive | None, suffix: str | None
    ) -> None:
        out: dict[str, list[Any]] = {f: [] for f in TOUCHPOINT_SCHEMA.names}
        zone, fmt = self.zone, self.m.timestamp_format
        offset = timedelta(seconds=rule.offset_seconds) if rule is not None and rule.offset_seconds else None
        as_of, seen, q = self.as_of, self.seen, self.q
        q.touchpoints += frame.height
        drop = self._drop
        validate = Touchpoint.model_validate
        for eid, cid, ch, et, ts, camp, msg, dec, val, attrs, row in frame.iter_rows():
            doc: dict[str, Any] = {}
            if cid is not None:
                doc["customer_id"] = cid
            if ch is not None:
                doc["channel"] = ch
            if et is not None:
                doc["event_type"] = et
            when = None
            if ts is not None:
                try:
                    when = parse_time(ts, zone, fmt)
                except BadTimeError as err:
                    drop("bad_timestamp", raw, row, source, f"occurred_at: {err}")
                    continue
                if offset is not None:
                    when = (when.astimezone(UTC) if when.tzinfo else when) + offset
                doc["occurred_at"] = when
            if val is not None:
                if isinstance(val, str):  # a number written as text (CSV): the schema then checks the number
                    with contextlib.suppress(ValueError):
                        val = float(val)
                doc["value"] = val
            if camp is not None:
                doc["campaign_id"] = camp
            if msg is not None:
                doc["message_id"] = msg
            if dec is not None:
                doc["decision_id"] = dec
            if attrs is not None:
                try:
                    doc["attributes"] = json.loads(attrs) if isinstance(attrs, str) else attrs
                except ValueError:
                    drop("bad_attributes", raw, row, source, "attributes: not a JSON object")
                    continue
            if eid is None:
                stamp = when.astimezone(UTC).isoformat() if when is not None and when.tzinfo else when
                eid = event_id((cid, ch, et, stamp, camp, msg, dec, val))
            elif suffix is not None:
                eid = f"{eid}.{suffix}"
            doc["event_id"] = eid
            try:
                tp = validate(doc)
            except ValidationError as err:
                reason, fld, message = _reason(err)
                drop(reason, raw, row, source, message)
                if reason in ("unknown_channel", "unknown_event_type"):
                    q.unknown(fld, doc.get(fld))
                continue
            ts_utc = tp.occurred_at
            if as_of is not None and ts_utc.timestamp() > as_of:
                drop("after_as_of", raw, row, source, f"occurred_at {ts_utc.isoformat()} > as-of")
                continue
            if tp.event_id in seen:
                drop("duplicate_event_id", raw, row, source, f"event_id {tp.event_id} seen before")
                continue
            seen.add(tp.event_id)
            out["event_id"].append(tp.event_id)
            out["customer_id"].append(tp.customer_id)
            out["channel"].append(tp.channel)
            out["event_type"].append(tp.event_type.value)
            out["occurred_at"].append((ts_utc - EPOCH) // MICROSECOND)  # ints: no tz-aware objects to convert
            out["campaign_id"].append(tp.campaign_id)
            out["message_id"].append(tp.message_id)
            out["decision_id"].append(tp.decision_id)
            out["value"].append(tp.value)
            out["attributes"].append(json.dumps(tp.attributes) if tp.attributes else None)
        if out["event_id"]:
            self._write_touchpoints(pl.DataFrame(out, schema=TOUCHPOINT_FRAME))

    def _drop(self, reason: str, raw: pl.DataFrame, row: int, source: str, error: str) -> None:
        """Count a dropped touchpoint; the first few of each reason keep the source row as read (row: 1-based
        among the file's data rows) and what was wrong."""
        if len(self.q.examples.get(reason, ())) >= quality_mod.EXAMPLES:
            self.q.drop(reason)
            return
        at = row - self.first_row
        values = raw.row(at, named=True) if 0 <= at < raw.height else {}
        self.q.drop(reason, {"source": source, "row": row + 1, "values": shown(values), "error": error})

    def _write_touchpoints(self, frame: pl.DataFrame) -> None:
        # Built by polars from the columns (pyarrow's conversion of Python objects would import pandas).
        if self.tp_writer is None:
            self.tp_writer = pq.ParquetWriter(self.tp_path, TOUCHPOINT_SCHEMA, compression="zstd")
        frame = frame.with_columns(pl.col("occurred_at").cast(pl.Datetime("us", "UTC")))
        self.tp_writer.write_table(frame.to_arrow().cast(TOUCHPOINT_SCHEMA))
        stamps = frame["occurred_at"].dt.epoch("us")
        self.q.rows_kept += frame.height
        self.q.kept(
            float(stamps.min()) / 1e6,  # type: ignore[arg-type]
            float(stamps.max()) / 1e6,  # type: ignore[arg-type]
            frame["customer_id"].unique().to_list(),
            Counter(dict(frame["event_type"].value_counts().iter_rows())),
            Counter(dict(frame["channel"].value_counts().iter_rows())),
        )
        if self.progress is not None:
            self.progress(self.q.rows_read, self.q.rows_kept)

    # --- decisions -----------------------------------------------------------------------------------------

    def decision_rows(self, batch: readers.Batch, source: str) -> None:
        df = batch.frame
        self.q.rows_read += df.height
        for text, msg in batch.unreadable:
            self.q.drop("unreadable_decision", {"source": source, "raw": text, "error": msg})
        if "decision_id" not in df.columns:
            raise SourceError(f"{source}: a decisions file needs a decision_id column")
        missing = df.filter(pl.col("decision_id").is_null())
        if missing.height:
            self.q.drop(
                "missing_decision_id", {"source": source, "values": shown(missing.row(0, named=True))}, missing.height
            )
        df = df.filter(pl.col("decision_id").is_not_null())
        cols = [
            (pl.col(f) if f in df.columns else pl.lit(None)).cast(pl.Float64 if f == "propensity" else pl.String)
            for f in DECISION_FIELDS
        ]
        schema = pa.schema([(f, pa.float64() if f == "propensity" else pa.string()) for f in DECISION_FIELDS])
        full = df.select(cols).to_arrow().cast(schema)
        if self.dec_writer is None:
            self.dec_writer = pq.ParquetWriter(self.dec_path, schema, compression="zstd")
        self.dec_writer.write_table(full)
        self.q.decisions += full.num_rows

    def close(self) -> None:
        for w in (self.tp_writer, self.dec_writer):
            if w is not None:
                w.close()


# --- the command -----------------------------------------------------------------------------------------


def _wanted(role: str, m: Mapping, explicit: bool) -> list[str]:
    if role == "profiles":
        return list(PROFILE_FIELDS)
    if role == "decisions":
        return list(DECISION_FIELDS)
    return m.source_columns() if explicit else list(TOUCHPOINT_COLUMNS)


def _check_columns(sf: readers.SourceFile, m: Mapping, names: list[str] | None, explicit: bool) -> None:
    """Every column a mapping names must be in the file (a typo would silently empty a field); without a
    mapping, the fields a touchpoint cannot do without."""
    if names is None:
        return
    wanted = m.uses() if explicit else m.required_columns()
    missing = {src: use for src, use in wanted.items() if src not in names}
    if missing:
        listed = ", ".join(f"{src} ({fld})" for src, fld in missing.items())
        raise SourceError(
            f"{sf.uri} lacks column(s) {listed}; it has: {', '.join(names[:30])}. "
            'Map your columns with --mapping FILE ([columns] field = "column")'
        )


def run(sources: list[str], opts: Options) -> ImportResult:
    started = time.perf_counter()
    explicit = opts.mapping is not None
    m = opts.mapping or mapping_mod.default_mapping()
    files = readers.expand(sources)
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    q = Quality(mapping=m.path, as_of=opts.as_of.timestamp() if opts.as_of else None)
    # The mapping's channels and attributes are in force while validating (levels come from the data).
    config = out / "nbc.toml"
    decl = m.declarations()
    config.write_text(declarations_toml(decl["channels"], decl["attributes"]))
    use_config(config)
    imp = Importer(m, q, out, q.as_of)
    imp.progress = opts.progress
    try:
        for sf in files:
            before = q.rows_read
            wanted = _wanted(sf.role, m, explicit)
            if sf.role == "touchpoints":
                _check_columns(sf, m, readers.columns(sf), explicit)
            for batch in readers.batches(sf, wanted):
                if sf.role == "touchpoints":
                    imp.touchpoints(batch, sf.name)
                elif sf.role == "profiles":
                    q.rows_read += batch.frame.height
                    imp.profiles.add_rows(batch, sf.name)
                else:
                    imp.decision_rows(batch, sf.name)
            q.sources.append({"uri": sf.uri, "role": sf.role, "format": sf.fmt, "rows": q.rows_read - before})
        never = [f"{src} ({fld})" for src, fld in m.required_columns().items() if not imp.columns_seen.get(src)]
        if q.touchpoints and never and q.rows_kept == 0:
            raise SourceError(
                f"column(s) {', '.join(never)} never hold a value in the touchpoint rows: "
                "map the right columns with --mapping FILE"
            )
        profiles, levels = imp.profiles.finish()
        if q.touchpoints and explicit:
            q.empty_columns = [f"{src} ({use})" for src, use in m.uses().items() if not imp.columns_seen.get(src)]
    finally:
        imp.close()
    attrs = {a.name: {"kind": a.kind, "levels": list(a.levels) or levels.get(a.name, [])} for a in m.attributes}
    q.declared = {"channels": dict(m.channels), "attributes": attrs}
    config.write_text(declarations_toml(m.channels, attrs))
    reload_settings()
    doc = q.to_json()
    (out / "quality.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    part_files = [imp.tp_path, imp.dec_path]
    if (opts.strict and q.dropped) or q.rows_kept == 0:
        for p in part_files:
            p.unlink(missing_ok=True)
        for name in ("touchpoints", "profiles", "decisions"):
            for old in out.glob(f"{name}.*"):
                old.unlink()
        if q.rows_kept == 0 and not (opts.strict and q.dropped):
            raise SourceError(_nothing_kept(q))
        return ImportResult(out, doc, ok=False, seconds=time.perf_counter() - started)
    written: dict[str, int] = {}
    for name in ("touchpoints", "profiles", "decisions"):
        for old in out.glob(f"{name}.*"):
            old.unlink()
    os.replace(imp.tp_path, out / "touchpoints.parquet")
    written["touchpoints.parquet"] = q.rows_kept
    if profiles is not None:
        pq.write_table(profiles, out / "profiles.parquet", compression="zstd")
        written["profiles.parquet"] = profiles.num_rows
    if imp.dec_path.exists():
        os.replace(imp.dec_path, out / "decisions.parquet")
        written["decisions.parquet"] = q.decisions
    return ImportResult(out, doc, ok=True, seconds=time.perf_counter() - started, files=written)


def _nothing_kept(q: Quality) -> str:
    if q.rows_read == 0:
        return "the source holds no rows: check the path (and that the files are not empty)"
    top = ", ".join(f"{r} {n:,}" for r, n in q.dropped.most_common(3))
    reason = q.dropped.most_common(1)[0][0] if q.dropped else ""
    fix = quality_mod.FIX.get(reason, "see quality.json for examples")
    return f"no touchpoint kept of {q.touchpoints:,} ({top}): {fix}"
