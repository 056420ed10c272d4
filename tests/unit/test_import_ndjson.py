"""NDJSON sources keep every line's fields, not only the first line's (a regression: `value` was lost)."""

from __future__ import annotations

import json
from pathlib import Path

from training import sources
from training.dataset import normalise_touchpoints, profiles_map


def _lines(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def test_ndjson_fields_absent_from_the_first_line_are_kept(tmp_path: Path) -> None:
    docs = [
        # Line 1 has no value, no message_id, no attributes.
        {
            "event_id": "e1",
            "customer_id": "c1",
            "channel": "email",
            "event_type": "sent",
            "occurred_at": "2026-05-01T09:00:00Z",
        },
        {
            "event_id": "e2",
            "customer_id": "c1",
            "channel": "email",
            "event_type": "converted",
            "occurred_at": "2026-05-02T09:00:00Z",
            "value": 42.5,
            "message_id": "m1",
            "attributes": {"order": "o-1"},
        },
        {
            "event_id": 3,
            "customer_id": "c2",
            "channel": "sms",
            "event_type": "converted",
            "occurred_at": "2026-05-02T10:00:00Z",
            "value": "7",
        },
    ]
    src = sources.read_local(_lines(tmp_path / "touchpoints.ndjson", docs))
    rows = {r["event_id"]: r for r in src.touchpoints.to_pylist()}
    assert rows["e2"]["value"] == 42.5
    assert rows["e2"]["message_id"] == "m1"
    assert json.loads(rows["e2"]["attributes"]) == {"order": "o-1"}
    assert rows["3"]["value"] == 7.0  # a number as id, a number as text: read as the schema says
    assert rows["e1"]["value"] is None
    norm = normalise_touchpoints(src.touchpoints)
    assert sorted(norm["value"].to_list()) == [0.0, 7.0, 42.5]


def test_ndjson_profiles_keep_nested_fields_of_later_lines(tmp_path: Path) -> None:
    _lines(
        tmp_path / "touchpoints.ndjson",
        [
            {
                "event_id": "e1",
                "customer_id": "c1",
                "channel": "email",
                "event_type": "sent",
                "occurred_at": "2026-05-01T09:00:00Z",
            }
        ],
    )
    _lines(
        tmp_path / "profiles.ndjson",
        [
            {"customer_id": "c1", "timezone": "UTC"},
            {
                "customer_id": "c2",
                "timezone": "Europe/Paris",
                "consent": {"sms": True},
                "attributes": {"segment": "vip", "tenure_days": 30},
            },
        ],
    )
    src = sources.read_local(tmp_path)
    assert src.profiles is not None
    profiles = profiles_map(src.profiles)
    assert profiles["c2"].attributes == {"segment": "vip", "tenure_days": 30}
    assert profiles["c2"].consent == {"sms": True}
    assert profiles["c1"].attributes == {}
