"""Shared fixtures: moto in-process (`mocked_aws`) and moto's real HTTP server on 127.0.0.1 (`local_endpoint`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from model.adapters import aws
from model.adapters.table import ensure_table
from model.domain.settings import get_settings
from nbc.local.aws import FAKE_CREDENTIALS, LOCAL_READ_TIMEOUT, free_port

for _key, _value in FAKE_CREDENTIALS.items():
    os.environ[_key] = _value
# pytest -n 2 runs two workers on two cores, each already a core's worth of work (and other jobs may share the
# machine): threads inside a worker only oversubscribe. Set before numpy or LightGBM is loaded (none of the imports
# above loads them), inherited by the subprocesses (Dask workers, `nbc serve`):
# - OpenMP (LightGBM's libgomp) threads that wait sleep instead of spinning: `nbc train`'s default 2 threads took
#   92-96 s for a 1.2-1.4 s fit (300 customers x 40 days) with the cores busy; results are the same, only the waiting
#   changes.
# - numpy's OpenBLAS runs in the calling thread: one gate evaluation 21 s -> 14 s under load.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.pop("NBC_AWS_ENDPOINT_URL", None)
os.environ.pop("NBC_API_KEY", None)


def _reset() -> None:
    get_settings.cache_clear()
    aws.reset_clients()


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[None]:
    """Every test gets its own table name and model store, and settings re-read from the environment."""
    monkeypatch.setenv("NBC_TABLE_NAME", f"nbc-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("NBC_MODEL_STORE", str(tmp_path) + "/models")
    _reset()
    yield
    _reset()


@pytest.fixture
def mocked_aws() -> Iterator[None]:
    """In-process moto (unit tests), with the table created."""
    with mock_aws():
        _reset()
        ensure_table()
        yield
    _reset()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def local_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """moto's server over real HTTP (integration tests), with a fresh table for this test. With the read timeout
    that `nbc serve` gives its embedded moto: in this process, under load, moto can take seconds to answer."""
    monkeypatch.setenv("NBC_AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("NBC_AWS_READ_TIMEOUT", LOCAL_READ_TIMEOUT)
    _reset()
    ensure_table()
    return moto_server
