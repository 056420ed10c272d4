"""What the configuration does to decisions: per-channel consent and quiet hours, the message catalogue (channels,
dates, cost), refused message ids, unseen ids scored as "no message", and the configuration hash in service."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from model.domain import settings as settings_module
from model.domain.aggregate import Aggregate
from model.domain.decide import decide
from model.domain.features import UNKNOWN, encode_level, message_features
from model.domain.manifest import Manifest
from model.domain.recommend_schemas import RecommendationRequest
from model.domain.rules import candidate_grid
from model.domain.schemas import Profile, QuietHours
from model.domain.settings import get_settings, reload_settings

NOW = datetime(2026, 11, 23, 8, 12, tzinfo=UTC)  # first slot 09:00 UTC
CATALOGUE = [
    {"id": "xmas", "channels": ["email"], "cost": 0.5, "valid_from": "2026-11-23T12:00:00Z"},
    {"id": "promo", "channels": ["email", "push"]},
]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NBC_CONFIG", "")  # no files; restored after (use_config sets it directly)
    monkeypatch.setattr(settings_module, "_REMOTE", {})
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0")
    monkeypatch.setenv("NBC_EXPLORATION_RATE", "0")
    reload_settings()
    yield
    reload_settings()


def env(monkeypatch: pytest.MonkeyPatch, **values: object) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"NBC_{name.upper()}", value if isinstance(value, str) else json.dumps(value))
    reload_settings()


def grid(channels: list[str], messages: list[str], profile: Profile | None = None, hours: int = 23):  # type: ignore[no-untyped-def]
    return candidate_grid(channels, None, messages, hours, Aggregate.empty(), profile or Profile(), NOW, get_settings())


def awake_hours(g, channel: str) -> list[int]:  # type: ignore[no-untyped-def]
    i = g.channels.index(channel)
    return [datetime.fromtimestamp(float(t), UTC).hour for t in g.slots[g.allowed[i].any(axis=1)]]


def test_a_channel_window_replaces_the_default_and_the_customer_window_is_the_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env(monkeypatch, channel_quiet_hours={"push": {"start": "12:00", "end": "14:00"}})
    g = grid(["email", "push"], [])
    assert awake_hours(g, "email") == list(range(9, 21))  # the default 21:00-08:00
    assert 12 not in awake_hours(g, "push")
    assert 13 not in awake_hours(g, "push")
    assert 23 in awake_hours(g, "push")  # the default does not apply to push
    labels = {r.label: r.excluded for r in g.trace if r.rule == "quiet_hours"}
    assert labels == {"quiet_hours: 21:00-08:00": 11, "quiet_hours: push 12:00-14:00": 2}

    own = Profile(quiet_hours=QuietHours(start=time(22), end=time(7)))
    g = grid(["email", "push"], [], own)
    push = awake_hours(g, "push")
    assert 23 not in push  # the customer's own window applies on every channel
    assert 12 not in push
    assert 20 in push
    assert awake_hours(g, "email") == [*range(9, 22), 7]  # 09:00 to 07:00 next day: own window, not the default


def test_a_channel_can_require_an_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, consent_required="push,sms")
    g = grid(["email", "push"], [])
    assert not g.allowed[1].any()
    assert any(r.label == "no_consent: push" for r in g.trace)
    g = grid(["email", "push"], [], Profile(consent={"push": True}))
    assert g.allowed[1].any()


def test_messages_only_on_their_channels_within_their_dates_at_their_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, messages=CATALOGUE)
    g = grid(["email", "push"], ["xmas", "promo", "retired"])
    m = {name: j for j, name in enumerate(g.messages)}
    assert g.valid[0, m["xmas"]]
    assert g.valid[0, m["promo"]]
    assert not g.valid[1, m["xmas"]]  # xmas is an e-mail message
    assert g.valid[1, m["promo"]]
    assert not g.valid[:, m["retired"]].any()  # not in the catalogue: never offered
    first = float(g.slots[g.allowed[0, :, m["xmas"]]].min())
    assert datetime.fromtimestamp(first, UTC) == datetime(2026, 11, 23, 12, tzinfo=UTC)  # valid from 12:00
    assert {r.label: r.excluded for r in g.trace if r.rule == "message_window"} == {"message_window: xmas": 3}
    costs = get_settings()
    assert g.costs[0, 0, m["xmas"]] == pytest.approx(costs.cost_of("email") + 0.5)
    assert g.costs[1, 0, m["promo"]] == pytest.approx(costs.cost_of("push"))


def test_the_decision_cost_is_channel_plus_message_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, messages=CATALOGUE)
    req = RecommendationRequest(
        customer_id="c-1", channels=["email"], messages={"email": ["xmas", "promo"]}, k=20, now=NOW
    )
    resp = decide(req, None, None, None)  # the heuristic: the same P for every slot and message of a channel
    by_message = {r.message_id: r for r in resp.recommendations}
    xmas, promo = by_message["xmas"], by_message["promo"]
    assert xmas.p_convert == promo.p_convert
    assert promo.expected_value - xmas.expected_value == pytest.approx(0.5)
    value = get_settings().default_conversion_value
    assert promo.expected_value == pytest.approx(promo.p_convert * value - get_settings().cost_of("email"))
    start = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert all(r.send_at >= start for r in resp.recommendations if r.message_id == "xmas" and r.send_at)


def test_with_a_catalogue_unknown_or_misplaced_message_ids_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, messages=CATALOGUE)
    with pytest.raises(ValidationError, match="unknown message id 'xmas-2026': not in the message catalogue"):
        RecommendationRequest(customer_id="c-1", messages={"email": ["xmas-2026"]})
    with pytest.raises(ValidationError, match="message 'xmas' is not offered on push; its channels: email"):
        RecommendationRequest(customer_id="c-1", messages={"push": ["xmas"]})
    assert RecommendationRequest(customer_id="c-1", messages={"push": ["promo"]}).messages == {"push": ["promo"]}


def test_without_a_catalogue_any_id_is_accepted_and_an_unseen_one_scores_as_no_message() -> None:
    assert RecommendationRequest(customer_id="c-1", messages={"email": ["xmas-2026"]}).messages
    levels = ["discount", "newsletter"]
    assert encode_level("discount", levels) == 0.0
    # An id the model never saw gets the code of "no message" (LightGBM's missing branch), never a known level.
    assert message_features("xmas-2026", levels) == message_features(None, levels) == [UNKNOWN]


def test_http_refuses_an_unknown_message_id_with_422_naming_it(
    monkeypatch: pytest.MonkeyPatch, mocked_aws: None
) -> None:
    env(monkeypatch, messages=CATALOGUE)
    from functions.score.app import app

    client = TestClient(app, raise_server_exceptions=False)
    resp = client.post("/v1/recommendations", json={"customer_id": "c-1", "messages": {"email": ["xmas-2026"]}})
    assert resp.status_code == 422
    assert "xmas-2026" in resp.text


def test_model_info_shows_the_served_configuration_hash(mocked_aws: None) -> None:
    from functions.score.app import app

    body = TestClient(app).get("/v1/model").json()
    assert body["config_hash"] == get_settings().config_hash()
    assert body["config_matches"] is None  # no model in service


def _manifest(config_hash: str | None) -> Manifest:
    when = datetime(2026, 11, 1, tzinfo=UTC)
    return Manifest(
        version=f"v-{config_hash}",
        created_at=when,
        training_window=(when, when),
        features=[],
        categorical=[],
        schema_hash="x",
        channels=list(get_settings().channels),
        config_hash=config_hash,
    )


def test_serving_warns_once_when_the_model_was_trained_under_another_configuration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from model.scoring.predictor import warn_config_drift

    served = get_settings().config_hash()
    assert _manifest(served).config_matches(served) is True
    assert _manifest(None).config_matches(served) is None
    other = _manifest("0123456789abcdef")
    assert other.config_matches(served) is False
    with caplog.at_level(logging.WARNING, logger="model.scoring.predictor"):
        assert warn_config_drift(other)
        assert warn_config_drift(other)
        assert not warn_config_drift(_manifest(served))
    warnings = [r for r in caplog.records if "trained under configuration" in r.getMessage()]
    assert len(warnings) == 1
    assert served in warnings[0].getMessage()


def test_the_grid_costs_match_the_settings_helper_for_every_channel() -> None:
    g = grid(list(get_settings().channels), [])
    expected = np.array([get_settings().cost_of(c) for c in g.channels])
    assert np.allclose(g.costs[:, 0, 0], expected)
