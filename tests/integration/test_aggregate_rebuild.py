"""`nbc aggregate rebuild` against moto's HTTP server: a corrupted aggregate comes back equal to the aggregator's,
touchpoints the aggregator never folded are folded exactly once, and a rebuild racing the aggregator loses nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from model.adapters import aggregate_rebuild, aws, dynamodb, erasure, states, touchpoints
from model.adapters.table import AGG_SK, FOLDED, PK, SK, customer_pk
from model.domain.aggregate import Aggregate, fold_event, replay
from model.domain.schemas import Touchpoint
from model.domain.settings import get_settings
from nbc.cli import app

pytestmark = pytest.mark.usefixtures("local_endpoint")

NOW = datetime.now(UTC).replace(microsecond=0)
KINDS = ["sent", "delivered", "opened", "clicked", "sent", "converted", "unsubscribed", "subscribed"]
CHANNELS = ["email", "sms", "push"]


def _touchpoints(customer_id: str, n: int) -> list[Touchpoint]:
    return [
        Touchpoint(
            event_id=f"{customer_id}-{i:03d}",
            customer_id=customer_id,
            channel=CHANNELS[i % 3],
            event_type=KINDS[i % len(KINDS)],
            occurred_at=NOW - timedelta(hours=7 * (n - i)),  # spans weeks: caps and the id window prune
            value=12.5 if KINDS[i % len(KINDS)] == "converted" else 0.0,
        )
        for i in range(n)
    ]


def _aggregate_of(customer_id: str) -> tuple[Aggregate, int]:
    item = aws.client("dynamodb").get_item(
        TableName=get_settings().table_name,
        Key={PK: {"S": customer_pk(customer_id)}, SK: {"S": AGG_SK}},
        ConsistentRead=True,
    )["Item"]
    return Aggregate.from_json(item["state"]["S"]), int(item["version"]["N"])


def _aggregated(customer_id: str, n: int, batch: int = 7) -> Aggregate:
    """Store n touchpoints and fold them as the aggregator does (stream batches of `batch`); its aggregate."""
    tps = _touchpoints(customer_id, n)
    touchpoints.put_touchpoints(tps)
    for start in range(0, n, batch):
        states.fold_touchpoints(customer_id, [tp.event_id for tp in tps[start : start + batch]])
    return _aggregate_of(customer_id)[0]


def _corrupt(customer_id: str) -> None:
    """Overwrite the aggregate with wrong counts (a bug, a bad manual edit), keeping the version going."""
    agg, version = _aggregate_of(customer_id)
    agg.counts[0][0] += 40
    agg.value[1] = 1e6
    agg.opt_out[2] = NOW.timestamp()
    assert dynamodb.transact([states.aggregate_put(customer_id, agg, version)]) is None


def _unmarked(customer_id: str) -> list[str]:
    return [it[SK]["S"] for it in aggregate_rebuild._stored_touchpoints(customer_id) if FOLDED not in it]


def rebuild(*args: str) -> Any:
    return CliRunner().invoke(app, ["aggregate", "rebuild", *args])


def test_a_corrupted_aggregate_is_rebuilt_equal_to_the_aggregators() -> None:
    expected = _aggregated("c-corrupt", 40)
    _corrupt("c-corrupt")
    assert _aggregate_of("c-corrupt")[0] != expected

    result = rebuild("--customer", "c-corrupt")

    assert result.exit_code == 0, result.output
    assert _aggregate_of("c-corrupt")[0] == expected
    assert "changed" in result.output
    assert _unmarked("c-corrupt") == []

    again = aggregate_rebuild.rebuild_customer("c-corrupt")
    assert (again.outcome, again.touchpoints, again.folded_late) == ("unchanged", 40, 0)


def test_touchpoints_the_aggregator_never_folded_are_folded_once_and_marked() -> None:
    tps = _touchpoints("c-late", 30)
    touchpoints.put_touchpoints(tps)
    states.fold_touchpoints("c-late", [tp.event_id for tp in tps[:12]])  # the rest: records given up on
    assert len(_unmarked("c-late")) == 18

    done = aggregate_rebuild.rebuild_customer("c-late")

    assert (done.outcome, done.touchpoints, done.folded_late) == ("changed", 30, 18)
    assert _unmarked("c-late") == []
    rebuilt = _aggregate_of("c-late")[0]
    assert rebuilt == replay([fold_event(tp) for tp in tps])  # the fold of every stored touchpoint, once
    # The stream then redelivers the given-up records: each touchpoint is already marked, nothing counts twice.
    late = states.fold_touchpoints("c-late", [tp.event_id for tp in tps[12:]])
    assert (late.folded, late.skipped) == (0, 18)
    assert _aggregate_of("c-late")[0] == rebuilt


def test_an_aggregate_without_stored_touchpoints_becomes_empty() -> None:
    states.apply_to_aggregate("c-ghost", [])  # an aggregate item, no touchpoint behind it
    _corrupt("c-ghost")

    done = aggregate_rebuild.rebuild_customer("c-ghost")

    assert done.outcome == "changed"
    assert _aggregate_of("c-ghost")[0] == Aggregate.empty()


def test_a_rebuild_racing_the_aggregator_reads_again_and_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    tps = _touchpoints("c-race", 20)
    touchpoints.put_touchpoints(tps)
    states.fold_touchpoints("c-race", [tp.event_id for tp in tps[:10]])
    _corrupt("c-race")
    read = aggregate_rebuild._stored_touchpoints
    calls = 0

    def aggregator_commits_between_the_two_reads(customer_id: str) -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        if calls == 1:  # the aggregator folds 5 more after the rebuild read the version
            states.fold_touchpoints(customer_id, [tp.event_id for tp in tps[10:15]])
        return read(customer_id)

    monkeypatch.setattr(aggregate_rebuild, "_stored_touchpoints", aggregator_commits_between_the_two_reads)

    done = aggregate_rebuild.rebuild_customer("c-race")

    assert calls == 2  # the first write lost on the version: read again
    assert done.folded_late == 5
    assert _unmarked("c-race") == []
    assert _aggregate_of("c-race")[0] == replay([fold_event(tp) for tp in tps])  # each touchpoint once


def test_all_customers_with_progress_and_a_summary() -> None:
    expected = {cid: _aggregated(cid, 16) for cid in ("c-1", "c-2", "c-3")}
    _corrupt("c-2")
    touchpoints.put_touchpoints(_touchpoints("c-4", 5))  # never aggregated
    _aggregated("c-gone", 4)
    erasure.erase_customer("c-gone")

    result = rebuild("--all")

    assert result.exit_code == 0, result.output
    for cid, agg in expected.items():
        assert _aggregate_of(cid)[0] == agg
    assert _unmarked("c-4") == []
    lines = dict(re.findall(r"^\W*(\w[^│|]*?)\s*[│|]\s*([\d,]+)\s*[│|]\s*$", result.output, re.MULTILINE))
    assert lines["customers rebuilt"] == "4"
    assert lines["changed"] == "2"  # c-2 (corrupted) and c-4 (never aggregated)
    assert lines["unchanged"] == "2"
    assert lines["folded now (the aggregator had not)"] == "5"
    assert "rebuilding: done" in result.output  # progress (plain lines when not on a terminal)
    assert "erased" not in result.output  # erased customers leave no key for the listing to find


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give either --customer ID or --all"),
        (["--customer", "c-1", "--all"], "give either --customer ID or --all"),
        (["--customer", "bad id"], "is not a customer id"),
    ],
)
def test_bad_arguments_are_refused_clearly(args: list[str], message: str) -> None:
    result = rebuild(*args)

    assert result.exit_code == 2
    assert message in result.output


def test_an_erased_customer_is_left_alone() -> None:
    _aggregated("c-erased", 4)
    erasure.erase_customer("c-erased")

    assert aggregate_rebuild.rebuild_customer("c-erased").outcome == "erased"
    assert (
        aws.client("dynamodb")
        .get_item(TableName=get_settings().table_name, Key={PK: {"S": customer_pk("c-erased")}, SK: {"S": AGG_SK}})
        .get("Item")
        is None
    )


def test_all_goes_on_past_a_customer_the_store_cannot_serve_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    for cid in ("c-ok", "c-busy"):
        _aggregated(cid, 6)
        _corrupt(cid)
    real = aggregate_rebuild.rebuild_customer

    def throttled_for_one(customer_id: str) -> aggregate_rebuild.Rebuilt:
        if customer_id == "c-busy":
            raise dynamodb.StoreUnavailableError("throttled past the retry budget")
        return real(customer_id)

    monkeypatch.setattr(aggregate_rebuild, "rebuild_customer", throttled_for_one)

    result = rebuild("--all")

    assert result.exit_code == 1
    assert re.search(r"failed: store unavailable \(run again\)\s*[│|]\s*1\b", result.output), result.output
    assert re.search(r"changed\s*[│|]\s*1\b", result.output), result.output
    assert _aggregate_of("c-ok")[0] == replay([fold_event(tp) for tp in _touchpoints("c-ok", 6)])
