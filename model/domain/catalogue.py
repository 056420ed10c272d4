"""The channel catalogue: the one place that knows which channels exist and in what order."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from model.domain.settings import get_settings


class Catalogue:
    """Ordered channel names with O(1) name -> index lookup (indices are feature codes)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names: tuple[str, ...] = tuple(names)
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.index

    def code(self, name: str) -> int:
        try:
            return self.index[name]
        except KeyError:
            raise ValueError(f"unknown channel {name!r}; known channels: {', '.join(self.names)}") from None


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    return Catalogue(get_settings().channels)
