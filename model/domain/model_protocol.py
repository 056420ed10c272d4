"""What the decision needs from a trained model (the `Model` protocol); the scorer in model/scoring provides it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from model.domain.features import FeatureLayout
from model.domain.manifest import Unsupported
from model.domain.value import ValuePrior

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GridPrediction:
    proba: FloatArray  # P(outcome) per grid cell
    explain: Callable[[Sequence[Sequence[int]]], FloatArray]  # cells -> (n, n_features + 1) contributions


class Model(Protocol):
    """A trained model as the decision sees it: its version, feature layout, message levels and grid scores."""

    @property
    def version(self) -> str: ...

    @property
    def layout(self) -> FeatureLayout: ...

    @property
    def message_levels(self) -> list[str]: ...

    @property
    def no_contact(self) -> bool:
        """Whether the model also scores "don't contact" (it learned from logged no-contact decisions)."""
        ...

    @property
    def objective(self) -> str:
        """What predictions mean: click | visit | conversion probabilities, or value (model.domain.objective)."""
        ...

    @property
    def value_prior(self) -> ValuePrior | None:
        """The learned prior of a customer's order value (model.domain.value); None for older models."""
        ...

    @property
    def unsupported(self) -> Unsupported:
        """Channels and messages no training send tried (they get the prior, not a prediction)."""
        ...

    def predict_grid(self, groups: list[npt.NDArray[np.float64]]) -> GridPrediction:
        """P(outcome) of every combination of the groups' rows (customer x channel x slot x message)."""
        ...
