"""The grid path's tables: distinct splits ("keys") per feature group, and the plans built from them.

Built once per model and feature-group widths (``group_plans``, at load time) and once per request shape
(``multi_plan``: which groups have several values, and how many), so that a request only indexes them
(``tree_grid``):

* decisions are taken once per distinct split (feature, threshold, missing handling, category set), not per
  node: LightGBM bins each feature into at most ``max_bin`` thresholds, so 500 trees share a few hundred;
* a group with one value (the customer) prunes leaves: leaves are numbered depth-first, so a subtree's leaves
  are a contiguous range; the surviving set is a bitset of 64-leaf words, and each split ANDs in the words
  of the branch it takes (``GroupPlan.w_*``);
* for groups with several values, a split's decisions for all of its group's values are one bit-packed
  word, and the path entries of every such group form one CSR by leaf (``MultiPlan``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model.scoring.tree_bits import pack, word_bits
from model.scoring.tree_format import MISSING_ZERO, BoolArray, CompiledTrees, FloatArray, IntArray


@dataclass(frozen=True)
class Keys:
    """Distinct splits ("keys": feature, threshold, missing type, default direction, category set).

    Decisions are taken per key, not per node: LightGBM bins each feature into at most `max_bin`
    thresholds, so the 500 trees of a feature group share a few hundred keys.
    """

    node: IntArray  # a node with that split (LightGBM's full rule is evaluated on it when needed)
    threshold: FloatArray
    # Where `x <= threshold` is not LightGBM's rule: categorical splits whose set fits one uint64 word
    # (`cat_bits`, tested inline), and the rest (missing type Zero, wider sets) for the full `tree_rows.go_left`.
    narrow_cat: BoolArray
    cat_bits: npt.NDArray[np.uint64]
    slow: BoolArray

    def __len__(self) -> int:
        return len(self.node)

    @staticmethod
    def concat(parts: Sequence[Keys]) -> Keys:
        return Keys(*(np.concatenate([getattr(k, f) for k in parts]) for f in Keys.__dataclass_fields__))


@dataclass(frozen=True)
class GroupPlan:
    """Per-model structures of one feature group, built once: the per-request work only indexes them."""

    nodes: IntArray  # internal nodes that test a feature of this group
    keys: Keys
    k_feature: IntArray  # per key: its feature, relative to the group's first column
    # When the group has ONE value (the customer), its splits prune leaves. Leaves are numbered depth-first,
    # so a subtree's leaves are a contiguous range; the leaf set is a bitset of 64-leaf words, and a split
    # keeps the leaves of the branch it takes: one AND per (node, word its subtree overlaps).
    w_key: IntArray  # entry -> key of its node
    w_keep_left: npt.NDArray[np.uint64]  # the entry's word with the right subtree's leaves cleared
    w_keep_right: npt.NDArray[np.uint64]  # ... with the left subtree's leaves cleared
    w_words: IntArray  # the distinct words touched, and where their entries start (sorted by word)
    w_starts: IntArray
    # When the group has several values: its path entries (leaf, key of the node, direction), leaf by leaf.
    e_leaf: IntArray
    e_key: IntArray
    e_left: BoolArray


@dataclass(frozen=True)
class MultiPlan:
    """The path entries of all multi-valued groups of one request shape, as one CSR by leaf.

    A key's decisions for all values of its group are bit-packed (bit v: value v goes left) into the
    group's place in a few uint64 words (groups share a word while they fit: 8 channels + 48 slots + 3
    messages is one word). The table has two rows per key of every group: the values that contradict an
    entry going right (they go left), and those that contradict an entry going left. One gather and one
    OR-reduction per leaf then tell, for every group at once, which values the leaf's splits agree with.
    """

    groups: tuple[int, ...]  # group indices, in plan order
    keys: Keys  # the groups' keys, concatenated
    key_off: IntArray  # group k's keys are keys[key_off[k]:key_off[k + 1]]
    key_bits: npt.NDArray[np.uint64]  # (keys, words): the bits of the key's group
    e_start: IntArray  # CSR offsets by leaf
    e_row: IntArray  # table row: the entry's key, plus len(keys) if the entry goes left
    word: tuple[int, ...]  # per group: first word and bit offset of its values
    offset: tuple[int, ...]
    bits: npt.NDArray[np.uint64]  # (groups, words): each group's value bits
    full: npt.NDArray[np.uint64]  # (words,): every group's value bits set


def group_plans(t: CompiledTrees, widths: tuple[int, ...]) -> list[GroupPlan]:
    """Per feature group (columns in model order, `widths` wide): its keys, pruning words and path entries."""
    if sum(widths) != t.n_features:
        raise ValueError(f"feature groups of widths {widths} do not cover the {t.n_features} features")
    plan: list[GroupPlan] = []
    key_of = np.full(len(t.feature), -1, np.int64)
    path_feature = t.feature[t.path_node]
    # First 64 bits of each categorical split's set; "narrow" when the set has no category beyond 63.
    offset, n_cat = t.cat_offset, t.cat_len
    high = np.where(n_cat > 1, t.cat_words[np.minimum(offset + 1, len(t.cat_words) - 1)], 0)
    cat_bits = t.cat_words[offset].astype(np.uint64) | (high.astype(np.uint64) << np.uint64(32))
    narrow = t.is_cat & (n_cat <= 2)
    cat_bits = np.where(narrow, cat_bits, np.uint64(0))
    start = 0
    for width in widths:
        f = t.feature[t.internal]
        nodes = t.internal[(f >= start) & (f < start + width)].astype(np.int64)
        fields = np.column_stack(
            [
                t.feature[nodes],
                t.threshold[nodes].view(np.int64),
                t.missing[nodes],
                t.default_left[nodes],
                t.is_cat[nodes],
                cat_bits[nodes].view(np.int64),
                np.where(t.is_cat[nodes] & ~narrow[nodes], nodes, -1),  # wide sets: a key each
            ]
        ).astype(np.int64)
        _, first, inverse = np.unique(fields, axis=0, return_index=True, return_inverse=True)
        k_node = nodes[first]
        key_of[nodes] = inverse.reshape(-1)
        in_group = (path_feature >= start) & (path_feature < start + width)
        # (node, word) entries: every 64-leaf word that the node's subtree overlaps.
        lo, mid, hi = t.leaf_lo[nodes], t.leaf_mid[nodes], t.leaf_hi[nodes]
        first_word = lo >> 6
        n_words = ((hi - 1) >> 6) - first_word + 1
        w_pos = np.repeat(np.arange(len(nodes)), n_words)
        word = np.repeat(first_word - (np.cumsum(n_words) - n_words), n_words) + np.arange(len(w_pos))
        order = np.argsort(word, kind="stable")
        words, starts = np.unique(word[order], return_index=True)
        w_pos = w_pos[order]
        word = word[order]
        keys = Keys(
            node=k_node,
            threshold=t.threshold[k_node],
            narrow_cat=narrow[k_node],
            cat_bits=cat_bits[k_node],
            slow=(t.is_cat[k_node] & ~narrow[k_node]) | (~t.is_cat[k_node] & (t.missing[k_node] == MISSING_ZERO)),
        )
        plan.append(
            GroupPlan(
                nodes=nodes,
                keys=keys,
                k_feature=t.feature[k_node] - start,
                w_key=key_of[nodes[w_pos]],
                w_keep_left=~word_bits(mid[w_pos], hi[w_pos], word),
                w_keep_right=~word_bits(lo[w_pos], mid[w_pos], word),
                w_words=words.astype(np.int64),
                w_starts=starts.astype(np.int64),
                e_leaf=t.path_leaf[in_group],
                e_key=key_of[t.path_node[in_group]],
                e_left=t.path_left[in_group],
            )
        )
        start += width
    return plan


def multi_plan(t: CompiledTrees, plan: Sequence[GroupPlan], sizes: tuple[int, ...]) -> MultiPlan:
    """The tables of one request shape (`sizes`: values per group): those of its multi-valued groups."""
    groups = tuple(g for g, n in enumerate(sizes) if n > 1)
    word, offset = [], []
    w, o = 0, 0
    for g in groups:
        v = sizes[g]
        if o and (v > 64 or o + v > 64):  # a group starts a new word rather than straddle two
            w, o = w + 1, 0
        word.append(w)
        offset.append(o)
        if v > 64:
            w, o = w + -(-v // 64), 0
        else:
            o += v
    n_words = w + (1 if o else 0)
    group_bits = np.zeros((len(groups), n_words), dtype=np.uint64)
    key_off = np.cumsum([0, *(len(plan[g].keys) for g in groups)])
    n_keys = int(key_off[-1])
    leaf, row, key_group = [], [], []
    for k, g in enumerate(groups):
        ones = pack(np.ones((1, sizes[g]), dtype=bool))[0]
        if len(ones) == 1:
            group_bits[k, word[k]] = ones[0] << np.uint64(offset[k])
        else:
            group_bits[k, word[k] : word[k] + len(ones)] = ones
        p = plan[g]
        leaf.append(p.e_leaf)
        row.append(p.e_key + key_off[k] + np.where(p.e_left, n_keys, 0))
        key_group.append(np.full(len(p.keys), k))
    e_leaf = np.concatenate(leaf)
    order = np.argsort(e_leaf, kind="stable")
    mp = MultiPlan(
        groups=groups,
        keys=Keys.concat([plan[g].keys for g in groups]),
        key_off=key_off,
        key_bits=group_bits[np.concatenate(key_group)].reshape(n_keys, n_words),
        e_start=np.searchsorted(e_leaf[order], np.arange(len(t.leaf_node) + 1)),
        e_row=np.concatenate(row)[order],
        word=tuple(word),
        offset=tuple(offset),
        bits=group_bits,
        full=np.bitwise_or.reduce(group_bits, axis=0),
    )
    return mp
