"""`nbc score --audience --embedded`: the audience is decided against the local store (what `nbc serve` and the
demo keep in .nbc/local), and the decisions it logs are saved back into it."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model.adapters import profiles, states
from model.domain.aggregate import FoldEvent
from model.domain.catalogue import catalogue
from model.domain.schemas import EVENT_INDEX, Profile
from model.domain.settings import get_settings
from nbc.cli import app
from nbc.local import snapshot


@pytest.fixture(autouse=True)
def _deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_EXPLORATION_RATE", "0")
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0")
    get_settings.cache_clear()


def test_embedded_audience_uses_the_local_store_and_saves_its_decisions(local_endpoint: str, tmp_path: Path) -> None:
    # The local store as `nbc serve` leaves it: one customer with a profile and a history of 4 events.
    email = catalogue().code("email")
    start = datetime.now(UTC) - timedelta(days=10)
    profiles.put_profile("warm-1", Profile(timezone="Europe/Paris", attributes={"segment": "vip"}))
    states.apply_to_aggregate(
        "warm-1",
        [FoldEvent(f"e{i}", email, EVENT_INDEX["sent"], (start + timedelta(days=i)).timestamp()) for i in range(4)],
    )
    path = snapshot.default_path()
    assert path is not None
    snapshot.save(path)

    audience = tmp_path / "audience.csv"
    audience.write_text("customer_id\nwarm-1\nnew-1\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", "--audience", str(audience), "--out", str(out), "--embedded"])
    assert result.exit_code == 0, result.output
    assert "1 customers restored from" in result.output
    rows = {r["customer_id"]: r for r in map(json.loads, (out / "part-00000.ndjson").read_text().splitlines())}
    assert rows["warm-1"]["cold_start"] is False  # its restored history was scored
    assert rows["new-1"]["cold_start"] is True
    with gzip.open(path, "rt") as fh:  # the decisions joined the local store
        saved = [json.loads(line) for line in fh]
    decisions = {item["SK"]["S"] for item in saved if item["SK"]["S"].startswith("DEC#")}
    assert decisions == {f"DEC#{r['decision_id']}" for r in rows.values()}
