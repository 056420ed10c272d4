"""The stream consumer driven with events/aggregator_stream.json against moto's HTTP server.

A stream record means its touchpoint was stored: the tests store the records' images first (`seed`), as ingest
did. Exactly-once folding (D3) is checked against the invariant "stored aggregate == replay of the customer's
stored touchpoints", under redeliveries from the first failed record, duplicates, any order, old backfills,
crashes after a commit and concurrent invocations; erasure (D7) against in-flight stream records.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.aggregator import app as aggregator
from functions.aggregator.app import handler
from functions.ingest.app import handler as ingest_handler
from functions.ingest_queue.app import handler as queue_handler
from model.adapters import aws, dynamodb, states, touchpoints
from model.adapters.decision_log import log_decisions
from model.adapters.table import ERASED_SK, FOLDED, PK, SK, customer_pk
from model.domain.aggregate import (
    CLICKED,
    CONVERTED,
    DAY,
    OPENED,
    SENT,
    UNSUBSCRIBED,
    VISITED,
    Aggregate,
    fold_event,
    replay,
)
from model.domain.catalogue import catalogue
from model.domain.decide import decide
from model.domain.recommend_schemas import RecommendationRequest
from model.domain.schemas import EVENT_TYPES, Touchpoint
from model.domain.settings import get_settings
from nbc.local.aws import StreamPump
from tests.integration.lambda_env import LambdaContext, event, http_event

pytestmark = pytest.mark.usefixtures("local_endpoint")

IDX = catalogue().index
Record = dict[str, Any]


def seed(ev: dict[str, Any]) -> dict[str, Any]:
    """Store the touchpoint images of a stream event, as ingest did before the stream carried them."""
    ddb = aws.client("dynamodb")
    for rec in ev["Records"]:
        image = rec["dynamodb"].get("NewImage", {})
        if rec["eventName"] == "INSERT" and image.get(SK, {}).get("S", "").startswith("TP#"):
            ddb.put_item(TableName=get_settings().table_name, Item=image)
    return ev


def insert_record(item: dict[str, Any], seq: int) -> Record:
    """A stream INSERT record of a stored item, in the shape of events/aggregator_stream.json."""
    rec = copy.deepcopy(event("aggregator_stream.json")["Records"][0])
    rec["eventID"] = uuid.uuid4().hex
    rec["dynamodb"].update(
        Keys={PK: item[PK], SK: item[SK]},
        NewImage=item,
        SequenceNumber=f"{10**23 + seq}",
        SizeBytes=len(json.dumps(item)),
    )
    return rec


def deliver(records: Sequence[Record], invoke: Callable[[dict[str, Any]], Any] | None = None) -> int:
    """What the event source mapping does with one batch: invoke the handler; on a partial failure invoke it
    again with the batch from the first failed record on (other customers' records included); return calls."""
    batch, calls = list(records), 0
    while batch:
        calls += 1
        assert calls <= 10, "the batch never succeeded"
        out = (invoke or (lambda ev: handler(ev, LambdaContext())))({"Records": batch})
        failed = {f["itemIdentifier"] for f in out["batchItemFailures"]}
        if not failed:
            break
        batch = batch[min(i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failed) :]
    return calls


def stored_items(customer_id: str) -> list[dict[str, Any]]:
    resp = aws.client("dynamodb").query(
        TableName=get_settings().table_name,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": customer_pk(customer_id)}},
        ConsistentRead=True,
    )
    return list(resp["Items"])


def replay_of_stored(customer_id: str) -> Aggregate | None:
    """The customer's stored touchpoints replayed through the fold in time order (None if there are none)."""
    tps = touchpoints.query_touchpoints(customer_id)
    return replay(sorted((fold_event(tp) for tp in tps), key=lambda e: (e.ts, e.event_id))) if tps else None


def assert_exactly_once(customer_id: str) -> None:
    agg, _ = states.get_state(customer_id)
    assert agg == replay_of_stored(customer_id), customer_id
    unmarked = [i[SK]["S"] for i in stored_items(customer_id) if i[SK]["S"].startswith("TP#") and FOLDED not in i]
    assert unmarked == [], customer_id


def test_stream_batch_updates_each_customer_once() -> None:
    resp = handler(seed(event("aggregator_stream.json")), LambdaContext())
    assert resp == {"batchItemFailures": []}
    agg, _ = states.get_state("cust-0001")
    assert agg is not None
    email, web = IDX["email"], IDX["web"]
    assert [agg.counts[email][e] for e in (SENT, OPENED, CLICKED, CONVERTED)] == [1, 1, 1, 1]
    assert agg.counts[web][VISITED] == 1
    assert agg.value[email] == pytest.approx(89.9)
    sms_agg, _ = states.get_state("cust-0002")
    assert sms_agg is not None
    assert sms_agg.opted_out(IDX["sms"])
    assert sms_agg.counts[IDX["sms"]][UNSUBSCRIBED] == 1


def test_redelivered_batch_changes_nothing() -> None:
    ev = seed(event("aggregator_stream.json"))
    handler(ev, LambdaContext())
    first, _ = states.get_state("cust-0001")
    version = next(i for i in stored_items("cust-0001") if i[SK]["S"] == "AGG")["version"]
    handler(ev, LambdaContext())
    again, _ = states.get_state("cust-0001")
    assert again == first
    assert next(i for i in stored_items("cust-0001") if i[SK]["S"] == "AGG")["version"] == version  # not even written
    assert_exactly_once("cust-0001")


def test_matches_replay_of_the_same_events() -> None:
    ev = seed(event("aggregator_stream.json"))
    handler(ev, LambdaContext())
    found = [aggregator.fold_event_from_image(r["dynamodb"]["NewImage"]) for r in ev["Records"]]
    events = sorted((e for c, e in filter(None, found) if c == "cust-0001"), key=lambda e: e.ts)
    agg, _ = states.get_state("cust-0001")
    assert agg == replay(events)
    for customer in ("cust-0001", "cust-0002", "cust-0003"):
        assert_exactly_once(customer)


def test_other_items_and_modifies_are_ignored() -> None:
    ev = seed(event("aggregator_stream.json"))
    modify = copy.deepcopy(ev["Records"][0])
    modify["eventName"] = "MODIFY"
    remove = copy.deepcopy(ev["Records"][1])
    remove["eventName"] = "REMOVE"
    ev["Records"] = [ev["Records"][-1], modify, remove]  # AGG insert, MODIFY and REMOVE of touchpoints
    assert handler(ev, LambdaContext()) == {"batchItemFailures": []}
    assert states.get_state("cust-0001") == (None, None)


def test_failed_customer_is_reported_and_others_succeed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = states.fold_touchpoints

    def failing(customer_id: str, event_ids: Any) -> Any:
        if customer_id == "cust-0002":
            raise dynamodb.StoreUnavailableError("simulated")
        return real(customer_id, event_ids)

    monkeypatch.setattr(states, "fold_touchpoints", failing)
    ev = seed(event("aggregator_stream.json"))
    resp = handler(ev, LambdaContext())
    expected = [
        r["dynamodb"]["SequenceNumber"] for r in ev["Records"] if "cust-0002" in r["dynamodb"]["Keys"]["PK"]["S"]
    ]
    assert [f["itemIdentifier"] for f in resp["batchItemFailures"]] == expected
    assert states.get_state("cust-0001")[0] is not None
    assert states.get_state("cust-0002")[0] is None


def test_malformed_touchpoint_record_is_reported_and_a_broken_image_does_not_matter() -> None:
    ev = seed(event("aggregator_stream.json"))
    del ev["Records"][0]["dynamodb"]["NewImage"]["event_type"]  # the image is not read: the stored item is
    del ev["Records"][2]["dynamodb"]["Keys"]["PK"]  # no customer: nothing to fold, reported
    resp = handler(ev, LambdaContext())
    assert [f["itemIdentifier"] for f in resp["batchItemFailures"]] == [ev["Records"][2]["dynamodb"]["SequenceNumber"]]
    agg, _ = states.get_state("cust-0001")
    assert agg is not None
    assert agg.counts[IDX["email"]][SENT] == 1
    assert agg.counts[IDX["email"]][OPENED] == 0  # the keyless record was not folded, the others were
    assert agg.counts[IDX["email"]][CLICKED] == 1


def test_a_record_whose_touchpoint_is_no_longer_stored_is_not_folded() -> None:
    ev = event("aggregator_stream.json")  # not seeded: erased or expired since the record was written
    assert handler(ev, LambdaContext()) == {"batchItemFailures": []}
    assert states.get_state("cust-0001") == (None, None)


# --- D3: exactly once, whatever the delivery ----------------------------------------------------------------


def _store(tps: list[dict[str, Any]]) -> list[Record]:
    """Store touchpoints as ingest does; return the INSERT records of those stored, in write order."""
    statuses = touchpoints.put_touchpoints([Touchpoint.model_validate(t) for t in tps])
    items = [touchpoints.touchpoint_item(Touchpoint.model_validate(t)) for t, s in zip(tps, statuses, strict=True)]
    return [insert_record(it, n) for n, (it, s) in enumerate(zip(items, statuses, strict=True)) if s == "stored"]


def test_redelivery_from_the_first_failed_record_never_counts_backfilled_events_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 13, D3: six sends backfilled 10 days behind the customer's newest event, then a batch whose other
    customer fails: Lambda re-sends everything from the first failed record, and the sends stayed 6 (not 11)."""
    now = datetime.now(UTC).replace(microsecond=0)
    recent = {"event_id": "new-1", "customer_id": "c-a", "channel": "email", "event_type": "opened"}
    deliver(_store([{**recent, "occurred_at": now.isoformat()}]))
    old = [
        {"event_id": f"old-{i}", "customer_id": "c-a", "channel": "email", "event_type": "sent"}
        | {"occurred_at": (now - timedelta(days=10, minutes=i)).isoformat()}
        for i in range(6)
    ]
    other = {"event_id": "b-1", "customer_id": "c-b", "channel": "sms", "event_type": "sent"}
    records = _store([{**other, "occurred_at": now.isoformat()}]) + _store(old)
    real, failures = states.fold_touchpoints, ["c-b"]

    def once_failing(customer_id: str, event_ids: Any) -> Any:
        if customer_id in failures:
            failures.remove(customer_id)
            raise dynamodb.StoreUnavailableError("simulated")
        return real(customer_id, event_ids)

    monkeypatch.setattr(states, "fold_touchpoints", once_failing)
    assert deliver(records) == 2  # the retry re-sent c-a's six sends with c-b's record
    agg, _ = states.get_state("c-a")
    assert agg is not None
    assert agg.counts[IDX["email"]][SENT] == 6
    assert_exactly_once("c-a")
    assert_exactly_once("c-b")


CHANNELS = ("email", "sms", "push", "web")
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@st.composite
def touchpoint_specs(draw: st.DrawFn, customers: list[str]) -> dict[str, Any]:
    age = draw(st.one_of(st.integers(0, 3600), st.integers(0, int(300 * DAY))))  # live, or backfilled months
    etype = draw(st.sampled_from(EVENT_TYPES))
    return {
        "event_id": f"e{draw(st.integers(0, 11))}",  # few ids: repeats, and conflicting payloads for one id
        "customer_id": draw(st.sampled_from(customers)),
        "channel": draw(st.sampled_from(CHANNELS)),
        "event_type": etype,
        "occurred_at": (NOW - timedelta(seconds=age)).isoformat(),
        "value": draw(st.sampled_from([0.0, 12.5, 80.0])) if etype == "converted" else 0.0,
    }


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_stored_aggregate_equals_replay_of_stored_touchpoints_whatever_the_delivery(data: st.DataObject) -> None:
    """Property (D3): random duplicates, orders, batch cuts, old backfills, ingest in several requests with
    aggregation in between, failures before or after the commit (Lambda then re-sends from the first failed
    record); the stored aggregate always equals the replay of the stored touchpoints, each marked folded."""
    run = uuid.uuid4().hex[:8]  # fresh customers in the shared table for every example
    customers = [f"{run}-{i}" for i in range(data.draw(st.integers(1, 3), label="customers"))]
    waves = data.draw(st.lists(st.lists(touchpoint_specs(customers), min_size=1, max_size=10), min_size=1, max_size=3))
    real = states.fold_touchpoints
    for wave in waves:  # each wave is ingested, then its stream records delivered (the next wave comes later)
        records = _store(wave)
        if not records:
            continue
        order = data.draw(st.permutations(records), label="order")
        extra = data.draw(st.lists(st.sampled_from(records), max_size=len(records)), label="redelivered copies")
        deliveries = list(order)
        for rec in extra:
            deliveries.insert(data.draw(st.integers(0, len(deliveries)), label="position"), rec)
        while deliveries:
            size = data.draw(st.integers(1, len(deliveries)), label="batch size")
            batch, deliveries = deliveries[:size], deliveries[size:]
            faults = data.draw(
                st.dictionaries(st.sampled_from(customers), st.sampled_from(["before", "after"])), label="faults"
            )

            def faulty(customer_id: str, event_ids: Any, _faults: dict[str, str] = faults) -> Any:
                mode = _faults.pop(customer_id, None)
                if mode == "before":
                    raise dynamodb.StoreUnavailableError("simulated")
                outcome = real(customer_id, event_ids)
                if mode == "after":  # committed, but the invocation died before answering
                    raise TimeoutError("simulated")
                return outcome

            with mock.patch.object(states, "fold_touchpoints", faulty):
                deliver(batch)
    for customer in customers:
        assert_exactly_once(customer)


def test_concurrent_invocations_fold_each_touchpoint_once() -> None:
    """Four invocations at once (e.g. a retry overlapping a late first attempt) deliver the same records in
    different orders and batch cuts: every touchpoint is folded once (losers re-read and skip marked ones)."""
    now = NOW
    tps = [
        {
            "event_id": f"c-{i}",
            "customer_id": f"cc-{i % 3}",
            "channel": CHANNELS[i % 4],
            "event_type": EVENT_TYPES[i % len(EVENT_TYPES)],
            "occurred_at": (now - timedelta(days=i * 3)).isoformat(),
        }
        for i in range(45)
    ]
    records = _store(tps)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        mine = records[k:] + records[:k] if k % 2 else list(reversed(records))
        try:
            for start in range(0, len(mine), 7 + k):
                deliver(mine[start : start + 7 + k])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for customer in ("cc-0", "cc-1", "cc-2"):
        assert_exactly_once(customer)
        agg, _ = states.get_state(customer)
        assert agg is not None
        assert agg.n_events == 15


# --- D7: erasure is final -------------------------------------------------------------------------------------


def _ingest(body: Any) -> dict[str, Any]:
    resp = ingest_handler(http_event(json.dumps(body)), LambdaContext())
    assert resp["statusCode"] == 200, resp["body"]
    return dict(json.loads(resp["body"]))


def _decision(customer_id: str) -> Any:
    return decide(RecommendationRequest(customer_id=customer_id, now=NOW), None, None, None)


@pytest.mark.parametrize("aggregated_before", [False, True])
def test_erasure_during_in_flight_stream_batches_leaves_nothing(aggregated_before: bool) -> None:
    """Ingest, (maybe aggregate), DELETE, then the stream delivers every record (again): nothing of the customer
    comes back, nor from an SQS redelivery or a decision logged after the erasure; others are untouched."""
    body = json.loads(event("ingest_touchpoints.json")["body"])
    body["touchpoints"] = [t for t in body["touchpoints"] if t["channel"] != "carrier_pigeon"]
    _ingest(body)
    log_decisions([_decision("cust-0001")])
    pump = StreamPump(lambda ev, ctx: handler(ev, LambdaContext()))
    if aggregated_before:
        pump.drain()
        assert states.get_state("cust-0001")[0] is not None

    erased = ingest_handler(http_event(None, method="DELETE", path="/v1/customers/cust-0001"), LambdaContext())
    assert erased["statusCode"] == 200

    # what was in flight arrives now: the stream (from its start, as a retry would), an SQS redelivery, a decision
    assert StreamPump(lambda ev, ctx: handler(ev, LambdaContext())).drain() > 0
    sqs = event("ingest_queue_sqs.json")
    sqs["Records"] = sqs["Records"][:1]
    sqs["Records"][0]["body"] = json.dumps([t for t in body["touchpoints"] if t["customer_id"] == "cust-0001"])
    assert queue_handler(sqs, LambdaContext()) == {"batchItemFailures": []}  # dropped, not poison
    assert log_decisions([_decision("cust-0001"), _decision("cust-0002")]) == 1
    again = _ingest(body)
    assert again["erased"] == 6
    assert {r["status"] for r in again["results"] if r["event_id"].startswith(("esp", "web", "shop"))} == {"erased"}
    put = ingest_handler(
        http_event(json.dumps({"timezone": "UTC"}), method="PUT", path="/v1/customers/cust-0001/profile"),
        LambdaContext(),
    )
    assert put["statusCode"] == 409
    pump.drain()

    assert [i[SK]["S"] for i in stored_items("cust-0001")] == [ERASED_SK]  # the tombstone, and nothing else
    assert states.get_state("cust-0001") == (None, None)
    assert_exactly_once("cust-0002")
    assert any(i[SK]["S"].startswith("DEC#") for i in stored_items("cust-0002"))
    agg, profile = states.get_state("cust-0002")
    assert agg is not None
    assert agg.counts[IDX["sms"]][UNSUBSCRIBED] == 1
    assert profile is not None
    assert profile.consent == {"sms": False}
