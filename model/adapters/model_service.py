"""The process-wide model in service: the scoring predictor wired to the configured model store (local or S3)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

from model.adapters.registry import ModelStore
from model.domain.settings import get_settings
from model.scoring.predictor import Predictor


def predictor_for(
    store_uri: str, refresh_seconds: float | None = None, clock: Callable[[], float] = time.monotonic
) -> Predictor:
    """A predictor reading CURRENT from the store at `store_uri` (a folder or s3://bucket/prefix)."""
    return Predictor(lambda: ModelStore.from_uri(store_uri), refresh_seconds, clock)


@lru_cache(maxsize=1)
def get_predictor() -> Predictor:
    """The process-wide predictor (a Lambda container keeps it warm between invocations)."""
    return predictor_for(get_settings().model_store)
