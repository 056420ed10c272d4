"""The whole HTTP API in one app (ingest + scoring route groups): what `nbc serve` runs and what docs/openapi.json
publishes. On Lambda each route group runs in its own function (functions/*/app.py) with the same routers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from functions.common.http import create_app


def build_app() -> FastAPI:
    """The app of every route group; the routers are imported here, after the caller has set the environment."""
    from functions.ingest.app import router as ingest_router
    from functions.score.app import router as score_router

    return create_app(ingest_router, score_router)


def openapi_document() -> dict[str, Any]:
    return build_app().openapi()


def openapi_text() -> str:
    """The published schema, serialised deterministically (the committed docs/openapi.json is this text)."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 8080, timeout: float = 10.0) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread; yield its base URL; stop it on exit."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="nbc-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the HTTP server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
