"""The configuration file and environment: merging into the defaults, clear errors, the hash, `nbc config check`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from model.domain import settings as settings_module
from model.domain.catalogue import catalogue
from model.domain.settings import DEFAULT_COSTS, get_settings, read_config, reload_settings, use_config, use_config_text

FULL = """
exploration_rate = 0.1
holdout_share = 0.02
[quiet_hours]
start = "22:00"
end = "07:30"
[channels]
whatsapp = 0.004
[channels.push]
cost = 0.003
opt_in = true
quiet_hours = { start = "20:00", end = "09:00" }
[channels.call_center]
enabled = false
[caps]
total_week = 5
[[messages]]
id = "xmas-2026"
channels = ["email", "push"]
cost = 0.01
valid_from = 2026-12-01
valid_until = 2026-12-24
tags = ["seasonal"]
[[messages]]
id = "discount"
channels = ["email"]
[attributes]
job = { kind = "categorical", levels = ["admin", "technician"] }
"""


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No configuration file or remote document from elsewhere; settings and catalogue re-read after."""
    monkeypatch.setenv("NBC_CONFIG", "")  # no files; restored after (use_config sets it directly)
    monkeypatch.chdir(Path(__file__).parent)  # no ./nbc.toml here
    monkeypatch.setattr(settings_module, "_REMOTE", {})
    reload_settings()
    yield
    reload_settings()


def write(tmp_path: Path, text: str, name: str = "nbc.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def configure(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> None:
    monkeypatch.setenv("NBC_CONFIG", ":".join(str(p) for p in paths))
    reload_settings()


def test_channels_from_the_environment_as_a_comma_separated_or_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_CHANNELS", "email, sms")
    reload_settings()
    assert get_settings().channels == ("email", "sms")
    monkeypatch.setenv("NBC_CHANNELS", '["push", "email"]')
    reload_settings()
    assert get_settings().channels == ("push", "email")
    assert catalogue().names == ("push", "email")


def test_a_partial_cost_table_merges_into_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_CHANNEL_COSTS", '{"sms": 0.02}')
    reload_settings()
    s = get_settings()
    assert s.cost_of("sms") == 0.02
    assert s.cost_of("email") == DEFAULT_COSTS["email"]
    assert s.cost_of("call_center") == DEFAULT_COSTS["call_center"]


def test_a_channel_without_a_cost_is_an_error_that_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_CHANNELS", "email,whatsapp")
    reload_settings()
    with pytest.raises(ValidationError, match="no cost for channel whatsapp"):
        get_settings()
    monkeypatch.setenv("NBC_CHANNEL_COSTS", '{"whatsapp": 0.004}')
    reload_settings()
    assert get_settings().cost_of("whatsapp") == 0.004


def test_the_file_declares_channels_consent_quiet_hours_caps_messages_attributes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configure(monkeypatch, write(tmp_path, FULL))
    s = get_settings()
    assert s.channels == ("email", "sms", "push", "in_app", "web", "direct_mail", "paid_social", "whatsapp")
    assert s.cost_of("whatsapp") == 0.004
    assert s.cost_of("push") == 0.003
    assert s.cost_of("sms") == DEFAULT_COSTS["sms"]
    assert set(s.consent_required) == {"sms", "push", "call_center"}
    assert s.quiet_window("push") is not None
    assert s.quiet_window("push").label() == "20:00-09:00"
    assert s.quiet_window("email") is None
    assert (s.default_quiet_start, s.default_quiet_end) == ("22:00", "07:30")
    assert (s.caps.total_week, s.caps.total_day, s.caps.per_channel_day) == (5, 2, 1)  # the rest: defaults
    assert s.exploration_rate == 0.1
    assert s.holdout_share == 0.02
    xmas = s.message_catalogue["xmas-2026"]
    assert xmas.channels == ("email", "push")
    assert xmas.cost == 0.01
    assert xmas.covers(datetime(2026, 12, 24, 23, 59, tzinfo=UTC).timestamp())  # valid_until: through that day
    assert not xmas.covers(datetime(2026, 12, 25, tzinfo=UTC).timestamp())
    assert not xmas.covers(datetime(2026, 11, 30, 23, 59, tzinfo=UTC).timestamp())
    assert s.message_catalogue["discount"].cost == 0.0
    assert [a.name for a in s.profile_attributes][-1] == "job"


def test_environment_variables_override_single_values_of_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NBC_EXPLORATION_RATE", "0.3")
    monkeypatch.setenv("NBC_CAPS__TOTAL_DAY", "4")
    monkeypatch.setenv("NBC_CHANNEL_COSTS", '{"email": 0.005}')
    configure(monkeypatch, write(tmp_path, FULL))
    s = get_settings()
    assert s.exploration_rate == 0.3
    assert (s.caps.total_day, s.caps.total_week) == (4, 5)  # the file's total_week stays
    assert s.cost_of("email") == 0.005
    assert s.cost_of("whatsapp") == 0.004


def test_the_form_nbc_import_writes_is_still_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write(tmp_path, '[channels]\nwhatsapp = 0.004\nemail = 0.003\n[attributes]\nage = "numeric"\n')
    values = read_config([path], texts={})
    assert values["channel_costs"]["whatsapp"] == 0.004
    use_config(path)
    s = get_settings()
    assert s.cost_of("email") == 0.003
    assert "whatsapp" in catalogue()
    assert any(a.name == "age" and a.kind == "numeric" for a in s.profile_attributes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("explorate_rate = 0.1\n", "unknown key 'explorate_rate' (did you mean 'exploration_rate'?)"),
        ("[channels.push]\ncolour = 'red'\n", "channels.push.colour: unknown key"),
        ("[channels.push]\ncost = -1\n", "channels.push.cost: Input should be greater than or equal to 0"),
        ("[quiet_hours]\nstart = '25:00'\nend = '07:00'\n", "quiet_hours.start: '25:00' is not a time of day"),
        ("[quiet_hours]\nstart = '21:00Z'\nend = '07:00'\n", "no 'Z' or offset"),
        ("[caps]\nper_week = 3\n", "caps.per_week"),
        (
            "[[messages]]\nid = 'a'\nchannels = ['email']\nvalid_from = 2026-12-02\nvalid_until = 2026-12-01\n",
            "valid_from must be before valid_until",
        ),
        ("[[messages]]\nid = 'a'\nchannels = ['email']\nprice = 1\n", "messages.0.price: unknown key"),
        ("api_key = 'secret'\n", "unknown key 'api_key'"),
        ("[channels.push]\ncost = 1\nenabled = false\n", "channels.push: a channel with enabled = false takes no"),
        ("channels = [\n", "not valid TOML"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"nbc\.toml") as err:
        read_config([write(tmp_path, text)], texts={})
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[messages]]\nid = 'a'\nchannels = ['fax']\n", "message 'a': unknown channel 'fax'"),
        (
            "[[messages]]\nid = 'a'\nchannels = ['email']\nvalid_from = 2026-12-01\nvalid_until = 2026-12-10\n"
            "[[messages]]\nid = 'a'\nchannels = ['email']\nvalid_from = 2026-12-05\nvalid_until = 2026-12-20\n",
            "message 'a': its declared dates overlap",
        ),
        (
            "[[messages]]\nid = 'a'\nchannels = ['email']\n[[messages]]\nid = 'a'\nchannels = ['push']\n",
            "declared twice with different channels or cost",
        ),
    ],
)
def test_inconsistent_configurations_are_refused_naming_what(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, message: str
) -> None:
    configure(monkeypatch, write(tmp_path, text))
    with pytest.raises(ValidationError, match=message):
        get_settings()


def test_quiet_hours_of_an_unknown_channel_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_CHANNEL_QUIET_HOURS", '{"fax": {"start": "20:00", "end": "09:00"}}')
    reload_settings()
    with pytest.raises(ValidationError, match="quiet hours for unknown channel fax"):
        get_settings()


def test_a_message_may_return_in_disjoint_windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = (
        "[[messages]]\nid = 'sale'\nchannels = ['email']\nvalid_from = 2026-06-01\nvalid_until = 2026-06-30\n"
        "[[messages]]\nid = 'sale'\nchannels = ['email']\nvalid_from = 2026-11-20\nvalid_until = 2026-11-30\n"
    )
    configure(monkeypatch, write(tmp_path, text))
    sale = get_settings().message_catalogue["sale"]
    assert sale.covers(datetime(2026, 6, 15, tzinfo=UTC).timestamp())
    assert not sale.covers(datetime(2026, 9, 1, tzinfo=UTC).timestamp())
    assert sale.covers(datetime(2026, 11, 25, tzinfo=UTC).timestamp())


def test_a_later_file_overrides_an_earlier_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = write(tmp_path, FULL, "a.toml")
    second = write(
        tmp_path, "[channels.push]\ncost = 0.002\n[[messages]]\nid = 'xmas-2026'\nchannels = ['push']\n", "b.toml"
    )
    configure(monkeypatch, first, second)
    s = get_settings()
    assert s.cost_of("push") == 0.002
    assert s.cost_of("whatsapp") == 0.004
    assert s.message_catalogue["xmas-2026"].channels == ("push",)  # the later entries of an id replace earlier ones
    assert "discount" in s.message_catalogue


def test_config_hash_covers_the_domain_configuration_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    base = get_settings().config_hash()
    monkeypatch.setenv("NBC_AWS_READ_TIMEOUT", "5")  # wiring, not domain
    reload_settings()
    assert get_settings().config_hash() == base
    for name, value in [
        ("NBC_CHANNEL_COSTS", '{"email": 0.003}'),
        ("NBC_HOLDOUT_SHARE", "0.1"),
        ("NBC_CAPS__TOTAL_DAY", "3"),
        ("NBC_CONSENT_REQUIRED", "sms"),
    ]:
        monkeypatch.setenv(name, value)
        reload_settings()
        assert get_settings().config_hash() != base, name
        monkeypatch.delenv(name)
    reload_settings()
    assert get_settings().config_hash() == base
    configure(monkeypatch, write(tmp_path, "[[messages]]\nid = 'a'\nchannels = ['email']\n"))
    assert get_settings().config_hash() != base


def test_a_document_given_as_text_sits_above_files_and_an_invalid_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configure(monkeypatch, write(tmp_path, FULL))
    use_config_text("[channels.push]\ncost = 0.009\n", origin="s3://bucket/nbc.toml")
    assert get_settings().cost_of("push") == 0.009
    assert get_settings().cost_of("whatsapp") == 0.004  # the file's declarations stay
    with pytest.raises(ValueError, match=r"s3://bucket/nbc\.toml: message 'a': unknown channel 'fax'"):
        use_config_text("[[messages]]\nid = 'a'\nchannels = ['fax']\n", origin="s3://bucket/nbc.toml")
    assert get_settings().cost_of("push") == 0.009  # the previous document is back in force


def test_default_quiet_hours_from_the_environment_must_be_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_DEFAULT_QUIET_START", "9pm")
    reload_settings()
    with pytest.raises(ValidationError, match="'9pm' is not a time of day"):
        get_settings()
    monkeypatch.setenv("NBC_DEFAULT_QUIET_START", "21:30")
    reload_settings()
    assert get_settings().default_quiet.start == time(21, 30)


# --- nbc config check / show ------------------------------------------------------------------------------


def test_nbc_config_check_prints_a_summary_or_the_errors(tmp_path: Path) -> None:
    from nbc.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["config", "check", str(write(tmp_path, FULL))])
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output
    assert "whatsapp" in ok.output
    assert "xmas-2026" in ok.output
    assert "20:00-09:00" in ok.output
    assert "config_hash" in ok.output
    bad = runner.invoke(app, ["config", "check", str(write(tmp_path, "[channels.push]\ncots = 1\n", "bad.toml"))])
    assert bad.exit_code == 1
    assert "channels.push.cots: unknown key" in bad.output
    unknown = runner.invoke(
        app, ["config", "check", str(write(tmp_path, "[[messages]]\nid='a'\nchannels=['fax']\n", "c.toml"))]
    )
    assert unknown.exit_code == 1
    assert "unknown channel 'fax'" in unknown.output
    missing = runner.invoke(app, ["config", "check", str(tmp_path / "absent.toml")])
    assert missing.exit_code == 1
    assert "absent.toml" in missing.output


def test_nbc_config_check_ignores_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nbc.cli import app

    monkeypatch.setenv("NBC_CHANNELS", "email,whatsapp")  # invalid here (no cost), not part of the file
    result = CliRunner().invoke(app, ["config", "check", str(write(tmp_path, "exploration_rate = 0.2\n"))])
    assert result.exit_code == 0, result.output


def test_nbc_config_show_prints_the_merged_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import json

    from nbc.cli import app

    configure(monkeypatch, write(tmp_path, FULL))
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0.04")
    reload_settings()
    result = CliRunner().invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["holdout_share"] == 0.04
    assert shown["costs"]["whatsapp"] == 0.004
    assert shown["config_hash"] == get_settings().config_hash()


def test_the_example_configuration_is_valid() -> None:
    from nbc.cli import app

    example = Path(__file__).parents[2] / "nbc.example.toml"
    result = CliRunner().invoke(app, ["config", "check", str(example)])
    assert result.exit_code == 0, result.output
    assert "xmas-2026" in result.output
