"""Each objective trained end to end (`nbc train --objective ...` on small simulated data) and served through the
scoring Lambda: the manifest's objective decides what the predictions mean (model.domain.objective)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.score.app import handler
from model.adapters import profiles, states
from model.adapters.model_service import get_predictor
from model.adapters.registry import ModelStore
from model.domain.aggregate import FoldEvent
from model.domain.catalogue import catalogue
from model.domain.objective import Objective
from model.domain.schemas import EVENT_INDEX, Profile
from model.domain.settings import get_settings
from tests.integration.lambda_env import LambdaContext, event

pytest.importorskip("lightgbm")
# One worker runs the module (--dist loadgroup): its four training runs (module fixture) happen once, not per worker.
pytestmark = [pytest.mark.usefixtures("local_endpoint"), pytest.mark.xdist_group("objectives_served")]
NOW = datetime(2026, 11, 23, 8, 12, 45, tzinfo=UTC)
OBJECTIVES: tuple[Objective, ...] = ("click", "visit", "conversion", "value")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelStore]:
    """One model per objective, trained by the pipeline `nbc train` runs, on the same simulated log."""
    from training import pipeline
    from training.simulate import SimConfig, simulate, write

    sim = write(simulate(SimConfig(customers=300, days=40, seed=5)), tmp_path_factory.mktemp("sim"))
    out: dict[str, ModelStore] = {}
    for objective in OBJECTIVES:
        opts = pipeline.Options(objective=objective, max_contexts=150, version=objective, params={"num_threads": 1})
        out[objective] = pipeline.run(str(sim), str(tmp_path_factory.mktemp(objective)), opts).store
    return out


@pytest.fixture(autouse=True)
def _deterministic_policy(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("NBC_EXPLORATION_RATE", "0")
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0")
    monkeypatch.setenv("NBC_MODEL_REFRESH_SECONDS", "0")
    monkeypatch.setenv("NBC_CLICK_VALUE", "0.25")  # distinctive: the test recomputes the costs in outcomes
    monkeypatch.setenv("NBC_VISIT_VALUE", "0.5")
    get_settings.cache_clear()
    get_predictor.cache_clear()
    yield
    get_predictor.cache_clear()


def serve(trained: dict[str, ModelStore], objective: str) -> None:
    """The objective's trained model, compiled and CURRENT in the store the scoring function reads."""
    from training.compile import compile_version

    src = trained[objective]
    manifest = src.manifest(objective)
    ms = ModelStore.from_uri(get_settings().model_store)
    ms.publish(objective, {"model.txt": src.read(objective, "model.txt")}, manifest)
    compile_version(ms, objective)
    ms.set_current(objective)
    get_predictor.cache_clear()


def seed_customer(customer_id: str) -> None:
    profiles.put_profile(customer_id, Profile(timezone="Europe/Paris", consent={"email": True, "sms": True}))
    cat = catalogue()
    start = NOW - timedelta(days=10)
    events = [
        FoldEvent(f"e{i}", cat.code(ch), EVENT_INDEX[t], (start + timedelta(hours=i)).timestamp(), 0.0)
        for i, (ch, t) in enumerate(
            [("email", "sent"), ("email", "opened"), ("email", "clicked"), ("push", "sent"), ("push", "visited")]
        )
    ]
    states.apply_to_aggregate(customer_id, events)


def recommend(customer_id: str = "cust-obj") -> dict[str, Any]:
    ev = event("score_recommendation.json")
    body = {"customer_id": customer_id, "channels": ["email", "sms", "push"], "k": 3, "now": NOW.isoformat()}
    ev["body"] = json.dumps(body)
    ev["headers"]["content-length"] = str(len(ev["body"]))
    resp = handler(ev, LambdaContext())
    text = base64.b64decode(resp["body"]).decode() if resp.get("isBase64Encoded") else resp["body"]
    assert resp["statusCode"] == 200, text
    out: dict[str, Any] = json.loads(text)
    assert out["policy"] == "model"
    return out


def model_info() -> dict[str, Any]:
    resp = handler(event("score_model.json"), LambdaContext())
    text = base64.b64decode(resp["body"]).decode() if resp.get("isBase64Encoded") else resp["body"]
    assert resp["statusCode"] == 200, text
    out: dict[str, Any] = json.loads(text)
    return out


def contacts(body: dict[str, Any]) -> list[dict[str, Any]]:
    recs = [r for r in body["recommendations"] if r["channel"] != "none"]
    assert recs, body
    return recs


@pytest.mark.parametrize("objective", ["click", "visit"])
def test_click_and_visit_models_rank_by_outcome_probability_net_of_cost_in_outcomes(
    trained: dict[str, ModelStore], objective: str
) -> None:
    serve(trained, objective)
    manifest = trained[objective].manifest(objective)
    assert manifest.objective == objective
    assert "none" not in manifest.levels["channel"]  # attributed labels: no "don't contact" term (p_none = 0)
    seed_customer("cust-obj")
    body = recommend()
    assert body["model_version"] == objective
    info = model_info()
    assert (info["model_version"], info["objective"]) == (objective, objective)
    assert info["unsupported"] == {"channels": [], "messages": []}
    s = get_settings()
    per_outcome = s.click_value if objective == "click" else s.visit_value
    recs = contacts(body)
    for rec in recs:
        # Expected value in outcomes per decision: the probability of the outcome minus the cost counted in
        # outcomes (not x order value, which would be 50x larger).
        assert 0 < rec["p_convert"] < 1
        assert rec["expected_value"] == pytest.approx(rec["p_convert"] - s.cost_of(rec["channel"]) / per_outcome)
    assert recs[0]["expected_value"] == max(r["expected_value"] for r in recs)  # the first is the best
    texts = " ".join(r["text"] for r in recs[0]["reasons"])
    assert f"({objective} " in texts  # the reasons name the modelled outcome, e.g. "(visit 4.1% vs 2.0%, ..."
    assert "(conversion " not in texts


def test_conversion_model_values_the_probability_at_the_order_value(
    trained: dict[str, ModelStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBC_DEFAULT_CONVERSION_VALUE", "80")  # not used: the model learned an order-value prior
    get_settings.cache_clear()
    serve(trained, "conversion")
    prior = trained["conversion"].manifest("conversion").value_prior
    assert prior is not None
    assert prior.conversions > 0
    assert model_info()["value_prior"] == prior.model_dump(mode="json")
    seed_customer("cust-obj")
    # The seeded customer never bought and declares no attribute: the prior's overall mean order value.
    value = prior.overall
    assert value != pytest.approx(80.0)
    for rec in contacts(recommend()):
        assert rec["expected_value"] == pytest.approx(rec["p_convert"] * value - get_settings().cost_of(rec["channel"]))


def test_value_model_predicts_the_value_itself_unclamped_and_without_order_value(
    trained: dict[str, ModelStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    serve(trained, "value")
    assert trained["value"].manifest("value").objective == "value"
    seed_customer("cust-obj")
    first = contacts(recommend())
    assert all(r["p_convert"] == 0.0 for r in first)  # a value model has no probability to report
    assert "(predicted value " in " ".join(r["text"] for r in first[0]["reasons"])
    # The prediction is in currency: above 1 (a probability clamped to [0, 1] could not be).
    assert max(r["expected_value"] + get_settings().cost_of(r["channel"]) for r in first) > 1.0
    # ... and not multiplied by the customer's order value: another default value changes nothing.
    monkeypatch.setenv("NBC_DEFAULT_CONVERSION_VALUE", "5000")
    get_settings.cache_clear()
    get_predictor.cache_clear()
    again = contacts(recommend())
    assert [(r["channel"], r["expected_value"]) for r in again] == [(r["channel"], r["expected_value"]) for r in first]


def test_reports_state_the_policy_value_unit(trained: dict[str, ModelStore]) -> None:
    units = {}
    for objective, ms in trained.items():
        report = json.loads(ms.read(objective, "report.json"))
        assert report["objective"] == objective
        units[objective] = report["value_unit"]
        assert report["policies"]["model"]["value"] is not None
        assert units[objective] in ms.read(objective, "report.html").decode()
        if objective in ("click", "visit"):  # the marketer's page says it too
            assert f"{objective}s per decision" in ms.read(objective, "marketing.html").decode()
    assert units == {
        "click": "clicks per decision",
        "visit": "visits per decision",
        "conversion": "conversion value per decision",
        "value": "conversion value per decision",
    }


def test_the_modelled_outcome_is_what_each_report_values(trained: dict[str, ModelStore]) -> None:
    """Visits per decision are a rate (at most 1 per decision, net of cost), conversion value is currency."""
    values = {o: json.loads(ms.read(o, "report.json"))["policies"]["logging"]["value"] for o, ms in trained.items()}
    assert -1.0 < values["visit"] < 1.0
    assert -1.0 < values["click"] < 1.0
    assert values["conversion"] > values["visit"]  # mean conversion value of a send >> visit rate on the simulator
