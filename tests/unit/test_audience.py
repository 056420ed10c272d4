"""Audience scoring (model/adapters/audience.py, `nbc score --audience`): every valid customer decided once with
the API's rules and decision log, invalid rows set aside with the reason, duplicates counted, resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from model.adapters import audience as aud
from model.adapters import profiles
from model.adapters.table import PK, SK, customer_pk
from model.domain.schemas import Profile
from model.domain.settings import get_settings
from nbc.cli import app

pytestmark = pytest.mark.usefixtures("mocked_aws")


@pytest.fixture(autouse=True)
def _no_holdout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0")
    monkeypatch.setenv("NBC_EXPLORATION_RATE", "0")
    get_settings.cache_clear()


def _decisions(customer_id: str) -> list[dict[str, Any]]:
    ddb = boto3.client("dynamodb", region_name=get_settings().region)
    items = ddb.query(
        TableName=get_settings().table_name,
        KeyConditionExpression=f"{PK} = :pk AND begins_with({SK}, :sk)",
        ExpressionAttributeValues={":pk": {"S": customer_pk(customer_id)}, ":sk": {"S": "DEC#"}},
    )["Items"]
    return list(items)


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for part in sorted(out.glob("part-*.ndjson")) for line in part.read_text().splitlines()]


def test_plan_keeps_first_occurrence_counts_duplicates_and_rejects_with_reason() -> None:
    planned = aud.plan(["a-1", "a-2", "a-1", "", "bad id with spaces", None, "a-3"], aud.AudienceOptions())
    assert planned.customers == ["a-1", "a-2", "a-3"]
    assert planned.duplicates == 1
    assert [r["row"] for r in planned.rejected] == [4, 5, 6]
    assert all("customer_id" in r["reason"] for r in planned.rejected)


def test_run_decides_every_customer_once_logs_each_and_respects_consent(tmp_path: Path) -> None:
    ids = [f"aud-{i:03d}" for i in range(7)]
    # sms needs an explicit opt-in: nobody has given it, so no audience member may be sent an sms.
    profiles.put_profile(ids[0], Profile(timezone="Europe/Paris"))
    out = tmp_path / "decisions"
    options = aud.AudienceOptions(channels=["email", "sms"], k=2)
    summary = aud.run(aud.plan(ids, options), str(out), options, model=None, chunk=3)

    assert summary["customers"] == 7
    assert summary["chunks"] == 3
    assert summary["decided_now"] == 7
    rows = _rows(out)
    assert {r["customer_id"] for r in rows} == set(ids)
    assert all(r["channel"] != "sms" for r in rows)
    assert {r["rank"] for r in rows if r["customer_id"] == ids[0]} <= {1, 2}
    for cid in ids:  # logged exactly as the API logs, with the decision id the output carries
        logged = _decisions(cid)
        assert len(logged) == 1
        assert logged[0]["decision_id"]["S"] == next(r["decision_id"] for r in rows if r["customer_id"] == cid)
    assert json.loads((out / aud.SUMMARY).read_text())["customers"] == 7


def test_interrupted_run_resumes_without_a_second_decision_per_customer(tmp_path: Path) -> None:
    ids = [f"res-{i:03d}" for i in range(5)]
    out = tmp_path / "decisions"
    options = aud.AudienceOptions()
    planned = aud.plan(ids, options)
    aud.run(planned, str(out), options, model=None, chunk=2)
    first = {r["customer_id"]: r["decision_id"] for r in _rows(out)}
    # A crash after the last chunk's decisions were logged but before its part was written:
    (out / aud.part_name(2)).unlink()
    (out / aud.SUMMARY).unlink()
    again = aud.run(planned, str(out), options, model=None, chunk=2)
    assert again["chunks_resumed"] == 2
    assert again["decided_now"] == 1
    assert {r["customer_id"]: r["decision_id"] for r in _rows(out)} == first
    assert all(len(_decisions(cid)) == 1 for cid in ids)
    with pytest.raises(ValueError, match="another audience"):
        aud.run(aud.plan(ids[:3], options), str(out), options, model=None, chunk=2)


def test_cli_scores_a_parquet_audience_and_sets_aside_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "audience.parquet"
    pq.write_table(pa.table({"customer_id": ["p-1", "p-2", "p 3", "p-1"]}), path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", "--audience", str(path), "--out", str(out), "--channels", "email"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / aud.SUMMARY).read_text())
    assert (summary["customers"], summary["duplicates"], summary["rejected"]) == (2, 1, 1)
    assert json.loads((out / aud.REJECTED).read_text())["row"] == 3
    missing = CliRunner().invoke(app, ["score", "--audience", str(path), "--out", str(out), "--column", "id"])
    assert missing.exit_code == 2
    assert "no column 'id'" in missing.output
