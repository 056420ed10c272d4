"""A campaign response table imports with a mapping and trains end to end; every failure of a source is one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model.domain.settings import reload_settings, use_config
from nbc.cli import app
from tests.unit.test_import import CAMPAIGN_HEADER, CAMPAIGN_MAPPING, campaign_rows, write_csv
from training import dataset, sources, train
from training.importer.times import parse_as_of


@pytest.fixture(autouse=True)
def _own_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NBC_CONFIG", "")
    reload_settings()
    yield
    reload_settings()


def _campaign(tmp_path: Path, n: int = 400, **changes: str) -> tuple[Path, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = campaign_rows(n, seed=11)
    for row in rows:
        if "y" in changes:
            row[5] = changes["y"]
            row[6] = ""
    src = write_csv(tmp_path / "campaign.csv", rows, CAMPAIGN_HEADER)
    (tmp_path / "mapping.toml").write_text(CAMPAIGN_MAPPING)
    return src, tmp_path / "mapping.toml"


def _import(tmp_path: Path, src: Path, mapping: Path, *extra: str) -> Path:
    out = tmp_path / "data"
    res = CliRunner().invoke(app, ["import", str(src), "--out", str(out), "--mapping", str(mapping), *extra])
    assert res.exit_code == 0, res.output
    return out


def _train(tmp_path: Path, data: Path, *extra: str) -> tuple[int, str]:
    args = ["train", "--source", str(data), "--store", str(tmp_path / "models"), "--max-decisions", "200", *extra]
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.output


def test_campaign_response_table_imports_and_trains(tmp_path: Path) -> None:
    src, mapping = _campaign(tmp_path)
    data = _import(tmp_path, src, mapping, "--as-of", "2026-03-20")  # the end of the observation window
    quality = json.loads((data / "quality.json").read_text())
    assert quality["rows_read"] == 400
    assert quality["dropped"] == {}
    assert quality["as_of"] == "2026-03-20T00:00:00Z"
    # One campaign: every send at the same instant, so the split is by customer.
    code, out = _train(tmp_path, data, "--split", "customer")
    assert code == 0, out
    assert "rows read" in out  # quality.json printed at the start of training
    assert "dataset: started" in out
    assert "train: done" in out
    assert "model: direct" in out  # the report's last line says which model was trained
    (version,) = [p for p in (tmp_path / "models").iterdir() if p.is_dir()]
    report = json.loads((version / "report.json").read_text())
    assert report["training"]["model"].startswith("direct")
    assert "no funnel" in report["training"]["model"]
    assert report["training"]["rows_train"] > 0
    manifest = json.loads((version / "manifest.json").read_text())
    assert "mobile_call" in manifest["channels"]
    assert "attr_age" in manifest["features"]
    assert "attr_job" in manifest["features"]
    assert "Model: direct" in (version / "report.html").read_text()


def test_the_funnel_needs_clicks(tmp_path: Path) -> None:
    """Attributed labels on data without clicks: the direct model, and the result says why."""
    src, mapping = _campaign(tmp_path, n=300)
    data = _import(tmp_path, src, mapping, "--as-of", "2026-03-20")
    use_config(data / "nbc.toml")
    s = sources.load(str(data))
    ts = dataset.build(
        s.touchpoints,
        s.profiles,
        None,
        split="customer",
        as_of=parse_as_of("2026-03-20").timestamp(),
        labels="attributed",
        max_contexts=20,
    )
    assert not train.has_clicks(ts)
    result = train.train_funnel(ts, params={"num_threads": 1})
    assert result.engine == "local"
    assert result.model == "direct (the training sends have no clicks, so no funnel)"


def test_source_failures_are_one_line_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, mapping = _campaign(tmp_path, n=120)
    data = _import(tmp_path, src, mapping)  # no --as-of: the data ends two days after the sends

    def one_line(code: int, out: str, *needles: str) -> None:
        assert code == 2, out
        last = out.strip().splitlines()[-1]
        assert last.startswith("error: ")
        assert "Traceback" not in out
        for needle in needles:
            assert needle in last

    one_line(*_train(tmp_path, data, "--split", "customer"), "attribution window", "--as-of")
    one_line(*_train(tmp_path, data, "--as-of", "2026-03-20"), "one instant", "--split customer")
    one_line(*_train(tmp_path, data, "--as-of", "2026-03-20", "--split", "customer", "--window-days", "1"), "positive")

    from lightgbm.basic import LightGBMError

    import training.train as train_mod

    def crash(*args: object, **kwargs: object) -> None:
        raise LightGBMError("Check failed: (num_data) > (0) at /src/io/dataset.cpp, line 39 .")

    monkeypatch.setattr(train_mod, "train_local", crash)
    one_line(*_train(tmp_path, data, "--as-of", "2026-03-20", "--split", "customer"), "too little data")

    none_src, _ = _campaign(tmp_path / "none", n=60, y="no")
    no_conv = tmp_path / "none" / "data"
    res = CliRunner().invoke(app, ["import", str(none_src), "--out", str(no_conv), "--mapping", str(mapping)])
    assert res.exit_code == 0, res.output
    one_line(*_train(tmp_path, no_conv, "--as-of", "2026-03-20"), "no conversion", "--objective click")

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "touchpoints.ndjson").write_text("")
    one_line(*_train(tmp_path, empty), "no touchpoints", "nbc import")
    (empty / "touchpoints.ndjson").write_text(json.dumps({"cust": "a", "when": "2026-01-01"}) + "\n")
    one_line(*_train(tmp_path, empty), "customer_id", "--mapping")
