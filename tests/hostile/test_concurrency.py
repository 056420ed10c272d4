"""Concurrent load on a live `nbc serve`: 8 clients ingest the same touchpoints (duplicate event ids, different
orders and batches) and ask for recommendations at the same time; nothing may be lost or counted twice."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.hostile.live import (
    KEY,
    LiveServer,
    aggregate_counts,
    concurrent_load,
    expected_counts,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hostile")]


def test_concurrent_ingest_with_duplicates_loses_nothing_and_counts_nothing_twice(server: LiveServer) -> None:
    load = concurrent_load(server.base, clients=8, customers=4, events_per_customer=30, copies=3)

    assert not load.http_errors, "\n".join(load.http_errors[:10])
    # Every touchpoint was sent 3 times by 3 different clients: exactly one answer says "stored", the others
    # "duplicate", and no event went unanswered.
    assert set(load.statuses) == set(load.events)
    wrong = {
        event_id: answers
        for event_id, answers in load.statuses.items()
        if len(answers) != 3 or answers.count("stored") != 1 or answers.count("duplicate") != 2
    }
    assert not wrong, f"{len(wrong)} events not stored exactly once, e.g. {list(wrong.items())[:5]}"
    assert sum(load.decisions.values()) == len(load.latencies["recommend"])

    # The stream reaches the aggregator: each customer's aggregate counts every stored touchpoint once.
    deadline = time.monotonic() + 30
    for customer in load.customers:
        expected = expected_counts(load.events, customer)
        while True:
            got = aggregate_counts(server, customer)
            if got == expected or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert got == expected, f"{customer}: aggregate {dict(got or {})} != stored touchpoints {dict(expected)}"
    time.sleep(1.0)  # a late redelivery would show now
    for customer in load.customers:
        assert aggregate_counts(server, customer) == expected_counts(load.events, customer), customer

    # Erasure removes exactly what was stored: the touchpoints, the aggregate and every logged decision.
    with httpx.Client(base_url=server.base, headers=KEY, timeout=30) as http:
        for customer in load.customers:
            stored = sum(1 for tp in load.events.values() if tp["customer_id"] == customer)
            erased = http.delete(f"/v1/customers/{customer}")
            assert erased.status_code == 200, erased.text
            assert erased.json()["deleted_items"] == stored + 1 + load.decisions[customer], customer
    assert "Traceback" not in server.log(), server.log()[-3000:]
