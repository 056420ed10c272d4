"""Request body examples of the OpenAPI schema (what /docs offers under "Try it out"), valid for the configuration
in force: channels, attributes and messages are taken from it, so an example never names what this deployment
refuses."""

from __future__ import annotations

from typing import Any

from model.domain.catalogue import catalogue
from model.domain.settings import get_settings

Examples = dict[str, dict[str, Any]]


def _channels(n: int) -> list[str]:
    """Up to n channels, the usual ones first, from the configured catalogue."""
    names = list(catalogue().names)
    usual = [c for c in ("email", "push", "sms") if c in names]
    return (usual + [c for c in names if c not in usual])[:n]


def _message(channel: str) -> str | None:
    """A declared message of `channel`, or None without a message catalogue."""
    listed = get_settings().message_catalogue
    return next((mid for mid, entry in listed.items() if channel in entry.channels), None)


def touchpoints() -> Examples:
    first, *rest = _channels(2)
    other = rest[0] if rest else first
    sent: dict[str, Any] = {
        "event_id": "esp-20261120-0001",
        "customer_id": "c-42",
        "channel": first,
        "event_type": "sent",
        "occurred_at": "2026-11-20T09:00:00Z",
        "campaign_id": "black-friday-26",
        "decision_id": "3f1c9a4e-6d2b-4d8e-9a57-0c1e2b3d4f50",
    }
    if (message := _message(first)) is not None:
        sent["message_id"] = message
    items = [
        sent,
        {**sent, "event_id": "esp-20261120-0002", "event_type": "opened", "occurred_at": "2026-11-20T12:41:17+01:00"},
        {
            "event_id": "shop-20261120-0003",
            "customer_id": "c-42",
            "channel": other,
            "event_type": "converted",
            "occurred_at": "2026-11-20T11:58:45Z",
            "value": 89.9,
            "attributes": {"order_id": "A-100231", "items": 2},
        },
    ]
    for item in items[1:]:
        item.pop("decision_id", None)
    return {
        "batch": {"summary": "A send, its open and a conversion", "value": {"touchpoints": items}},
        "array": {"summary": "The same as a bare array", "value": items},
    }


def profile() -> Examples:
    channels = _channels(2)
    value: dict[str, Any] = {
        "timezone": "Europe/Paris",
        "consent": {channels[0]: True, **({channels[1]: False} if len(channels) > 1 else {})},
        "quiet_hours": {"start": "21:30", "end": "08:00"},
    }
    attributes: dict[str, Any] = {}
    for spec in get_settings().profile_attributes:
        if spec.kind == "numeric":
            attributes.setdefault(spec.name, 412)
        elif spec.levels:
            attributes.setdefault(spec.name, spec.levels[0])
    if attributes:
        value["attributes"] = dict(list(attributes.items())[:2])
    return {"profile": {"summary": "Time zone, consent, quiet hours and attributes", "value": value}}


def recommendation() -> Examples:
    channels = _channels(3)
    return {
        "defaults": {
            "summary": "Every channel, the next 48 hours, 3 recommendations",
            "value": {"customer_id": "c-42"},
        },
        "channels": {
            "summary": "Some channels, the next 24 hours, the best one",
            "value": {"customer_id": "c-42", "channels": channels, "horizon_hours": 24, "k": 1},
        },
    }


def batch() -> Examples:
    channels = _channels(2)
    return {
        "audience": {
            "summary": "Two customers of a campaign audience",
            "value": {
                "requests": [
                    {"customer_id": "c-42", "channels": channels, "k": 1},
                    {"customer_id": "c-43", "channels": channels, "k": 1},
                ]
            },
        }
    }
