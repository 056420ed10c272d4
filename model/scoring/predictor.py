"""The model in service: CURRENT from a model source, refreshed on a TTL, never an exception for the caller.

The source is anything with ``current()``, ``manifest(version)`` and ``read(version, name) -> bytes`` (the
registry of model/adapters provides it): this module is handed bytes, it never opens a store itself.

Load order for a version: its compiled scorer (``manifest.files["compiled"]``, an .npz made at promotion) if
present; else the LightGBM text model, but only where ``lightgbm`` is importable (never in the scoring
Lambda, whose artifact has no scipy); else nothing. A version that is missing, corrupt or built for other
features is refused and the last good model stays in service; with no model at all the caller uses the
transparent heuristic (policy ``fallback``).

Reasons use ONE attribution method on both paths: the path attributions (Saabas) of the trees, on the
LightGBM path from the booster's own dump flattened at load, so a model explains its choices the same way
whichever path loaded it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from model.domain.features import CHANNEL_FEATURES, MESSAGE_FEATURES, SLOT_FEATURES, FeatureLayout
from model.domain.manifest import Manifest, Unsupported
from model.domain.model_protocol import GridPrediction
from model.domain.recommend_schemas import NONE_CHANNEL
from model.domain.settings import AttributeSpec, get_settings
from model.domain.value import ValuePrior
from model.scoring.tree_scorer import FloatArray, TreeScorer, grid_rows

COMPILED_KEY = "compiled"
LIGHTGBM_KEY = "lightgbm"
DEFAULT_LIGHTGBM_FILE = "model.txt"
RETRY_SECONDS = 30.0  # a refused version is re-read at most this often


class ModelSource(Protocol):
    """Where versions come from (a ModelStore: local folder or S3)."""

    def current(self) -> str | None: ...

    def manifest(self, version: str) -> Manifest: ...

    def read(self, version: str, name: str) -> bytes: ...


class ModelLoadError(Exception):
    """A model version that cannot serve (missing file, corrupt bytes, incompatible features)."""


def layout_for(manifest: Manifest) -> FeatureLayout:
    """The feature layout the model was trained with: declared attributes, levels as the manifest saved them."""
    specs = []
    for spec in get_settings().profile_attributes:
        levels = manifest.levels.get(f"attr_{spec.name}", manifest.levels.get(spec.name, spec.levels))
        specs.append(AttributeSpec(name=spec.name, kind=spec.kind, levels=list(levels)))
    layout = FeatureLayout(tuple(specs))
    if list(manifest.channels) != list(get_settings().channels):
        raise ModelLoadError(
            f"model {manifest.version} was trained on channels {manifest.channels}; the catalogue is now "
            f"{list(get_settings().channels)} (channel codes would not match)"
        )
    if list(layout.names) != list(manifest.features):
        raise ModelLoadError(
            f"model {manifest.version} expects features {manifest.features}, this code builds {list(layout.names)}"
        )
    return layout


def group_widths(layout: FeatureLayout) -> tuple[int, int, int, int]:
    """Widths of the customer | channel | slot | message feature groups, in model order."""
    return (len(layout.customer), len(CHANNEL_FEATURES), len(SLOT_FEATURES), len(MESSAGE_FEATURES))


@dataclass
class LoadedModel:
    version: str
    manifest: Manifest
    kind: str  # "compiled" | "lightgbm"
    layout: FeatureLayout
    scorer: TreeScorer | None = None
    booster: Any = None
    explainer: TreeScorer | None = None  # the LightGBM path's trees, flattened: the same attributions
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def message_levels(self) -> list[str]:
        return list(self.manifest.levels.get("message", []))

    @property
    def no_contact(self) -> bool:
        return NONE_CHANNEL in self.manifest.levels.get("channel", [])

    @property
    def objective(self) -> str:
        return self.manifest.objective

    @property
    def unsupported(self) -> Unsupported:
        return self.manifest.unsupported

    @property
    def value_prior(self) -> ValuePrior | None:
        return self.manifest.value_prior

    @property
    def widths(self) -> tuple[int, int, int, int]:
        return group_widths(self.layout)

    def predict_grid(self, groups: list[npt.NDArray[np.float64]]) -> GridPrediction:
        """P(convert) of every grid cell, and a way to explain chosen cells (feature contributions)."""
        if self.scorer is not None:
            scores = self.scorer.grid(groups)
            return GridPrediction(self.scorer.transform(scores.raw), scores.contributions)
        sizes = [len(g) for g in groups]
        rows = grid_rows(groups)
        proba = np.asarray(self.booster.predict(rows), dtype=np.float64).reshape(sizes)

        def explain(cells: Sequence[Sequence[int]]) -> FloatArray:
            picked = rows[[int(np.ravel_multi_index(tuple(c), sizes)) for c in cells]]
            return self.contributions(picked)

        return GridPrediction(proba, explain)

    def grid_proba(self, groups: list[npt.NDArray[np.float64]]) -> FloatArray:
        """P(convert) of every combination of the groups' rows (customer x channel x slot x message)."""
        if self.scorer is not None:
            return self.scorer.transform(self.scorer.grid_raw(groups))
        sizes = [len(g) for g in groups]
        out: FloatArray = np.asarray(self.booster.predict(grid_rows(groups)), dtype=np.float64).reshape(sizes)
        return out

    def contributions(self, rows: npt.NDArray[np.float64]) -> FloatArray:
        """Per-feature path attributions (last column: bias) of full rows, summing to the raw score; the same
        method on the compiled and the LightGBM path."""
        trees = self.scorer if self.scorer is not None else self.explainer
        if trees is None:
            raise ModelLoadError(f"model {self.version} has no trees to explain with")
        return trees.contributions(rows)


def load_version(source: ModelSource, version: str) -> LoadedModel:
    """Load one version for serving; raises ModelLoadError with the reason."""
    try:
        manifest = source.manifest(version)
    except Exception as exc:
        raise ModelLoadError(f"manifest of {version} unreadable: {exc}") from exc
    return load_model(manifest, lambda name: source.read(version, name))


def load_model(manifest: Manifest, read: Callable[[str], bytes]) -> LoadedModel:
    """A model from its manifest and its files' bytes (``read(file name)``); raises ModelLoadError."""
    version = manifest.version
    layout = layout_for(manifest)
    compiled = manifest.files.get(COMPILED_KEY)
    if compiled:
        try:
            scorer = TreeScorer.from_bytes(read(compiled))
        except Exception as exc:
            raise ModelLoadError(f"compiled model of {version} unusable: {exc}") from exc
        if scorer.n_features != len(layout.names):
            raise ModelLoadError(f"compiled model of {version} has {scorer.n_features} features")
        try:
            scorer.prepare(group_widths(layout))  # the grid path's tables, here rather than in the first request
        except Exception as exc:
            raise ModelLoadError(f"compiled model of {version} unusable: {exc}") from exc
        return LoadedModel(version, manifest, "compiled", layout, scorer=scorer)
    try:  # only where lightgbm is installed (training, tests), never in the scoring Lambda
        import lightgbm as lgb
    except ImportError:
        raise ModelLoadError(f"model {version} is not compiled and lightgbm is not installed here") from None
    try:
        text = read(manifest.files.get(LIGHTGBM_KEY, DEFAULT_LIGHTGBM_FILE)).decode()
        booster = lgb.Booster(model_str=text)
    except Exception as exc:
        raise ModelLoadError(f"LightGBM model of {version} unusable: {exc}") from exc
    if booster.num_feature() != len(layout.names):
        raise ModelLoadError(f"LightGBM model of {version} has {booster.num_feature()} features")
    try:
        explainer = TreeScorer.from_dump(booster.dump_model())
    except Exception as exc:  # what promotion could not compile either
        raise ModelLoadError(f"LightGBM model of {version} cannot be explained: {exc}") from exc
    return LoadedModel(version, manifest, "lightgbm", layout, booster=booster, explainer=explainer)


_LOG = logging.getLogger(__name__)
_warned: set[str] = set()  # versions already warned about (once per version and process)


def warn_config_drift(manifest: Manifest) -> bool:
    """Log a warning, once per version, when the model was trained under another configuration than the one
    served (costs, rules, messages, ...): its policy value was measured for other rules. True when it differs."""
    if manifest.config_matches(get_settings().config_hash()) is not False:
        return False
    if manifest.version not in _warned:
        _warned.add(manifest.version)
        _LOG.warning(
            "model %s was trained under configuration %s; this service runs %s (nbc config show)",
            manifest.version,
            manifest.config_hash,
            get_settings().config_hash(),
        )
    return True


class Predictor:
    """Holds the model in service; `model()` refreshes from CURRENT at most every `refresh_seconds`."""

    def __init__(
        self,
        open_source: Callable[[], ModelSource],
        refresh_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_source = open_source
        self.refresh_seconds = get_settings().model_refresh_seconds if refresh_seconds is None else refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._model: LoadedModel | None = None
        self._checked: float | None = None
        self.checked_at: datetime | None = None
        self.last_error: str | None = None
        self._failed_version: str | None = None
        self._failed_at = 0.0

    def model(self) -> LoadedModel | None:
        now = self._clock()
        if self._checked is None or now - self._checked >= self.refresh_seconds:
            with self._lock:
                if self._checked is None or now - self._checked >= self.refresh_seconds:
                    self._refresh()
                    self._checked = now
        return self._model

    def _refresh(self) -> None:
        self.checked_at = datetime.now(UTC)
        try:
            store = self._open_source()
            version = store.current()
        except Exception as exc:  # an unreachable store keeps the model in service
            self.last_error = f"model store unreadable: {exc}"
            return
        if version is None:
            self.last_error = None if self._model else "no CURRENT model in the store"
            return
        if self._model is not None and self._model.version == version:
            return
        if version == self._failed_version and self._clock() - self._failed_at < max(
            self.refresh_seconds, RETRY_SECONDS
        ):
            return  # refused recently; a version can be repaired in place (e.g. compiled after promotion)
        try:
            self._model = load_version(store, version)
            warn_config_drift(self._model.manifest)
            self.last_error = None
            self._failed_version = None
        except Exception as exc:
            self.last_error = str(exc)
            self._failed_version, self._failed_at = version, self._clock()

    def force_refresh(self) -> LoadedModel | None:
        self._checked = None
        self._failed_version = None
        return self.model()
