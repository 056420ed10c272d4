"""The published OpenAPI schema: how to authenticate (API key locally, JWT deployed), an example for every request
body that the API itself accepts, and the configuration's channels and messages as enums."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from functions.common import examples
from model.domain.catalogue import catalogue
from model.domain.recommend_schemas import BatchRequest, RecommendationRequest
from model.domain.schemas import Profile, Touchpoint
from nbc.server import openapi_document

MESSAGES = json.dumps(
    [{"id": "discount", "channels": ["email", "push"]}, {"id": "xmas-2026", "channels": ["email"]}],
)


@pytest.fixture(autouse=True)
def _catalogue_of_the_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The channel catalogue is cached per process: re-read it after a test that configured another one."""
    yield
    _fresh()


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def test_both_security_schemes_are_declared_and_only_health_is_open() -> None:
    doc = openapi_document()

    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header", "name": "x-api-key"}
    assert (schemes["Jwt"]["type"], schemes["Jwt"]["scheme"], schemes["Jwt"]["bearerFormat"]) == (
        "http",
        "bearer",
        "JWT",
    )
    assert all(s["description"] for s in schemes.values())
    assert doc["security"] == [{"ApiKey": []}, {"Jwt": []}]  # either one
    for method, path, op in _operations(doc):
        assert op.get("security") == ([] if path == "/health" else None), (method, path)


def _validate(path: str, value: Any) -> None:
    """An example as the route reads it."""
    models: dict[str, type[BaseModel]] = {
        "/v1/customers/{customer_id}/profile": Profile,
        "/v1/recommendations": RecommendationRequest,
        "/v1/recommendations:batch": BatchRequest,
    }
    if path == "/v1/touchpoints":
        items = value["touchpoints"] if isinstance(value, dict) else value
        for item in items:
            Touchpoint.model_validate(item)
    else:
        models[path].model_validate(value)


def test_every_request_body_has_examples_the_api_accepts() -> None:
    doc = openapi_document()
    bodies = [(path, op["requestBody"]) for _, path, op in _operations(doc) if "requestBody" in op]

    assert {path for path, _ in bodies} == {
        "/v1/touchpoints",
        "/v1/customers/{customer_id}/profile",
        "/v1/recommendations",
        "/v1/recommendations:batch",
    }
    for path, body in bodies:
        found = body["content"]["application/json"]["examples"]
        assert found, path
        for name, example in found.items():
            assert example["summary"], (path, name)
            _validate(path, example["value"])


def test_channel_fields_list_the_configured_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_CHANNELS", '["email", "push", "sms"]')
    _fresh()

    request = RecommendationRequest.model_json_schema()

    assert request["properties"]["channels"]["anyOf"][0]["items"]["enum"] == ["email", "push", "sms"]
    assert Touchpoint.model_json_schema()["properties"]["channel"]["enum"] == ["email", "push", "sms"]
    assert set(examples.profile()["profile"]["value"]["consent"]) <= {"email", "push", "sms"}


def test_message_ids_list_the_message_catalogue_when_one_is_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    def message_items() -> dict[str, Any]:
        messages = RecommendationRequest.model_json_schema()["properties"]["messages"]["anyOf"][0]
        return dict(messages["additionalProperties"]["items"])

    assert "enum" not in message_items()  # no catalogue: any id

    monkeypatch.setenv("NBC_MESSAGES", MESSAGES)
    _fresh()

    assert message_items()["enum"] == ["discount", "xmas-2026"]
    sent = examples.touchpoints()["batch"]["value"]["touchpoints"][0]
    assert sent["message_id"] == "discount"  # the example names a declared message of its channel
    Touchpoint.model_validate(sent)


def _fresh() -> None:
    from model.domain.settings import get_settings

    get_settings.cache_clear()
    catalogue.cache_clear()
