"""Audience scoring: a decision for every customer of a campaign audience, chunk by chunk, with the same state
reads (states.get_states), rules and decision (decide) and decision log (log_decisions) as the API.

A run writes one part per chunk of the audience (in file order) and a summary last:

    <out>/part-00000.ndjson ...   one line per recommendation (rank 1..k), flat columns
    <out>/rejected.ndjson         audience rows that are not valid customer ids, with the reason
    <out>/_SUMMARY.json           counts (decisions, policies, channels, duplicates, rejected), written last

    <out>/_RUN.json               the run's id, written first

A part that exists is never redone: an interrupted run resumes where it stopped with the same command. Decision
ids are derived from the run's id and the customer (uuid5), so a chunk interrupted after its decisions were
logged but before its part was written logs the same decision ids again (an overwrite): one decision per customer
and run in the log, never two. Import-light (no pyarrow).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.adapters import states
from model.adapters.decision_log import log_decisions
from model.adapters.registry import blobs
from model.domain.decide import decide
from model.domain.model_protocol import Model
from model.domain.recommend_schemas import RecommendationRequest, RecommendationResponse

SUMMARY = "_SUMMARY.json"
RUN = "_RUN.json"
REJECTED = "rejected.ndjson"
DEFAULT_CHUNK = 1000


class AudienceOptions(BaseModel):
    """What every customer of the audience is asked (a recommendation request without the customer)."""

    model_config = ConfigDict(extra="forbid")

    channels: list[str] | None = None
    messages: dict[str, list[str]] | None = None
    horizon_hours: int | None = None
    k: int = Field(default=1, ge=1, le=20)
    now: datetime | None = None

    def request(self, customer_id: str) -> RecommendationRequest:
        """The customer's request, validated exactly as the API validates it (ValidationError if not)."""
        body = self.model_dump(exclude_none=True)
        return RecommendationRequest.model_validate({"customer_id": customer_id, **body})


def decide_requests(
    requests: Sequence[RecommendationRequest],
    model: Model | None,
    *,
    log: bool = True,
    decision_ids: Sequence[str] | None = None,
) -> list[RecommendationResponse]:
    """Decisions for requests of (possibly repeated) customers: one batched state read, one decision each, the
    decisions logged (PK C#customer, SK DEC#decision_id) as the single-customer endpoint logs them."""
    by_customer = states.get_states([r.customer_id for r in requests])
    ids: Sequence[str | None] = decision_ids or [None] * len(requests)
    results = [decide(r, *by_customer[r.customer_id], model, decision_id=d) for r, d in zip(requests, ids, strict=True)]
    if log:
        log_decisions(results)
    return results


def decide_customers(
    customer_ids: Sequence[str], options: AudienceOptions, run_id: uuid.UUID, model: Model | None
) -> list[RecommendationResponse]:
    """One audience chunk: valid customer ids (see `plan`), decided and logged with decision ids derived from the
    run (uuid5), so a retried chunk overwrites its own decisions instead of adding new ones."""
    requests = [options.request(cid) for cid in customer_ids]
    return decide_requests(requests, model, decision_ids=[str(uuid.uuid5(run_id, cid)) for cid in customer_ids])


def run_uuid(name: str) -> uuid.UUID:
    """A run's id from its name (e.g. a Step Functions execution name): the same name, the same decision ids."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"nbc-audience:{name}")


def decision_rows(resp: RecommendationResponse) -> list[dict[str, Any]]:
    """Flat rows of one decision: its scalar fields repeated on each recommendation, with its rank."""
    doc = resp.model_dump(mode="json", exclude={"rule_trace"})
    recs = doc.pop("recommendations")
    head = {k: v for k, v in doc.items() if not isinstance(v, dict | list)}
    rows = []
    for rank, rec in enumerate(recs, start=1):
        flat = {k: v for k, v in rec.items() if not isinstance(v, dict | list)}
        rows.append({**head, "rank": rank, **flat})
    return rows


def ndjson(rows: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in rows).encode()


class Plan(BaseModel):
    """The audience after validation: unique valid customer ids in file order, and what was set aside."""

    customers: list[str]
    duplicates: int = 0
    rejected: list[dict[str, Any]] = Field(default_factory=list)  # {"row", "customer_id", "reason"}

    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.customers).encode()).hexdigest()

    def chunks(self, size: int) -> list[list[str]]:
        return [self.customers[i : i + size] for i in range(0, len(self.customers), size)]


def plan(customer_ids: Sequence[Any], options: AudienceOptions) -> Plan:
    """Unique valid ids (first occurrence kept, duplicates counted), invalid rows kept with the API's reason."""
    seen: set[str] = set()
    out = Plan(customers=[])
    for row, cid in enumerate(customer_ids, start=1):
        text = cid if isinstance(cid, str) else "" if cid is None else str(cid)
        if text in seen:
            out.duplicates += 1
            continue
        try:
            options.request(text)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            out.rejected.append({"row": row, "customer_id": text, "reason": f"{where}: {first['msg']}"})
            continue
        seen.add(text)
        out.customers.append(text)
    return out


def part_name(index: int) -> str:
    return f"part-{index:05d}.ndjson"


class Progress:
    """Callbacks of a run (the CLI shows a bar; the Lambda logs nothing per chunk)."""

    def start(self, chunks: int, done: int) -> None: ...

    def advance(self, customers: int) -> None: ...


def run(
    audience: Plan,
    out: str,
    options: AudienceOptions,
    model: Model | None,
    *,
    chunk: int = DEFAULT_CHUNK,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Decide for every customer of `audience` into `out` (folder or s3://bucket/prefix), resuming a previous run;
    return the summary (also written to `<out>/_SUMMARY.json`, last)."""
    sink = blobs(out, "output")
    progress = progress or Progress()
    fingerprint = {"audience": audience.digest(), "chunk": chunk, "options": options.model_dump(mode="json")}
    if sink.exists(RUN):
        previous = json.loads(sink.get(RUN))
        if {k: previous.get(k) for k in fingerprint} != fingerprint:
            raise ValueError(f"{out} holds a run of another audience, chunk size or options: choose another --out")
        run_id = uuid.UUID(previous["run_id"])
    else:
        run_id = uuid.uuid4()
        sink.put(RUN, json.dumps({"run_id": str(run_id), **fingerprint}).encode())
    parts = audience.chunks(chunk)
    todo = [i for i in range(len(parts)) if not sink.exists(part_name(i))]
    progress.start(len(parts), len(parts) - len(todo))
    policies: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    for i in todo:
        results = decide_customers(parts[i], options, run_id, model)
        for resp in results:
            policies[resp.policy.value] += 1
            channels[resp.recommendations[0].channel] += 1
        sink.put(part_name(i), ndjson(row for resp in results for row in decision_rows(resp)))
        progress.advance(len(parts[i]))
    if audience.rejected:
        sink.put(REJECTED, ndjson(audience.rejected))
    summary = {
        "out": out,
        "run_id": str(run_id),
        "customers": len(audience.customers),
        "chunks": len(parts),
        "chunks_resumed": len(parts) - len(todo),
        "decided_now": sum(len(parts[i]) for i in todo),
        "duplicates": audience.duplicates,
        "rejected": len(audience.rejected),
        "model_version": model.version if model else None,
        "policies_now": dict(policies),
        "first_channel_now": dict(channels),
    }
    sink.put(SUMMARY, json.dumps(summary, indent=2).encode())
    return summary
