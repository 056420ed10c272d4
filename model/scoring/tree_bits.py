"""Index and bitset helpers of the compiled scorer: CSR ranges, 64-bit words of flags, row deduplication.

The grid path (``tree_grid``) keeps its per-leaf and per-value flags as bits of uint64 words: which leaves
survive (64 leaves a word), which values of a feature group a leaf's splits agree with (a group's values
side by side in a word). These are the small operations on such words, and the hash-based deduplication
of agreement patterns; ``ranges`` gathers CSR rows (a leaf's path entries) for the row and grid paths.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from model.scoring.tree_format import BoolArray, IntArray

ALL = np.uint64(2**64 - 1)


def ranges(start: IntArray, items: IntArray) -> IntArray:
    """Concatenation of start[i]:start[i + 1] for i in items (CSR rows), as one index array."""
    lo, hi = start[items], start[items + 1]
    lens = hi - lo
    total = int(lens.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(lo - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
    out: IntArray = offsets + np.arange(total)
    return out


# Odd 64-bit multipliers for multiplicative hashing (golden ratio and two other well-mixed constants).
_HASH_MULTIPLIERS = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))


def unique_rows(words: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.uint64], IntArray]:
    """Distinct rows of a (n, words) array (in no particular order) and, per row, the index of its distinct row.

    One word per row (the usual case) is deduplicated by hashing, not sorting: sorting a few thousand keys
    costs ~20 ns per key here, a hash pass a few. Each key is hashed into a table of buckets; a bucket keeps
    one of the keys that fell in it, the rows holding that key are resolved, and the rows of colliding keys
    go round again with another multiplier (np.unique after that: never needed in practice)."""
    if words.shape[1] != 1:
        keys, inverse = np.unique(words, axis=0, return_inverse=True)
        return keys, inverse.reshape(-1)
    keys = words[:, 0]
    todo: IntArray | None = None  # rows still unresolved (None: all of them, in the first round)
    inverse = np.empty(len(keys), dtype=np.int64)
    found: list[npt.NDArray[np.uint64]] = []
    count = 0
    for multiplier in _HASH_MULTIPLIERS:
        bits = min(16, max(6, (2 * len(keys)).bit_length()))  # buckets >= 2 x rows: few collisions
        bucket = ((keys * multiplier) >> np.uint64(64 - bits)).view(np.int64)  # the product wraps on purpose
        held = np.zeros(1 << bits, dtype=np.uint64)
        held[bucket] = keys  # one of the bucket's keys (which one does not matter)
        hit = held[bucket] == keys
        done = bool(hit.all())
        used = np.zeros(1 << bits, dtype=bool)
        used[bucket if done else bucket[hit]] = True
        distinct = np.flatnonzero(used)
        index = np.empty(1 << bits, dtype=np.int64)
        index[distinct] = np.arange(count, count + len(distinct))
        found.append(held[distinct])
        count += len(distinct)
        if done and todo is None:
            return found[0][:, None], index[bucket]
        rows = np.arange(len(keys)) if todo is None else todo
        if done:
            inverse[rows] = index[bucket]
            return np.concatenate(found)[:, None], inverse
        inverse[rows[hit]] = index[bucket[hit]]
        todo, keys = rows[~hit], keys[~hit]
    rest, rest_inverse = np.unique(keys, return_inverse=True)
    assert todo is not None
    inverse[todo] = rest_inverse.reshape(-1) + count
    return np.concatenate([*found, rest])[:, None], inverse


def bits_of(words: npt.NDArray[np.uint64], word: int, offset: int, n: int) -> BoolArray:
    """(rows, n) booleans: bits offset .. offset + n - 1 counted from word `word` of each row."""
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, 64 * word + offset : 64 * word + offset + n]
    out: BoolArray = bits.view(np.bool_)
    return out


def word_bits(lo: IntArray, hi: IntArray, word: IntArray) -> npt.NDArray[np.uint64]:
    """Bits of leaves [lo, hi) that fall in 64-leaf word `word` (elementwise)."""
    a = np.clip(lo - 64 * word, 0, 64).astype(np.uint64)
    b = np.clip(hi - 64 * word, 0, 64).astype(np.uint64)

    def below(k: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:  # the k lowest bits (k = 64: all)
        out: npt.NDArray[np.uint64] = np.where(k >= 64, ALL, (np.uint64(1) << np.minimum(k, 63)) - np.uint64(1))
        return out

    out: npt.NDArray[np.uint64] = below(b) & ~below(a)
    return out


def pack(flags: BoolArray) -> npt.NDArray[np.uint64]:
    """(n, V) booleans -> (n, ceil(V / 64)) uint64 words, bit v of the row = flags[:, v]."""
    n, v = flags.shape
    words = -(-v // 64)
    packed = np.packbits(flags, axis=1, bitorder="little")
    padded = np.zeros((n, words * 8), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return padded.view("<u8")
