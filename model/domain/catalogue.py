"""The channel catalogue (which channels exist, in what order) and the check of requested message ids against
the configured message catalogue."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def check_messages(channel: str, ids: Iterable[str]) -> None:
    """With a message catalogue declared, every requested id must be in it and offered on `channel`; raises
    ValueError naming the id. Without a catalogue any id is accepted (an id the model never saw is scored as
    "no message": model.domain.features.message_features)."""
    listed = get_settings().message_catalogue
    if not listed:
        return
    for mid in ids:
        entry = listed.get(mid)
        if entry is None:
            raise ValueError(f"unknown message id {mid!r}: not in the message catalogue")
        if channel not in entry.channels:
            raise ValueError(f"message {mid!r} is not offered on {channel}; its channels: {', '.join(entry.channels)}")
