"""The configuration document in AWS (S3 object or SSM parameter), read once per process, against moto."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from model.adapters import config_source
from model.adapters.config_source import ConfigUnavailableError, load_configured
from model.domain import settings as settings_module
from model.domain.settings import get_settings, reload_settings

DOC = "holdout_share = 0.02\n[channels.push]\ncost = 0.004\n"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NBC_CONFIG", "")  # no files; restored after (use_config sets it directly)
    monkeypatch.delenv(config_source.LOCATION_ENV, raising=False)
    monkeypatch.setattr(settings_module, "_REMOTE", {})
    config_source.forget()
    with mock_aws():
        reload_settings()
        yield
    config_source.forget()
    reload_settings()


def put_object(text: str, key: str = "config/nbc.toml") -> str:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="cfg-bucket")
    s3.put_object(Bucket="cfg-bucket", Key=key, Body=text.encode())
    return f"s3://cfg-bucket/{key}"


def put_parameter(text: str, name: str = "/nbc/config") -> str:
    boto3.client("ssm", region_name="us-east-1").put_parameter(Name=name, Value=text, Type="SecureString")
    return name


def test_nothing_is_read_without_a_location() -> None:
    assert load_configured() is None
    assert get_settings().holdout_share == 0.05


def test_an_s3_object_is_read_once_and_put_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    location = put_object(DOC)
    monkeypatch.setenv(config_source.LOCATION_ENV, location)
    assert load_configured() == location
    s = get_settings()
    assert s.holdout_share == 0.02
    assert s.cost_of("push") == 0.004
    # Read once per process: a change in the bucket is seen at the next cold start, not mid-flight.
    put_object("holdout_share = 0.5\n")
    assert load_configured() == location
    assert get_settings().holdout_share == 0.02


def test_an_ssm_parameter_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config_source.LOCATION_ENV, put_parameter(DOC))
    load_configured()
    assert get_settings().cost_of("push") == 0.004


def test_environment_variables_still_override_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0.1")
    load_configured(put_parameter(DOC))
    assert get_settings().holdout_share == 0.1
    assert get_settings().cost_of("push") == 0.004


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("/nbc/absent", "configuration /nbc/absent unreadable: ParameterNotFound"),
        ("s3://cfg-bucket/absent.toml", "configuration s3://cfg-bucket/absent.toml unreadable"),
        ("s3://only-a-bucket", "expected s3://bucket/key"),
    ],
)
def test_an_unreadable_location_stops_with_a_clear_error(location: str, message: str) -> None:
    put_object(DOC)
    with pytest.raises(ConfigUnavailableError, match=message):
        load_configured(location)


def test_an_invalid_document_stops_naming_the_location_and_the_key() -> None:
    location = put_object("[channels.push]\ncots = 1\n")
    with pytest.raises(
        ConfigUnavailableError, match=r"s3://cfg-bucket/config/nbc\.toml: channels\.push\.cots: unknown key"
    ):
        load_configured(location)
    assert get_settings().cost_of("push") == 0.001  # nothing of it is in force
