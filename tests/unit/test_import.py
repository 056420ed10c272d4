"""`nbc import`: mapping, streaming readers, validation by the online schemas, quality.json with exact counts."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from model.adapters import aws
from model.domain.catalogue import catalogue
from model.domain.settings import get_settings, reload_settings, use_config
from nbc.cli import app
from training import sources
from training.dataset import normalise_touchpoints, profiles_map
from training.importer import MappingError, Options, load, readers, run
from training.importer import mapping as mapping_mod
from training.importer.times import parse_as_of
from training.sources import SourceError

T0 = datetime(2026, 5, 4, 9, tzinfo=UTC)
HEADER = ["event_id", "customer_id", "channel", "event_type", "occurred_at", "value"]


@pytest.fixture(autouse=True)
def _own_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ./nbc.toml from the working directory; declarations made by a test do not outlive it."""
    monkeypatch.setenv("NBC_CONFIG", "")
    reload_settings()
    yield
    reload_settings()


def planted_rows(n: int = 1000, seed: int = 3) -> tuple[list[list[str]], dict[str, int]]:
    """n valid touchpoints, then planted bad ones; returns the rows and the exact drops expected."""
    rng = random.Random(seed)
    kinds = ["sent", "sent", "opened", "clicked", "converted"]
    rows = []
    for i in range(n):
        kind = rng.choice(kinds)
        when = T0 + timedelta(minutes=rng.randrange(60 * 24 * 30))
        rows.append(
            [
                f"e{i}",
                f"c{rng.randrange(97)}",
                rng.choice(["email", "sms", "push"]),
                kind,
                when.isoformat(),
                f"{rng.uniform(5, 90):.2f}" if kind == "converted" else "",
            ]
        )
    planted = {
        "unknown_channel": 7,
        "naive_timestamp": 5,
        "duplicate_event_id": 3,
        "missing_customer": 2,
        "bad_timestamp": 1,
        "unknown_event_type": 1,
    }
    bad = []
    bad += [[f"u{i}", "c1", "fax", "sent", T0.isoformat(), ""] for i in range(7)]
    bad += [[f"n{i}", "c2", "email", "sent", "2026-05-05T10:00:00", ""] for i in range(5)]  # naive
    bad += [rows[i][:] for i in (10, 20, 30)]  # the same event ids again
    bad += [[f"m{i}", "", "email", "sent", T0.isoformat(), ""] for i in range(2)]
    bad += [["t0", "c3", "email", "sent", "yesterday", ""]]
    bad += [["k0", "c3", "email", "bought", T0.isoformat(), ""]]
    mixed = rows[:]
    for j, row in enumerate(bad):  # spread them through the file
        mixed.insert(50 + 37 * j, row)
    return mixed, planted


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    data = buf.getvalue().encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def test_planted_bad_rows_are_counted_exactly(tmp_path: Path) -> None:
    rows, planted = planted_rows()
    src = write_csv(tmp_path / "events.csv.gz", rows)
    result = run([str(src)], Options(out=tmp_path / "out"))
    q = result.quality
    assert result.ok
    assert q["rows_read"] == len(rows) == 1000 + sum(planted.values())
    assert q["dropped"] == planted
    assert q["rows_kept"] == 1000
    assert q["rows_kept"] + sum(q["dropped"].values()) == q["touchpoints"]
    assert q["unknown_values"]["channel"] == {"fax": 7}
    assert q["unknown_values"]["event_type"] == {"bought": 1}
    ex = q["examples"]["naive_timestamp"][0]
    assert ex["values"]["occurred_at"] == "2026-05-05T10:00:00"
    assert "offset" in ex["error"]
    assert len(q["examples"]["unknown_channel"]) == 3  # a few examples per reason, not all
    assert q["customers"] == len({r[1] for r in rows if r[0].startswith("e")})
    assert json.loads((tmp_path / "out" / "quality.json").read_text()) == q
    table = pq.read_table(tmp_path / "out" / "touchpoints.parquet")
    assert table.num_rows == 1000
    assert sum(q["events_by_type"].values()) == 1000
    # What was written is what training reads, with nothing lost in between.
    src_tables = sources.load(str(tmp_path / "out"))
    assert normalise_touchpoints(src_tables.touchpoints).height == 1000


def test_the_mapping_time_zone_keeps_naive_timestamps(tmp_path: Path) -> None:
    rows, planted = planted_rows()
    src = write_csv(tmp_path / "events.csv", rows)
    (tmp_path / "m.toml").write_text(
        'timezone = "Europe/Lisbon"\n[columns]\n' + "".join(f'{c} = "{c}"\n' for c in HEADER)
    )
    q = run([str(src)], Options(out=tmp_path / "out", mapping=load(tmp_path / "m.toml"))).quality
    assert "naive_timestamp" not in q["dropped"]
    assert q["rows_kept"] == 1000 + planted["naive_timestamp"]
    tp = pl.read_parquet(tmp_path / "out" / "touchpoints.parquet").filter(pl.col("event_id") == "n0")
    # 10:00 in Lisbon in May (WEST, UTC+1) is 09:00 UTC.
    assert tp["occurred_at"][0] == datetime(2026, 5, 5, 9, tzinfo=UTC)


def test_ndjson_and_parquet_sources_give_the_same_touchpoints(tmp_path: Path) -> None:
    rows, _ = planted_rows(200)
    docs = [dict(zip(HEADER, r, strict=True)) for r in rows]
    for d in docs:
        if d["value"]:
            d["value"] = float(d["value"])  # a number in JSON, text in CSV
        else:
            del d["value"]  # absent from most lines (including the first)
    (tmp_path / "a.ndjson").write_text("".join(json.dumps(d) + "\n" for d in docs) + "{not json\n")
    pl.DataFrame([dict(zip(HEADER, r, strict=True)) for r in rows]).write_parquet(tmp_path / "b.parquet")
    qa = run([str(tmp_path / "a.ndjson")], Options(out=tmp_path / "A")).quality
    qb = run([str(tmp_path / "b.parquet")], Options(out=tmp_path / "B")).quality
    assert qa["dropped"].pop("unreadable_row") == 1
    assert qa["dropped"] == qb["dropped"]
    a = pl.read_parquet(tmp_path / "A" / "touchpoints.parquet")
    b = pl.read_parquet(tmp_path / "B" / "touchpoints.parquet")
    assert a.equals(b)
    assert a["value"].sum() > 0  # values absent from the first line are kept


def test_reimport_is_idempotent_with_derived_event_ids(tmp_path: Path) -> None:
    rows, _ = planted_rows(300)
    no_ids = [r[1:] for r in rows]
    src = write_csv(tmp_path / "events.csv", no_ids + no_ids[:5], header=HEADER[1:])  # 5 rows exported twice
    first = run([str(src)], Options(out=tmp_path / "one")).quality
    again = run([str(src)], Options(out=tmp_path / "two")).quality
    assert first["dropped"]["duplicate_event_id"] == 5 + 3  # + the 3 planted repeats of whole rows
    a = pl.read_parquet(tmp_path / "one" / "touchpoints.parquet")
    b = pl.read_parquet(tmp_path / "two" / "touchpoints.parquet")
    assert a.equals(b)
    assert first == again
    assert a["event_id"].str.starts_with("h").all()
    assert a["event_id"].n_unique() == a.height


def test_strict_fails_on_any_drop_and_writes_only_quality(tmp_path: Path) -> None:
    rows, _ = planted_rows(100)
    src = write_csv(tmp_path / "events.csv", rows)
    out = tmp_path / "out"
    result = run([str(src)], Options(out=out, strict=True))
    assert not result.ok
    assert sorted(p.name for p in out.iterdir()) == ["nbc.toml", "quality.json"]
    clean = write_csv(tmp_path / "clean.csv", rows[:40])
    assert run([str(clean)], Options(out=out, strict=True)).ok


CAMPAIGN_MAPPING = """
timezone = "Europe/Lisbon"
[columns]
customer_id = "client"
occurred_at = "contact_date"
channel = "contact"
value = "amount"
[values.channel]
cellular = "sms"
telephone = "call_center"
landline = "mobile_call"
[attributes]
age = "numeric"
job = "categorical"
[channels]
mobile_call = 2.5
[[derive]]
event_type = "sent"
[[derive]]
event_type = "converted"
when = { column = "y", in = ["yes"] }
offset = "2d"
"""


def campaign_rows(n: int, seed: int = 5) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        age = rng.randrange(18, 90)
        job = rng.choice(["admin", "technician", "services", "retired"])
        contact = rng.choice(["cellular", "telephone", "landline"])
        p = 0.05 + 0.25 * (job == "retired") + 0.1 * (contact == "cellular")
        y = "yes" if rng.random() < p else "no"
        out.append(
            [
                f"k{i:04d}",
                str(age),
                job,
                contact,
                "2026-03-02 10:00",
                y,
                f"{rng.uniform(20, 200):.2f}" if y == "yes" else "",
            ]
        )
    return out


CAMPAIGN_HEADER = ["client", "age", "job", "contact", "contact_date", "y", "amount"]


def test_campaign_table_with_derive_rules_attributes_and_channels(tmp_path: Path) -> None:
    rows = campaign_rows(60)
    rows[3][1] = "unknown"  # one bad attribute: the profile keeps its job
    rows[4][3] = "fax"  # an unknown channel: both touchpoints of the row are dropped
    src = write_csv(tmp_path / "campaign.csv", rows, CAMPAIGN_HEADER)
    (tmp_path / "m.toml").write_text(CAMPAIGN_MAPPING)
    out = tmp_path / "out"
    q = run([str(src)], Options(out=out, mapping=load(tmp_path / "m.toml"))).quality
    yes = sum(r[5] == "yes" for r in rows)
    assert q["rows_read"] == 60
    assert q["touchpoints"] == 60 + yes
    fax_yes = rows[4][5] == "yes"
    assert q["dropped"] == {"unknown_channel": 1 + fax_yes, "bad_attribute": 1}
    assert q["events_by_type"] == {"sent": 59, "converted": yes - fax_yes}
    tp = pl.read_parquet(out / "touchpoints.parquet")
    conv = tp.filter(pl.col("event_type") == "converted")
    # 10:00 in Lisbon (WET, UTC+0 in March) + 2 days; the value comes from the amount column.
    assert (conv["occurred_at"] == datetime(2026, 3, 4, 10, tzinfo=UTC)).all()
    assert conv["value"].min() >= 20
    assert set(tp["channel"]) <= {"sms", "call_center", "mobile_call"}
    prof = profiles_map(pq.read_table(out / "profiles.parquet"))
    assert prof["k0003"].attributes == {"job": rows[3][2]}  # age dropped, job kept
    assert prof["k0000"].attributes["age"] == float(rows[0][1])
    assert q["examples"]["bad_attribute"][0]["attribute"] == "age"
    declared = (out / "nbc.toml").read_text()
    assert "mobile_call = 2.5" in declared
    assert 'kind = "categorical"' in declared
    # nbc train reads DIR/nbc.toml: the channel and the attributes (with the data's levels) are in force.
    use_config(out / "nbc.toml")
    assert "mobile_call" in catalogue()
    specs = {a.name: a for a in get_settings().profile_attributes}
    assert specs["age"].kind == "numeric"
    assert set(specs["job"].levels) == {r[2] for r in rows}


def test_profiles_file_keeps_good_attributes_and_reports_undeclared(tmp_path: Path) -> None:
    rows, _ = planted_rows(50)
    write_csv(tmp_path / "touchpoints.csv", rows)
    (tmp_path / "profiles.ndjson").write_text(
        json.dumps(
            {
                "customer_id": "c1",
                "timezone": "Europe/Paris",
                "attributes": {"segment": "vip", "tenure_days": 12, "shoe_size": 44},
            }
        )
        + "\n"
        + json.dumps({"customer_id": "c2", "timezone": "Mars/Olympus", "consent": {"sms": True}})
        + "\n"
    )
    q = run([str(tmp_path)], Options(out=tmp_path / "out")).quality
    assert q["dropped"]["undeclared_attribute"] == 1
    assert q["dropped"]["bad_timezone"] == 1
    assert q["examples"]["undeclared_attribute"][0]["attribute"] == "shoe_size"
    prof = profiles_map(pq.read_table(tmp_path / "out" / "profiles.parquet"))
    assert prof["c1"].attributes == {"segment": "vip", "tenure_days": 12}
    assert prof["c1"].timezone == "Europe/Paris"
    assert prof["c2"].consent == {"sms": True}
    assert prof["c2"].timezone == "UTC"
    assert q["profiles"] == 2


def test_as_of_drops_later_events_and_records_the_window_end(tmp_path: Path) -> None:
    rows, _ = planted_rows(200)
    src = write_csv(tmp_path / "events.csv", rows)
    as_of = parse_as_of("2026-05-20")
    q = run([str(src)], Options(out=tmp_path / "out", as_of=as_of)).quality
    # Valid rows after the window's end (a repeated id after it is counted there too: it was never kept).
    later = sum(1 for r in rows if r[0].startswith("e") and datetime.fromisoformat(r[4]) > as_of)
    assert q["as_of"] == "2026-05-20T00:00:00Z"
    assert q["dropped"]["after_as_of"] == later > 0
    assert q["period"]["last"] <= "2026-05-20T00:00:00Z"


def test_s3_source_streams_through_the_boto3_client(tmp_path: Path, mocked_aws: None) -> None:
    rows, planted = planted_rows(300)
    data = write_csv(tmp_path / "e.csv.gz", rows).read_bytes()
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="exports")
    s3.put_object(Bucket="exports", Key="crm/2026/events.csv.gz", Body=data)
    s3.put_object(Bucket="exports", Key="crm/2026/README.md", Body=b"not data")
    q = run(["s3://exports/crm/2026/"], Options(out=tmp_path / "out")).quality
    assert q["rows_kept"] == 300
    assert q["dropped"] == planted
    assert q["sources"][0]["uri"] == "s3://exports/crm/2026/events.csv.gz"


def test_batches_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "BLOCK_BYTES", 4096)
    rows, planted = planted_rows(2000)
    src = write_csv(tmp_path / "events.csv", rows)
    sf = readers.expand([str(src)])[0]
    sizes = [b.frame.height for b in readers.batches(sf, HEADER)]
    assert len(sizes) > 10
    assert max(sizes) < 100
    q = run([str(src)], Options(out=tmp_path / "out")).quality
    assert q["dropped"] == planted
    assert q["rows_kept"] == 2000


def test_mapping_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="unknown key"):
        mapping_mod.parse({"colums": {}})
    with pytest.raises(MappingError, match="channel is needed"):
        mapping_mod.parse({"columns": {"customer_id": "a", "occurred_at": "b", "event_type": "c"}})
    with pytest.raises(MappingError, match="IANA"):
        mapping_mod.parse({"timezone": "Lisbon", "columns": {}})
    with pytest.raises(MappingError, match="event_type must be one of"):
        mapping_mod.parse(
            {
                "columns": {"customer_id": "a", "occurred_at": "b", "channel": "c"},
                "derive": [{"event_type": "purchase"}],
            }
        )
    (tmp_path / "bad.toml").write_text("[columns\n")
    with pytest.raises(MappingError, match="not valid TOML"):
        load(tmp_path / "bad.toml")
    rows, _ = planted_rows(40)
    src = write_csv(tmp_path / "e.csv", [r[1:] for r in rows], header=["cust", *HEADER[2:]])
    with pytest.raises(SourceError, match=r"lacks column\(s\) customer_id \(customer_id\).*--mapping"):
        run([str(src)], Options(out=tmp_path / "out"))


def test_every_column_a_mapping_names_must_exist(tmp_path: Path) -> None:
    rows, _ = planted_rows(40)
    src = write_csv(tmp_path / "e.csv", rows)
    columns = "".join(f'{c} = "{c}"\n' for c in HEADER if c != "value") + 'value = "amount"\n'
    (tmp_path / "m.toml").write_text("[columns]\n" + columns)
    with pytest.raises(SourceError, match=r"lacks column\(s\) amount \(value\)"):
        run([str(src)], Options(out=tmp_path / "out", mapping=load(tmp_path / "m.toml")))
    # NDJSON has no header: a mapped key that no line holds is reported, not silently empty.
    (tmp_path / "e.ndjson").write_text("".join(json.dumps(dict(zip(HEADER, r, strict=True))) + "\n" for r in rows))
    q = run([str(tmp_path / "e.ndjson")], Options(out=tmp_path / "out", mapping=load(tmp_path / "m.toml"))).quality
    assert q["empty_columns"] == ["amount (value)"]


def test_config_file_declares_channels_and_attributes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "nbc.toml").write_text(
        "attribution_window_days = 14\n[channels]\nwhatsapp = 0.004\nemail = 0.003\n"
        '[attributes]\nage = "numeric"\nplan = { kind = "categorical", levels = ["free", "pro"] }\n'
    )
    monkeypatch.setenv("NBC_CONFIG", str(tmp_path / "nbc.toml"))
    reload_settings()
    s = get_settings()
    assert s.channels[-1] == "whatsapp"
    assert "email" in s.channels
    assert s.channel_costs["whatsapp"] == 0.004
    assert s.channel_costs["email"] == 0.003
    assert s.attribution_window_days == 14
    assert {a.name for a in s.profile_attributes} >= {"segment", "age", "plan"}
    monkeypatch.setenv("NBC_ATTRIBUTION_WINDOW_DAYS", "3")  # the environment overrides a file
    reload_settings()
    assert get_settings().attribution_window_days == 3


def test_cli_import_prints_the_quality_table_and_exit_codes(tmp_path: Path) -> None:
    rows, _planted = planted_rows(100)
    src = write_csv(tmp_path / "events.csv", rows)
    runner = CliRunner()
    res = runner.invoke(app, ["import", str(src), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "unknown_channel" in res.output
    assert "rows read" in res.output
    assert "nbc train --source" in res.output
    res = runner.invoke(app, ["import", str(src), "--out", str(tmp_path / "strict"), "--strict"])
    assert res.exit_code == 1
    assert "--strict" in res.output
    res = runner.invoke(app, ["import", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert res.output.startswith("error: no such file")
    (tmp_path / "empty.csv").write_text(",".join(HEADER) + "\n")
    res = runner.invoke(app, ["import", str(tmp_path / "empty.csv"), "--out", str(tmp_path / "y")])
    assert res.exit_code == 2
    assert "no rows" in res.output
    assert "Traceback" not in res.output


def test_a_folder_in_the_project_layout_round_trips(tmp_path: Path) -> None:
    """A simulation's folder (touchpoints, profiles, decisions) imports unchanged: nothing dropped, same rows."""
    from training.simulate import SimConfig, simulate, write

    sim = write(simulate(SimConfig(customers=40, days=12, seed=4)), tmp_path / "sim")
    before = sources.load(str(sim))
    q = run(
        [str(sim / "touchpoints.parquet"), str(sim / "profiles.parquet"), str(sim / "decisions.parquet")],
        Options(out=tmp_path / "out"),
    ).quality
    after = sources.load(str(tmp_path / "out"))
    assert q["dropped"] == {}
    assert q["rows_kept"] == before.touchpoints.num_rows == after.touchpoints.num_rows
    assert before.profiles is not None
    assert after.profiles is not None
    assert before.decisions is not None
    assert after.decisions is not None
    assert q["profiles"] == before.profiles.num_rows == after.profiles.num_rows
    assert q["decisions"] == before.decisions.num_rows == after.decisions.num_rows
    assert profiles_map(after.profiles) == profiles_map(before.profiles)
    a = normalise_touchpoints(before.touchpoints).sort("event_id")
    b = normalise_touchpoints(after.touchpoints).sort("event_id")
    assert a.equals(b)
