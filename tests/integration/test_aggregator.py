"""The stream consumer driven with events/aggregator_stream.json against moto's HTTP server."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from functions.aggregator import app as aggregator
from functions.aggregator.app import handler
from model.adapters import store
from model.domain.aggregate import CLICKED, CONVERTED, OPENED, SENT, UNSUBSCRIBED, VISITED, replay
from model.domain.catalogue import catalogue
from tests.integration.lambda_env import LambdaContext, event

pytestmark = pytest.mark.usefixtures("local_endpoint")

IDX = catalogue().index


def test_stream_batch_updates_each_customer_once() -> None:
    resp = handler(event("aggregator_stream.json"), LambdaContext())
    assert resp == {"batchItemFailures": []}
    agg, _ = store.get_state("cust-0001")
    assert agg is not None
    email, web = IDX["email"], IDX["web"]
    assert [agg.counts[email][e] for e in (SENT, OPENED, CLICKED, CONVERTED)] == [1, 1, 1, 1]
    assert agg.counts[web][VISITED] == 1
    assert agg.value[email] == pytest.approx(89.9)
    sms_agg, _ = store.get_state("cust-0002")
    assert sms_agg is not None
    assert sms_agg.opted_out(IDX["sms"])
    assert sms_agg.counts[IDX["sms"]][UNSUBSCRIBED] == 1


def test_redelivered_batch_changes_nothing() -> None:
    ev = event("aggregator_stream.json")
    handler(ev, LambdaContext())
    first, _ = store.get_state("cust-0001")
    handler(ev, LambdaContext())
    again, _ = store.get_state("cust-0001")
    assert again == first


def test_matches_replay_of_the_same_events() -> None:
    ev = event("aggregator_stream.json")
    handler(ev, LambdaContext())
    found = [aggregator.fold_event_from_image(r["dynamodb"]["NewImage"]) for r in ev["Records"]]
    events = sorted((e for c, e in filter(None, found) if c == "cust-0001"), key=lambda e: e.ts)
    agg, _ = store.get_state("cust-0001")
    assert agg == replay(events)


def test_other_items_and_modifies_are_ignored() -> None:
    ev = event("aggregator_stream.json")
    modify = copy.deepcopy(ev["Records"][0])
    modify["eventName"] = "MODIFY"
    remove = copy.deepcopy(ev["Records"][1])
    remove["eventName"] = "REMOVE"
    ev["Records"] = [ev["Records"][-1], modify, remove]  # AGG insert, MODIFY and REMOVE of touchpoints
    assert handler(ev, LambdaContext()) == {"batchItemFailures": []}
    assert store.get_state("cust-0001") == (None, None)


def test_failed_customer_is_reported_and_others_succeed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = store.apply_to_aggregate

    def failing(customer_id: str, events: Any) -> Any:
        if customer_id == "cust-0002":
            raise store.StoreUnavailableError("simulated")
        return real(customer_id, events)

    monkeypatch.setattr(store, "apply_to_aggregate", failing)
    ev = event("aggregator_stream.json")
    resp = handler(ev, LambdaContext())
    expected = [
        r["dynamodb"]["SequenceNumber"] for r in ev["Records"] if "cust-0002" in r["dynamodb"]["Keys"]["PK"]["S"]
    ]
    assert [f["itemIdentifier"] for f in resp["batchItemFailures"]] == expected
    assert store.get_state("cust-0001")[0] is not None
    assert store.get_state("cust-0002")[0] is None


def test_malformed_touchpoint_record_is_reported() -> None:
    ev = event("aggregator_stream.json")
    del ev["Records"][0]["dynamodb"]["NewImage"]["event_type"]
    resp = handler(ev, LambdaContext())
    assert [f["itemIdentifier"] for f in resp["batchItemFailures"]] == [ev["Records"][0]["dynamodb"]["SequenceNumber"]]
    agg, _ = store.get_state("cust-0001")
    assert agg is not None
    assert agg.counts[IDX["email"]][SENT] == 0  # the broken record was not folded, the others were
    assert agg.counts[IDX["email"]][OPENED] == 1
