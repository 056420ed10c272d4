"""Validation at the boundary (issue 13): every hostile input is a validation error (422 over HTTP), never a crash
deeper down: quiet hours with an offset (D2), timestamps with no UTC instant (D5), numbers DynamoDB cannot store
(D6), and the smaller items (ids, strict numbers, categorical levels, time zone keys, channel enums)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time
from typing import Any

import pytest
from pydantic import ValidationError

from model.adapters.ingest import validate_item
from model.domain.catalogue import catalogue
from model.domain.decide import decide
from model.domain.recommend_schemas import RecommendationRequest
from model.domain.schemas import Profile, QuietHours, Touchpoint

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def touchpoint(**overrides: Any) -> dict[str, Any]:
    base = {
        "event_id": "e-1",
        "customer_id": "c-1",
        "channel": "email",
        "event_type": "sent",
        "occurred_at": "2026-11-20T09:00:00Z",
    }
    return {**base, **overrides}


def reasons(err: ValidationError) -> str:
    return " | ".join(str(e["msg"]) for e in err.errors())


# --- D2: quiet hours are naive local times -----------------------------------------------------------------


@pytest.mark.parametrize("start", ["21:00Z", "21:00+02:00", "21:00:00-05:00", "21:00:00.5Z"])
def test_quiet_hours_with_a_timezone_suffix_are_rejected(start: str) -> None:
    with pytest.raises(ValidationError) as err:
        Profile.model_validate({"timezone": "Europe/Paris", "quiet_hours": {"start": start, "end": "08:00"}})
    assert "no 'Z' or offset" in reasons(err.value)
    with pytest.raises(ValidationError):
        QuietHours.model_validate({"start": "22:00", "end": start})


def test_naive_quiet_hours_are_accepted_and_decisions_never_compare_aware_times() -> None:
    profile = Profile.model_validate({"timezone": "Europe/Paris", "quiet_hours": {"start": "21:00", "end": "08:00"}})
    assert profile.quiet().start == time(21)
    assert profile.quiet().start.tzinfo is None
    resp = decide(RecommendationRequest(customer_id="c-1", now=NOW), None, profile, None)
    assert resp.recommendations


# --- D5: timestamps that have no UTC instant ---------------------------------------------------------------


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00+14:00", "9999-12-31T23:00:00-01:00"])
def test_extreme_offsets_are_validation_errors_not_overflow(stamp: str) -> None:
    with pytest.raises(ValidationError) as err:
        Touchpoint.model_validate(touchpoint(occurred_at=stamp))
    assert "out of range" in reasons(err.value)
    errors = validate_item(touchpoint(occurred_at=stamp))
    assert isinstance(errors, list)
    assert [e.field for e in errors] == ["occurred_at"]


# --- D6 and strict numbers: one range check for every stored number ----------------------------------------


@pytest.mark.parametrize("number", [1e308, -1e308, 1e-320, 1e-101, math.inf, -math.inf, math.nan])
def test_profile_numbers_outside_dynamodb_range_are_rejected(number: float) -> None:
    with pytest.raises(ValidationError) as err:
        Profile.model_validate({"attributes": {"tenure_days": number}})
    assert "out of range" in reasons(err.value) or "finite" in reasons(err.value)
    # The same check as touchpoint attributes and values.
    with pytest.raises(ValidationError):
        Touchpoint.model_validate(touchpoint(attributes={"score": number}))


def test_profile_numbers_inside_the_range_are_kept() -> None:
    profile = Profile.model_validate({"attributes": {"tenure_days": 420, "segment": "vip"}})
    assert profile.attributes == {"tenure_days": 420, "segment": "vip"}
    assert Profile.model_validate({"attributes": {"tenure_days": 0}}).attributes["tenure_days"] == 0


def test_profile_out_of_range_number_over_json_is_rejected() -> None:
    for raw in ('{"attributes": {"tenure_days": 1e308}}', '{"attributes": {"tenure_days": 1e-320}}'):
        with pytest.raises(ValidationError):
            Profile.model_validate_json(raw)


@pytest.mark.parametrize("flag", [True, False])
def test_true_and_false_are_not_numbers(flag: bool) -> None:
    with pytest.raises(ValidationError):
        Profile.model_validate({"attributes": {"tenure_days": flag}})
    with pytest.raises(ValidationError):
        Touchpoint.model_validate(touchpoint(event_type="converted", value=flag))
    for field in ("horizon_hours", "k"):
        with pytest.raises(ValidationError):
            RecommendationRequest.model_validate({"customer_id": "c-1", field: flag})
    # Touchpoint attributes keep real booleans as booleans.
    assert Touchpoint.model_validate(touchpoint(attributes={"vip": flag})).attributes["vip"] is flag


# --- ids, levels, zones -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [".", "..", "...", " c-1", "c-1 ", "\tc-1", "c 1"])
def test_bad_ids_are_rejected_not_stripped(bad: str) -> None:
    with pytest.raises(ValidationError):
        Touchpoint.model_validate(touchpoint(customer_id=bad))
    with pytest.raises(ValidationError):
        RecommendationRequest.model_validate({"customer_id": bad})


@pytest.mark.parametrize("good", ["c-1", ".c", "a.b", "c..", "x@y.z", "_"])
def test_ids_with_dots_inside_are_fine(good: str) -> None:
    assert Touchpoint.model_validate(touchpoint(customer_id=good)).customer_id == good


def test_categorical_attributes_must_be_a_declared_level() -> None:
    with pytest.raises(ValidationError) as err:
        Profile.model_validate({"attributes": {"segment": "platinum"}})
    assert "one of new, regular, vip, lapsed" in reasons(err.value)
    assert Profile.model_validate({"attributes": {"segment": "lapsed"}}).attributes["segment"] == "lapsed"


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory", "posix/Europe/Paris", "right/UTC", "../etc"])
def test_non_iana_time_zone_keys_are_rejected(zone: str) -> None:
    with pytest.raises(ValidationError) as err:
        Profile(timezone=zone)
    assert "unknown IANA time zone" in reasons(err.value)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Etc/GMT+5"])
def test_iana_time_zones_are_accepted(zone: str) -> None:
    assert Profile(timezone=zone).zone().key == zone


# --- OpenAPI: channel fields list the catalogue ------------------------------------------------------------


def test_channel_fields_list_the_catalogue_in_the_json_schema() -> None:
    names = list(catalogue().names)
    tp = Touchpoint.model_json_schema()["properties"]
    assert tp["channel"]["enum"] == names
    profile = Profile.model_json_schema()["properties"]
    assert profile["consent"]["propertyNames"]["enum"] == names
    req = RecommendationRequest.model_json_schema()["properties"]
    assert req["channels"]["anyOf"][0]["items"]["enum"] == names
    assert req["messages"]["anyOf"][0]["propertyNames"]["enum"] == names
