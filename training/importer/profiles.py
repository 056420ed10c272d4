"""The customers' profiles of an import: gathered from the touchpoint rows (mapped attributes, time zone) and
from profiles files, then validated by the online `Profile` model. An attribute (or field) it refuses is
removed and counted, the rest of the profile is kept.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import polars as pl
import pyarrow as pa
from pydantic import TypeAdapter, ValidationError

from model.domain.schemas import Id, Profile
from training.importer import readers
from training.importer.mapping import Mapping
from training.importer.quality import Quality, plain, shown
from training.sources import PROFILE_FIELDS

PROFILE_SCHEMA = pa.schema([(f, pa.string()) for f in PROFILE_FIELDS])
MAX_LEVELS = 64  # levels kept per categorical attribute (the most frequent; others encode as unknown)
_CUSTOMER_ID: TypeAdapter[str] = TypeAdapter(Id)


class Profiles:
    """The profiles an import gathers, by customer, until `finish` validates them."""

    def __init__(self, mapping: Mapping, quality: Quality) -> None:
        self.m = mapping
        self.q = quality
        self.by_customer: dict[str, dict[str, Any]] = {}  # customer -> Profile fields (attributes: raw values)

    def collect(self, df: pl.DataFrame) -> None:
        """The latest non-empty value of each mapped attribute (and time zone) per customer."""
        cid = self.m.columns.get("customer_id")
        if cid is None or cid not in df.columns:
            return
        cols = {a.name: a.column for a in self.m.attributes if a.column in df.columns}
        tz_col = self.m.columns.get("timezone")
        exprs = [pl.col(c).drop_nulls().last().alias(f"a:{n}") for n, c in cols.items()]
        if tz_col is not None and tz_col in df.columns:
            exprs.append(pl.col(tz_col).drop_nulls().last().alias("timezone"))
        if not exprs:
            return
        grouped = df.filter(pl.col(cid).is_not_null()).group_by(cid, maintain_order=True).agg(exprs)
        for rec in grouped.iter_rows(named=True):
            prof = self.by_customer.setdefault(str(rec[cid]), {})
            attrs = prof.setdefault("attributes", {})
            for key, val in rec.items():
                if val is None or key == cid:
                    continue
                if key == "timezone":
                    prof["timezone"] = str(val)
                else:
                    attrs[key[2:]] = val

    def add_rows(self, batch: readers.Batch, source: str) -> None:
        """A profiles file in the project's shape: customer_id + Profile fields (JSON text or values)."""
        for rec in batch.frame.iter_rows(named=True):
            cid = rec.get("customer_id")
            if cid is None:
                self.q.drop("missing_customer", {"source": source, "values": shown(rec), "error": "no customer_id"})
                continue
            prof = self.by_customer.setdefault(str(cid), {})
            for fld in ("timezone", "consent", "quiet_hours", "attributes"):
                val = rec.get(fld)
                if val is None:
                    continue
                if fld != "timezone" and isinstance(val, str):
                    try:
                        val = json.loads(val)
                    except ValueError:
                        self.q.drop(f"bad_{fld}", {"source": source, "values": shown(rec), "error": "not JSON"})
                        continue
                if fld == "attributes" and isinstance(val, dict):
                    prof.setdefault("attributes", {}).update(val)
                else:
                    prof[fld] = val

    def finish(self) -> tuple[pa.Table | None, dict[str, list[str]]]:
        """Validate every profile with the online model; drop (and count) only what it refuses."""
        kinds = {a.name: a.kind for a in self.m.attributes}
        levels: dict[str, Counter[str]] = {n: Counter() for n, k in kinds.items() if k == "categorical"}
        rows: dict[str, list[Any]] = {f: [] for f in PROFILE_SCHEMA.names}
        for cid, doc in self.by_customer.items():
            try:
                _CUSTOMER_ID.validate_python(cid)
            except ValidationError as err:
                self.q.drop("bad_customer_id", {"customer_id": cid, "error": err.errors()[0]["msg"]}, 1)
                continue
            attrs = {}
            for name, val in (doc.get("attributes") or {}).items():
                if kinds.get(name) == "numeric" and isinstance(val, str):
                    try:
                        val = float(val)
                    except ValueError:
                        self._attr_drop("bad_attribute", cid, name, val, "not a number")
                        continue
                elif kinds.get(name) == "categorical" and not isinstance(val, str):
                    val = str(val)
                attrs[name] = val
            profile = self._profile(cid, {**doc, "attributes": attrs})
            if profile is None:
                continue
            for name, val in profile.attributes.items():
                if name in levels:
                    levels[name][str(val)] += 1
            self.q.profile_attributes += len(profile.attributes)
            dumped = profile.model_dump(mode="json", exclude_none=True)
            rows["customer_id"].append(cid)
            rows["timezone"].append(profile.timezone)
            rows["consent"].append(json.dumps(dumped["consent"]) if profile.consent else None)
            rows["quiet_hours"].append(json.dumps(dumped["quiet_hours"]) if profile.quiet_hours else None)
            rows["attributes"].append(json.dumps(dumped["attributes"]) if profile.attributes else None)
        self.q.profiles = len(rows["customer_id"])
        found = {
            n: [v for v, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_LEVELS]] for n, c in levels.items()
        }
        frame = pl.DataFrame(rows, schema=dict.fromkeys(PROFILE_SCHEMA.names, pl.String))
        table = frame.to_arrow().cast(PROFILE_SCHEMA) if frame.height else None
        return table, found

    def _attr_drop(self, reason: str, cid: str, name: str, val: Any, msg: str) -> None:
        example = {"customer_id": cid, "attribute": name, "value": plain(val), "error": msg}
        self.q.drop(reason, example)

    def _profile(self, cid: str, doc: dict[str, Any]) -> Profile | None:
        doc = {k: v for k, v in doc.items() if v is not None and (k != "attributes" or v)}
        try:
            return Profile.model_validate(doc)
        except ValidationError:
            pass
        # Find what the model refuses, one field (and one attribute) at a time, and keep the rest.
        for fld in ("timezone", "consent", "quiet_hours"):
            if fld in doc:
                try:
                    Profile.model_validate({fld: doc[fld]})
                except ValidationError as err:
                    self.q.drop(f"bad_{fld}", {"customer_id": cid, "value": plain(doc[fld]), "error": _first(err)})
                    del doc[fld]
        attrs = dict(doc.get("attributes") or {})
        for name, val in list(attrs.items()):
            try:
                Profile.model_validate({"attributes": {name: val}})
            except ValidationError as err:
                msg = _first(err)
                self._attr_drop(
                    "undeclared_attribute" if "not declared" in msg else "bad_attribute", cid, name, val, msg
                )
                del attrs[name]
        doc["attributes"] = attrs
        try:
            return Profile.model_validate(doc)
        except ValidationError as err:
            self.q.drop("bad_profile", {"customer_id": cid, "error": _first(err)})
            return None


def _first(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e.get("loc", ()))
    return f"{loc}: {e['msg']}" if loc else str(e["msg"])
