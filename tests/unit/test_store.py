"""The table's store modules (model.adapters.dynamodb, erasure, touchpoints, profiles, states) against in-process
moto: idempotent and conditional writes, retries, profile/consent, erasure and its tombstone, aggregate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from model.adapters import aws, dynamodb, erasure, profiles, states, touchpoints
from model.adapters.table import AGG_SK, ERASED_SK, PK, SK, TTL, customer_pk
from model.domain.aggregate import CONVERTED, OPENED, SENT, Aggregate, FoldEvent, fold_event, replay
from model.domain.catalogue import catalogue
from model.domain.schemas import Profile, QuietHours, Touchpoint
from model.domain.settings import get_settings

pytestmark = pytest.mark.usefixtures("mocked_aws")

BASE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
EMAIL = catalogue().index["email"]


def tp(i: int, customer: str = "c1", **kw: Any) -> Touchpoint:
    fields: dict[str, Any] = {
        "event_id": f"ev-{i}",
        "customer_id": customer,
        "channel": "email",
        "event_type": "sent",
        "occurred_at": BASE + timedelta(minutes=i),
    }
    fields.update(kw)
    return Touchpoint.model_validate(fields)


def table_items() -> list[dict[str, Any]]:
    ddb = aws.client("dynamodb")
    items: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(TableName=get_settings().table_name):
        items.extend(page["Items"])
    return items


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    delays: list[float] = []
    monkeypatch.setattr(dynamodb, "_sleep", delays.append)
    return delays


def test_writes_are_idempotent_and_duplicates_reported() -> None:
    first = touchpoints.put_touchpoints([tp(1), tp(2), tp(2), tp(3, customer="c2")])
    assert first == ["stored", "stored", "duplicate", "stored"]  # duplicate within the request
    again = touchpoints.put_touchpoints([tp(2), tp(4), tp(3, customer="c2"), tp(3)])
    assert again == ["duplicate", "stored", "duplicate", "stored"]  # ev-3 of c1 is another key than of c2
    assert len(table_items()) == 5


def test_touchpoint_item_has_keys_sort_key_and_ttl() -> None:
    t = tp(7, value=12.5, campaign_id="bf", attributes={"device": "mobile", "items": 2})
    touchpoints.put_touchpoints([t])
    (raw,) = table_items()
    item = dynamodb.from_image(raw)
    assert item[PK] == "C#c1"
    assert item[SK] == "TP#ev-7"
    assert item["TS"] == "2026-11-20T09:07:00.000000Z#ev-7"
    assert item[TTL] == int((t.occurred_at + timedelta(days=get_settings().touchpoint_ttl_days)).timestamp())
    assert item["value"] == 12.5
    assert item["attributes"] == {"device": "mobile", "items": 2}
    assert "decision_id" not in item
    assert touchpoints.query_touchpoints("c1") == [t]  # round trip through the item format


def test_retention_is_occurred_at_plus_ttl_days(monkeypatch: pytest.MonkeyPatch) -> None:
    at = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    assert touchpoints.retention(at, 30) == int(datetime(2026, 12, 20, 23, 30, tzinfo=UTC).timestamp())
    paris = at.astimezone(datetime.now().astimezone().tzinfo)
    assert touchpoints.retention(paris, 30) == touchpoints.retention(at, 30)  # independent of the offset it came with
    monkeypatch.setenv("NBC_TOUCHPOINT_TTL_DAYS", "90")
    get_settings.cache_clear()
    assert touchpoints.retention(at) == int((at + timedelta(days=90)).timestamp())
    touchpoints.put_touchpoints([tp(1)])
    assert int(table_items()[0][TTL]["N"]) == int((tp(1).occurred_at + timedelta(days=90)).timestamp())


def test_query_touchpoints_in_time_order_and_range() -> None:
    tps = [tp(i) for i in (5, 1, 3, 2, 4)] + [tp(9, customer="other")]
    touchpoints.put_touchpoints(tps)
    assert [t.event_id for t in touchpoints.query_touchpoints("c1")] == ["ev-1", "ev-2", "ev-3", "ev-4", "ev-5"]
    window = touchpoints.query_touchpoints("c1", start=BASE + timedelta(minutes=2), end=BASE + timedelta(minutes=4))
    assert [t.event_id for t in window] == ["ev-2", "ev-3", "ev-4"]
    later = touchpoints.query_touchpoints("c1", start=BASE + timedelta(minutes=4))
    assert [t.event_id for t in later] == ["ev-4", "ev-5"]
    assert [t.event_id for t in touchpoints.query_touchpoints("c1", end=BASE + timedelta(minutes=1))] == ["ev-1"]


def test_profile_round_trip_and_consent_revocation() -> None:
    assert profiles.get_profile("c1") is None
    profile = Profile(
        timezone="Europe/Paris",
        consent={"email": True, "sms": True},
        quiet_hours=QuietHours.model_validate({"start": "22:00", "end": "07:30"}),
        attributes={"segment": "vip", "tenure_days": 400.0},
    )
    profiles.put_profile("c1", profile)
    assert profiles.get_profile("c1") == profile
    profiles.revoke_consent("c1", "sms", BASE)
    after = profiles.get_profile("c1")
    assert after is not None
    assert after.consent == {"email": True, "sms": False}
    assert after.timezone == "Europe/Paris"
    assert not after.has_consent("sms")


def test_revoke_consent_without_a_profile_creates_one() -> None:
    profiles.revoke_consent("c9", "email", BASE)
    profile = profiles.get_profile("c9")
    assert profile is not None
    assert profile.consent == {"email": False}
    assert profile.timezone == "UTC"
    profiles.revoke_consent("c9", "push", BASE)
    assert profiles.get_profile("c9") == Profile(timezone="UTC", consent={"email": False, "push": False})


def test_get_state_reads_aggregate_and_profile() -> None:
    assert states.get_state("c1") == (None, None)
    profiles.put_profile("c1", Profile(timezone="America/New_York"))
    agg, profile = states.get_state("c1")
    assert agg is None
    assert profile is not None
    assert profile.timezone == "America/New_York"
    states.apply_to_aggregate("c1", [FoldEvent("a", EMAIL, SENT, BASE.timestamp())])
    agg, _ = states.get_state("c1")
    assert agg is not None
    assert agg.counts[EMAIL][SENT] == 1


def test_apply_to_aggregate_versions_and_dedupes() -> None:
    t = BASE.timestamp()
    states.apply_to_aggregate("c1", [FoldEvent("a", EMAIL, SENT, t), FoldEvent("b", EMAIL, OPENED, t + 60)])
    agg = states.apply_to_aggregate(
        "c1", [FoldEvent("b", EMAIL, OPENED, t + 60), FoldEvent("c", EMAIL, CONVERTED, t + 90, 5.0)]
    )
    assert agg.counts[EMAIL][OPENED] == 1  # redelivered "b" counted once
    assert agg.value[EMAIL] == 5.0
    item = aws.client("dynamodb").get_item(
        TableName=get_settings().table_name, Key={PK: {"S": customer_pk("c1")}, SK: {"S": AGG_SK}}
    )["Item"]
    assert item["version"]["N"] == "2"
    assert Aggregate.from_json(item["state"]["S"]) == agg


def test_apply_to_aggregate_retries_when_another_writer_wins(
    monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]
) -> None:
    t = BASE.timestamp()
    states.apply_to_aggregate("c1", [FoldEvent("a", EMAIL, SENT, t)])
    ddb = aws.client("dynamodb")
    real_get = ddb.get_item
    raced = []

    def get_then_race(**kwargs: Any) -> Any:
        resp = real_get(**kwargs)
        if not raced:  # between our read and our write, another aggregator updates the item
            raced.append(True)
            states.apply_to_aggregate("c1", [FoldEvent("other", EMAIL, OPENED, t + 5)])
        return resp

    monkeypatch.setattr(ddb, "get_item", get_then_race)
    agg = states.apply_to_aggregate("c1", [FoldEvent("mine", EMAIL, CONVERTED, t + 9, 3.0)])
    assert raced
    assert (agg.counts[EMAIL][SENT], agg.counts[EMAIL][OPENED], agg.counts[EMAIL][CONVERTED]) == (1, 1, 1)
    stored, _ = states.get_state("c1")
    assert stored == agg


def test_erase_customer_deletes_every_item_of_that_customer_and_leaves_a_tombstone() -> None:
    touchpoints.put_touchpoints([tp(i) for i in range(60)] + [tp(1, customer="keep")])
    profiles.put_profile("c1", Profile())
    states.apply_to_aggregate("c1", [FoldEvent("a", EMAIL, SENT, BASE.timestamp())])
    assert erasure.erase_customer("c1", now=BASE) == 62
    assert states.get_state("c1") == (None, None)
    assert touchpoints.query_touchpoints("c1") == []
    left = {(i[PK]["S"], i[SK]["S"]): i for i in table_items()}
    assert set(left) == {("C#keep", "TP#ev-1"), ("C#c1", ERASED_SK)}
    tombstone = left[("C#c1", ERASED_SK)]
    assert int(tombstone[TTL]["N"]) == int((BASE + timedelta(days=erasure.ERASURE_TOMBSTONE_DAYS)).timestamp())
    assert erasure.erase_customer("c1") == 0


def test_nothing_of_an_erased_customer_is_written_while_its_tombstone_lives() -> None:
    touchpoints.put_touchpoints([tp(1), tp(2, event_type="unsubscribed")])
    erasure.erase_customer("c1")
    assert touchpoints.put_touchpoints([tp(1), tp(3), tp(3), tp(4, customer="c2")]) == [
        "erased",
        "erased",
        "erased",
        "stored",
    ]
    with pytest.raises(erasure.CustomerErasedError):
        profiles.put_profile("c1", Profile())
    profiles.revoke_consent("c1", "email", BASE)  # nothing to close
    with pytest.raises(erasure.CustomerErasedError):
        states.apply_to_aggregate("c1", [FoldEvent("a", EMAIL, SENT, BASE.timestamp())])
    outcome = states.fold_touchpoints("c1", ["ev-1", "ev-2"])
    assert (outcome.erased, outcome.folded, outcome.aggregate) == (True, 0, None)
    assert erasure.erased_customers(["c1", "c2"]) == {"c1"}
    assert [i[SK]["S"] for i in table_items() if i[PK]["S"] == "C#c1"] == [ERASED_SK]


def test_after_the_tombstone_expires_the_id_is_a_new_customer() -> None:
    touchpoints.put_touchpoints([tp(1)])
    erasure.erase_customer("c1", now=datetime.now(UTC) - timedelta(days=erasure.ERASURE_TOMBSTONE_DAYS, seconds=1))
    # expired, but DynamoDB's TTL has not deleted it yet: it no longer counts
    assert any(i[SK]["S"] == ERASED_SK for i in table_items())
    assert touchpoints.put_touchpoints([tp(1)]) == ["stored"]
    profiles.put_profile("c1", Profile())
    assert erasure.erased_customers(["c1"]) == set()


def test_same_event_id_with_another_payload_is_a_conflict_and_the_first_write_stays() -> None:
    first = tp(1, value=0.0)
    assert touchpoints.put_touchpoints([first]) == ["stored"]
    paris = tp(1).occurred_at.astimezone(datetime.now().astimezone().tzinfo)
    assert touchpoints.put_touchpoints([tp(1, occurred_at=paris)]) == ["duplicate"]  # same instant, another offset
    assert touchpoints.put_touchpoints([tp(1, event_type="opened"), tp(1)]) == ["conflict", "duplicate"]
    assert touchpoints.put_touchpoints([tp(2), tp(2, channel="sms"), tp(2)]) == ["stored", "conflict", "duplicate"]
    assert touchpoints.query_touchpoints("c1") == [first, tp(2)]


@pytest.mark.parametrize("same", [True, False])
def test_a_concurrent_writer_of_the_same_event_id_is_told_duplicate_or_conflict(
    monkeypatch: pytest.MonkeyPatch, same: bool
) -> None:
    """Both writers read "absent"; the other one's conditional put lands between our read and our write."""
    ddb = aws.client("dynamodb")
    real_get = ddb.batch_get_item
    theirs = tp(1) if same else tp(1, event_type="clicked")
    raced: list[list[touchpoints.Status]] = []

    def read_then_race(**kw: Any) -> Any:
        resp = real_get(**kw)
        if not raced:
            raced.append([])
            raced[0] = touchpoints.put_touchpoints([theirs])
        return resp

    monkeypatch.setattr(ddb, "batch_get_item", read_then_race)
    mine = touchpoints.put_touchpoints([tp(1), tp(2)])
    assert raced == [["stored"]]
    assert mine == ["duplicate" if same else "conflict", "stored"]
    assert touchpoints.query_touchpoints("c1") == [theirs, tp(2)]  # the table keeps the first write


def throttle(op: str, code: str = "ProvisionedThroughputExceededException") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "slow down"}}, op)


def cancelled(n: int, code: str = "TransactionConflict") -> ClientError:
    reasons = [{"Code": code, "Message": "another transaction"}] + [{"Code": "None"}] * (n - 1)
    return ClientError(
        {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}, "CancellationReasons": reasons},
        "TransactWriteItems",
    )


def test_no_accepted_touchpoint_is_lost_under_throttling_conflicts_and_unprocessed_keys(
    monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]
) -> None:
    """The real moto client, wrapped: throttles, cancels transactions on conflicts, leaves keys unprocessed."""
    ddb = aws.client("dynamodb")
    real_write, real_get = ddb.transact_write_items, ddb.batch_get_item
    calls = {"write": 0, "get": 0}

    def flaky_write(**kw: Any) -> Any:
        calls["write"] += 1
        if calls["write"] in (1, 4):
            raise throttle("TransactWriteItems")
        if calls["write"] in (2, 3, 6, 7):
            raise cancelled(len(kw["TransactItems"]))
        if calls["write"] == 8:
            raise throttle("TransactWriteItems", "TransactionConflictException")
        return real_write(**kw)

    def flaky_get(**kw: Any) -> Any:
        request_items = kw.pop("RequestItems")
        calls["get"] += 1
        if calls["get"] == 1:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "BatchGetItem")
        if calls["get"] == 2:
            ((table, req),) = request_items.items()
            half = len(req["Keys"]) // 2
            resp = real_get(RequestItems={table: {**req, "Keys": req["Keys"][:half]}}, **kw)
            resp["UnprocessedKeys"] = {table: {**req, "Keys": req["Keys"][half:]}}
            return resp
        return real_get(RequestItems=request_items, **kw)

    monkeypatch.setattr(ddb, "transact_write_items", flaky_write)
    monkeypatch.setattr(ddb, "batch_get_item", flaky_get)
    tps = [tp(i, customer=f"c{i % 7}") for i in range(130)]
    assert touchpoints.put_touchpoints(tps) == ["stored"] * 130
    stored = {(i[PK]["S"], i[SK]["S"]) for i in table_items()}
    assert stored == {(customer_pk(t.customer_id), f"TP#{t.event_id}") for t in tps}
    assert calls["write"] > 8  # the faults really happened
    assert len(no_sleep) >= 8  # and each retry backed off
    assert all(0 <= d <= dynamodb.MAX_DELAY for d in no_sleep)


def test_exhausted_retries_raise_instead_of_losing_items(
    monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]
) -> None:
    ddb = aws.client("dynamodb")

    def always_throttled(**kw: Any) -> Any:
        raise throttle("TransactWriteItems", "ThrottlingException")

    monkeypatch.setattr(ddb, "transact_write_items", always_throttled)
    with pytest.raises(dynamodb.StoreUnavailableError, match="throttled"):
        touchpoints.put_touchpoints([tp(1), tp(2)])
    assert len(no_sleep) == dynamodb.MAX_ATTEMPTS - 1  # no pointless sleep after the last attempt
    # backoff ceilings grow exponentially: late sleeps may be long, early ones are short
    assert max(no_sleep[:2]) <= dynamodb.BASE_DELAY * 2


def test_exhausted_batch_write_retries_raise(monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]) -> None:
    touchpoints.put_touchpoints([tp(1), tp(2)])
    ddb = aws.client("dynamodb")
    monkeypatch.setattr(ddb, "batch_write_item", lambda **kw: {"UnprocessedItems": kw["RequestItems"]})
    with pytest.raises(dynamodb.StoreUnavailableError, match="unprocessed"):
        erasure.erase_customer("c1")
    assert len(no_sleep) == dynamodb.MAX_ATTEMPTS - 1


def test_other_client_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]) -> None:
    ddb = aws.client("dynamodb")

    def invalid(**kw: Any) -> Any:
        raise ClientError({"Error": {"Code": "ValidationException", "Message": "bad"}}, "TransactWriteItems")

    monkeypatch.setattr(ddb, "transact_write_items", invalid)
    with pytest.raises(ClientError):
        touchpoints.put_touchpoints([tp(1)])
    assert no_sleep == []


def test_fold_touchpoints_folds_each_stored_touchpoint_once_across_transactions() -> None:
    tps = [tp(i, event_type="sent" if i % 3 else "opened") for i in range(150)]  # > 98: two transactions
    touchpoints.put_touchpoints(tps)
    ids = [t.event_id for t in tps] + ["never-stored"]
    first = states.fold_touchpoints("c1", ids)
    assert (first.folded, first.skipped, first.erased) == (150, 1, False)
    item = aws.client("dynamodb").get_item(
        TableName=get_settings().table_name, Key={PK: {"S": customer_pk("c1")}, SK: {"S": AGG_SK}}
    )["Item"]
    assert item["version"]["N"] == "2"
    marks = {i[SK]["S"]: i["agg_version"]["N"] for i in table_items() if i[SK]["S"].startswith("TP#")}
    assert sorted(set(marks.values())) == ["1", "2"]
    again = states.fold_touchpoints("c1", list(reversed(ids)))  # a redelivery, in another order
    assert (again.folded, again.skipped) == (0, 151)
    expected = replay(sorted((fold_event(t) for t in tps), key=lambda e: e.ts))
    assert first.aggregate == again.aggregate == states.get_state("c1")[0] == expected
