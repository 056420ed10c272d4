"""The hostile suite: a live `nbc serve` attacked from outside (concurrent clients, then schemathesis).

One server for the whole suite (its start-up is most of the cost on 2 cores); the concurrency test runs first
(file order), so that whatever the fuzzing leaves behind cannot disturb it. NBC_HOSTILE_MODEL_STORE points the
server at a trained model store (`make fuzz` builds one); without it the heuristic serves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.hostile.live import LiveServer, live_server


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers it too; without xdist (`-p no:xdist`, `make fuzz`) --strict-markers needs it here.
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one xdist worker (--dist loadgroup)")


@pytest.fixture(scope="session")
def server() -> Iterator[LiveServer]:
    with live_server(model_store=os.environ.get("NBC_HOSTILE_MODEL_STORE") or None) as live:
        yield live
