"""Reasons, alternatives and the response's flags: contrastive reasons with the customer's numbers, the same on
both scoring paths; diverse alternatives; why and next_allowed_at of "don't contact"; cold_start as a flag."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import numpy as np
import pytest

from model.domain.aggregate import Aggregate, FoldEvent, fold
from model.domain.catalogue import catalogue
from model.domain.decide import decide, diverse
from model.domain.features import CHANNEL_FEATURES, CUSTOMER_FEATURES, SLOT_FEATURES
from model.domain.recommend_schemas import Policy, RecommendationRequest, RecommendationResponse
from model.domain.schemas import EVENT_INDEX, Profile, QuietHours
from model.domain.settings import get_settings
from model.scoring.predictor import LoadedModel, load_model
from model.scoring.tree_scorer import TreeScorer

NOW = datetime(2026, 11, 23, 8, 12, tzinfo=UTC)
AWAKE = QuietHours(start=time(0), end=time(0))  # no quiet hours
HISTORY_FEATURES = set(CHANNEL_FEATURES + SLOT_FEATURES) - {"channel", "local_hour", "local_dow"}


@pytest.fixture(scope="module")
def booster() -> Any:
    pytest.importorskip("lightgbm")
    from tests.scoring_helpers import layout, train

    return train(layout(), trees=40, leaves=15, seed=5)


@pytest.fixture
def compiled(booster: Any) -> LoadedModel:
    from tests.scoring_helpers import layout, manifest_for

    manifest = manifest_for(layout(), "v-test", {"compiled": "model.npz"})
    data = TreeScorer.from_dump(booster.dump_model()).to_bytes()
    return load_model(manifest, lambda name: data)


@pytest.fixture
def lightgbm_path(booster: Any) -> LoadedModel:
    from tests.scoring_helpers import layout, manifest_for

    manifest = manifest_for(layout(), "v-test", {"lightgbm": "model.txt"})
    text = booster.model_to_string().encode()
    return load_model(manifest, lambda name: text)


@pytest.fixture(autouse=True)
def _no_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_EXPLORATION_RATE", "0")
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0")
    get_settings.cache_clear()


def history(*events: tuple[str, str, datetime, float]) -> Aggregate:
    agg = Aggregate.empty()
    cat = catalogue()
    for i, (channel, etype, at, value) in enumerate(events):
        fold(agg, FoldEvent(f"e{i}", cat.code(channel), EVENT_INDEX[etype], at.timestamp(), value))
    return agg


def converts_on(channel: str, other: str, n: int = 10, conversions: int = 4) -> Aggregate:
    """n old sends on each of two channels; `conversions` of them converted on `channel`, none on `other`."""
    old = NOW - timedelta(days=30)
    evs: list[tuple[str, str, datetime, float]] = []
    for i in range(n):
        evs += [(channel, "sent", old + timedelta(hours=i), 0.0), (other, "sent", old + timedelta(hours=i), 0.0)]
    evs += [(channel, "converted", old + timedelta(hours=i, minutes=30), 50.0) for i in range(conversions)]
    return history(*evs)


def req(**kw: object) -> RecommendationRequest:
    return RecommendationRequest.model_validate({"customer_id": "cust-1", "now": NOW, **kw})


def cited(resp: RecommendationResponse) -> set[str]:
    return {r.feature for rec in resp.recommendations for r in rec.reasons}


def test_brand_new_customer_is_never_told_about_attributes_or_history_it_does_not_have(
    compiled: LoadedModel,
) -> None:
    resp = decide(req(k=3), None, None, compiled)
    assert resp.cold_start is True
    assert resp.policy == Policy.model
    features = cited(resp)
    assert features
    assert not features & set(CUSTOMER_FEATURES)
    assert not {f for f in features if f.startswith("attr_")}
    assert not features & HISTORY_FEATURES  # no sends, no engagement: only what the model knows of everyone
    texts = " ".join(r.text for rec in resp.recommendations for r in rec.reasons).lower()
    for word in ("age band", "tenure", "the customer's", "fatigue", "last 7 days", "engaged", "contacted"):
        assert word not in texts


def test_no_contacts_means_no_fatigue_reason(compiled: LoadedModel) -> None:
    resp = decide(req(k=5), converts_on("push", "email"), Profile(quiet_hours=AWAKE), compiled)
    assert resp.cold_start is False
    assert not cited(resp) & {"sends_7d", "ch_sends_7d", "ch_sends_1d"}


def test_the_channel_reason_names_the_runner_up_with_the_customers_numbers(compiled: LoadedModel) -> None:
    # The model learned that a channel's conversion rate raises the odds: push converted 4 of 10, email 0 of 10.
    agg = converts_on("push", "email")
    resp = decide(req(channels=["push", "email"], k=2), agg, Profile(quiet_hours=AWAKE), compiled)
    first, second = resp.recommendations
    assert (first.channel, second.channel) == ("push", "email")  # best per channel: the runner-up is second
    channel = [r for r in first.reasons if r.kind == "channel"]
    assert channel
    assert all(r.versus == "email" for r in channel)
    # The comparison is said once, by the first reason of the kind; the next ones add their evidence only.
    assert channel[0].text.startswith("push over email (conversion ")
    assert f"expected value {first.expected_value:,.2f} vs {second.expected_value:,.2f}" in channel[0].text
    assert not any("push over email" in r.text for r in channel[1:])
    conv = next(r for r in channel if r.feature == "ch_conversion_rate")
    assert "4 push conversions in 10 sends vs 0 in 10 on email" in conv.text
    assert conv.contribution > 0
    assert conv.value is not None
    assert conv.versus_value is not None
    assert conv.value > conv.versus_value
    # The alternative says what it is contrasted with, and what (if anything) speaks for it.
    assert all(r.versus == "push" for r in second.reasons if r.kind == "channel")


def test_hour_and_message_reasons_contrast_with_the_best_other_hour_and_message(compiled: LoadedModel) -> None:
    resp = decide(req(channels=["push", "email"], k=1), converts_on("push", "email"), Profile(), compiled)
    rec = resp.recommendations[0]
    assert rec.send_at_local is not None
    assert rec.message_id is not None
    hour = [r for r in rec.reasons if r.kind == "hour"]
    message = [r for r in rec.reasons if r.kind == "message"]
    assert hour
    assert message
    local = rec.send_at_local[11:16]
    # "13:00 local over ...", "Tue 13:00 local over ..." across days, or "13:00 and 14:00 are as good ..." on a tie
    assert all(r.text.split(" local ")[0].split(" and ")[0].endswith(local) for r in hour)
    assert all(r.versus is not None and r.versus != local for r in hour)
    assert all(r.text.startswith(f"message {rec.message_id} ") and r.versus != rec.message_id for r in message)


def test_a_single_open_channel_says_the_rules_closed_the_others(compiled: LoadedModel) -> None:
    profile = Profile(consent={"email": False, "sms": False}, quiet_hours=AWAKE)
    resp = decide(req(channels=["push", "email", "sms"], k=1), converts_on("push", "email"), profile, compiled)
    rule = resp.recommendations[0].reasons[0]
    assert rule.kind == "rules"
    assert rule.text == "push is the only channel the rules leave open (closed: email, sms)"


def test_compiled_and_lightgbm_paths_give_the_same_reasons(compiled: LoadedModel, lightgbm_path: LoadedModel) -> None:
    assert (compiled.kind, lightgbm_path.kind) == ("compiled", "lightgbm")
    for agg in (converts_on("push", "email"), converts_on("email", "sms"), None):
        a = decide(req(k=4), agg, Profile(timezone="Europe/Berlin"), compiled)
        b = decide(req(k=4), agg, Profile(timezone="Europe/Berlin"), lightgbm_path)
        assert [(r.channel, r.send_at, r.message_id) for r in a.recommendations] == [
            (r.channel, r.send_at, r.message_id) for r in b.recommendations
        ]
        for ra, rb in zip(a.recommendations, b.recommendations, strict=True):
            assert ra.reasons
            assert [(r.kind, r.feature, r.versus, r.text) for r in ra.reasons] == [
                (r.kind, r.feature, r.versus, r.text) for r in rb.reasons
            ]
            assert [r.contribution for r in ra.reasons] == pytest.approx([r.contribution for r in rb.reasons])


def test_three_allowed_channels_give_three_channels_first(compiled: LoadedModel) -> None:
    profile = Profile(consent={"email": True, "push": True, "sms": True}, quiet_hours=AWAKE)
    resp = decide(req(channels=["email", "push", "sms"], k=3), converts_on("push", "email"), profile, compiled)
    assert all(r.expected_value > 0 for r in resp.recommendations)
    assert len({r.channel for r in resp.recommendations}) == 3
    evs = [r.expected_value for r in resp.recommendations]
    assert evs == sorted(evs, reverse=True)  # channels in order of their best expected value


def test_diverse_takes_channels_then_messages_then_hours() -> None:
    shape = (2, 3, 2)  # channels x slots x messages
    ev = np.zeros(shape)
    ev[0, 0, 0], ev[0, 1, 0], ev[0, 2, 0] = 9, 8, 7  # channel 0, message 0: three hours
    ev[0, 0, 1] = 6  # channel 0, message 1
    ev[1, 2, 1] = 5  # channel 1
    ranked = np.argsort(-ev.ravel(), kind="stable")[:5]
    cells = [tuple(int(i) for i in np.unravel_index(f, shape)) for f in diverse(ranked, shape, 5)]
    assert cells == [(0, 0, 0), (1, 2, 1), (0, 0, 1), (0, 1, 0), (0, 2, 0)]
    assert diverse(ranked, shape, 1) == [int(ranked[0])]  # the first choice never changes
    assert diverse(ranked[:0], shape, 3) == []


def test_quiet_hours_everywhere_gives_none_with_why_and_the_end_of_quiet_hours(compiled: LoadedModel) -> None:
    profile = Profile(quiet_hours=QuietHours(start=time(21), end=time(8)))
    late = datetime(2026, 11, 23, 21, 30, tzinfo=UTC)
    r = req(now=late, horizon_hours=3, channels=["email", "push"])
    resp = decide(r, converts_on("push", "email"), profile, compiled)
    (rec,) = resp.recommendations
    assert rec.channel == "none"
    assert rec.why == "quiet_hours: 21:00-08:00"
    assert rec.next_allowed_at == datetime(2026, 11, 24, 8, tzinfo=UTC)


def test_a_cap_gives_none_with_the_cap_and_the_slot_it_reopens(compiled: LoadedModel) -> None:
    sent = NOW - timedelta(hours=2, minutes=30)  # 05:42: the 1/day cap holds until 05:42 tomorrow
    agg = history(*[(c, "sent", NOW - timedelta(days=20, hours=i), 0.0) for i in range(3) for c in ("email",)])
    fold(agg, FoldEvent("last", catalogue().code("email"), EVENT_INDEX["sent"], sent.timestamp(), 0.0))
    resp = decide(req(channels=["email"], horizon_hours=6), agg, Profile(quiet_hours=AWAKE), compiled)
    (rec,) = resp.recommendations
    assert rec.why == f"cap: email {get_settings().caps.per_channel_day}/day"
    assert rec.next_allowed_at == datetime(2026, 11, 24, 6, tzinfo=UTC)


def test_none_without_consent_has_no_next_allowed_instant(compiled: LoadedModel) -> None:
    profile = Profile(consent={"email": False})
    (rec,) = decide(req(channels=["email"]), converts_on("push", "email"), profile, compiled).recommendations
    assert rec.why == "no_consent: email"
    assert rec.next_allowed_at is None


def test_none_for_no_positive_value_and_for_the_holdout(compiled: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_CHANNEL_COSTS", '{"email": 1000, "push": 1000}')
    get_settings.cache_clear()
    (rec,) = decide(req(channels=["email", "push"]), converts_on("push", "email"), Profile(), compiled).recommendations
    assert (rec.channel, rec.why, rec.next_allowed_at) == ("none", "no positive expected value", None)
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "1")
    get_settings.cache_clear()
    resp = decide(req(), None, None, compiled)
    assert (resp.policy, resp.cold_start) == (Policy.holdout, True)  # the flag shows beside any policy
    assert (resp.recommendations[0].why, resp.recommendations[0].next_allowed_at) == ("holdout", None)


def test_cold_start_shows_beside_exploration(compiled: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_EXPLORATION_RATE", "1")
    get_settings.cache_clear()
    resp = decide(req(), None, None, compiled)
    assert (resp.policy, resp.cold_start) == (Policy.explore, True)
    assert decide(req(), converts_on("push", "email"), None, compiled).cold_start is False


def test_the_heuristic_quotes_the_counts_behind_its_rate() -> None:
    resp = decide(req(channels=["push", "email"], k=1), converts_on("push", "email"), Profile(quiet_hours=AWAKE), None)
    (reason,) = resp.recommendations[0].reasons
    assert resp.policy == Policy.fallback
    assert reason.kind == "heuristic"
    assert reason.text.startswith("push: 4 conversions after 10 push sends, smoothed conversion rate ")


def test_a_credit_against_the_obvious_direction_is_not_cited() -> None:
    from zoneinfo import ZoneInfo

    from model.domain.reasons import Option, contrastive
    from tests.scoring_helpers import layout

    lay = layout()
    lift, local = lay.names.index("hour_response_lift"), lay.names.index("local_hour")
    agg = converts_on("push", "email")

    def option(hour: int, lift_value: float, lift_credit: float) -> Option:
        values, contrib = np.zeros(len(lay.names)), np.zeros(len(lay.names))
        values[lift], values[local], contrib[lift] = lift_value, hour, lift_credit
        ts = datetime(2026, 11, 24, hour, tzinfo=UTC).timestamp()
        p = 0.3 + lift_credit / 10  # the credited option scores higher
        return Option("push", 2, ts, ZoneInfo("UTC"), "msg-a", p, 10 * p, values, contrib)

    # The tree credits the lower response lift (0.3x vs 1.5x): true to the model, misleading in words.
    reasons = contrastive("hour", option(10, 0.3, 0.5), option(9, 1.5, -0.5), lay, agg)
    assert "hour_response_lift" not in {r.feature for r in reasons}
    reasons = contrastive("hour", option(10, 1.5, 0.5), option(9, 0.3, -0.5), lay, agg)
    assert reasons[0].feature == "hour_response_lift"
    assert "1.5x their usual rate to sends around 10:00 vs 0.3x around 09:00" in reasons[0].text


def test_a_tie_to_the_shown_precision_is_said_plainly_without_feature_credits() -> None:
    from zoneinfo import ZoneInfo

    from model.domain.reasons import Option, contrastive
    from tests.scoring_helpers import layout

    lay = layout()
    lift = lay.names.index("hour_response_lift")

    def option(hour: int, p: float) -> Option:
        values, contrib = np.zeros(len(lay.names)), np.zeros(len(lay.names))
        values[lift], contrib[lift] = hour / 10, hour / 100  # a credit that would otherwise be cited
        ts = datetime(2026, 11, 24, hour, tzinfo=UTC).timestamp()
        return Option("push", 2, ts, ZoneInfo("UTC"), None, p, 50 * p, values, contrib)

    (reason,) = contrastive("hour", option(12, 0.2031), option(8, 0.20308), lay, converts_on("push", "email"))
    assert reason.feature == "expected_value"
    assert reason.text == "12:00 and 08:00 are as good for this customer (conversion 20.3%, expected value 10.15)"
    assert contrastive("hour", option(12, 0.25), option(8, 0.20), lay, converts_on("push", "email"))[0].text.startswith(
        "12:00 local over 08:00 (conversion 25.0% vs 20.0%"
    )
