"""The compiled model's arrays and file: flattened from a LightGBM dump, saved as one .npz, loaded with checks.

At promotion (``training/compile.py``) ``booster.dump_model()`` is flattened into the arrays below and saved
as one ``.npz``: plain little-endian arrays (architecture-independent, no pickle) and a JSON ``meta``. Nodes
are numbered depth-first, tree after tree: a child's index is above its parent's, and a subtree's leaves
are a contiguous range of leaf numbers.

    array (dtype on disk)               one entry per: meaning
    feature (<i4)                       node: its split feature, -1 for a leaf
    threshold (<f8)                     node: numerical threshold (0 for categorical splits and leaves)
    missing (i1)                        node: LightGBM missing type (0 None, 1 Zero, 2 NaN)
    default_left, is_cat (bool)         node: where a missing value goes; a categorical split
    left, right (<i4)                   node: children (-1 for a leaf)
    value (<f8)                         node: leaf value, or the internal value (attributions use it)
    cat_offset, cat_len (<i4)           node: its category bitset, cat_words[offset : offset + len] (0, 0: none)
    cat_words (<u4)                     bitset word (at least one)
    tree_root (<i4)                     tree: its root node
    leaf_node (<i4)                     leaf: its node
    path_leaf, path_node, path_left     path entry (leaf after leaf, root first): a split on the leaf's path
    leaf_lo, leaf_mid, leaf_hi (<i4)    node: the leaves [lo, hi) lie under it, the right subtree's from mid
    meta (u1)                           JSON: format, feature_names, objective, link, sigmoid, average_output

Loading trusts nothing in the file (issue 13, D10: a negative feature index, NaN leaf values and an 840 KB
file expanding to 400 MB all used to load). Before any array is read: the file's size, the member names
(exactly the arrays above: nothing unknown, nothing missing) and each member's .npy header (dtype, one
dimension, declared bytes against a total budget). After: lengths, index ranges, finiteness, and the tree
structure (every node has one parent or is a root; children come after their parent, so no walk can cycle;
leaf ranges and paths agree with the trees). Anything else is a ``CompileError``, and the model never serves.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

FORMAT = "nbc-tree-scorer/1"
MISSING_NONE, MISSING_ZERO, MISSING_NAN = 0, 1, 2
_MISSING = {"None": MISSING_NONE, "Zero": MISSING_ZERO, "NaN": MISSING_NAN}
LINKS = ("sigmoid", "exp", "identity")

# Per node: the array and its value for a fresh node (a leaf until its split is known).
NODE_BLANK: dict[str, Any] = {
    "feature": -1, "threshold": 0.0, "missing": MISSING_NONE, "default_left": False, "is_cat": False,
    "left": -1, "right": -1, "value": 0.0, "cat_offset": 0, "cat_len": 0, "leaf_lo": 0, "leaf_mid": 0, "leaf_hi": 0,
}  # fmt: skip
PATH_ARRAYS = ("path_leaf", "path_node", "path_left")
_I4, _F8, _B = np.dtype("<i4"), np.dtype("<f8"), np.dtype(np.bool_)
FILE_DTYPES: dict[str, np.dtype[Any]] = {
    "feature": _I4, "threshold": _F8, "missing": np.dtype(np.int8), "default_left": _B, "is_cat": _B,
    "left": _I4, "right": _I4, "value": _F8, "cat_offset": _I4, "cat_len": _I4, "cat_words": np.dtype("<u4"),
    "tree_root": _I4, "leaf_node": _I4, "path_leaf": _I4, "path_node": _I4, "path_left": _B,
    "leaf_lo": _I4, "leaf_mid": _I4, "leaf_hi": _I4, "meta": np.dtype(np.uint8),
}  # fmt: skip
ARRAYS = tuple(name for name in FILE_DTYPES if name != "meta")
# In memory: indices as int64 (no overflow in index arithmetic), the rest as on disk.
_MEMORY_DTYPES = {name: np.dtype(np.int64) if dt == _I4 else dt for name, dt in FILE_DTYPES.items()}
_META_REQUIRED = {"format", "feature_names", "objective", "link"}
_META_OPTIONAL = {"sigmoid", "average_output"}

# Size limits of a compiled file. A 500-tree, 31-leaf model is 0.6 MB compressed, 2.7 MB of arrays.
MAX_FILE_BYTES = 64 << 20  # the file as stored (compressed)
MAX_ARRAY_BYTES = 128 << 20  # all arrays together, as declared by their .npy headers, checked before reading
MAX_META_BYTES = 1 << 20
_MAX_HEADER = 10_000  # numpy's own default for .npy headers


class CompileError(ValueError):
    """The dumped model uses something this scorer does not reproduce, or a compiled file is not valid."""


# ---------------------------------------------------------------------- LightGBM dump -> arrays
def _link(objective: str) -> tuple[str, float]:
    """The link (raw score -> prediction) of a LightGBM objective, and the sigmoid's slope."""
    name = objective.split(" ")[0]
    sigmoid = 1.0
    if name == "binary":
        for part in objective.split(" ")[1:]:
            if part.startswith("sigmoid:"):
                sigmoid = float(part.split(":", 1)[1])
        return "sigmoid", sigmoid
    if name in ("cross_entropy", "xentropy"):
        return "sigmoid", sigmoid
    if name in ("poisson", "gamma", "tweedie"):
        return "exp", sigmoid
    if name in ("regression", "regression_l1", "huber", "fair", "quantile", "mape", "lambdarank"):
        return "identity", sigmoid
    raise CompileError(f"objective {objective!r} is not supported by the compiled scorer")


def flatten_dump(dump: Mapping[str, Any]) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    """``booster.dump_model()`` (a dict) -> the arrays (file dtypes) and meta of a compiled model."""
    if int(dump.get("num_tree_per_iteration", 1)) != 1 or int(dump.get("num_class", 1)) != 1:
        raise CompileError("only single-output models (binary, regression) are supported")
    objective = str(dump.get("objective", "regression"))
    link, sigmoid = _link(objective)
    col: dict[str, list[Any]] = {name: [] for name in ARRAYS}
    leaf_node, cat_words = col["leaf_node"], col["cat_words"]

    def add(node: Mapping[str, Any], path: list[tuple[int, bool]]) -> int:
        idx = len(col["feature"])
        for name, blank in NODE_BLANK.items():
            col[name].append(blank)
        col["leaf_lo"][idx] = col["leaf_mid"][idx] = len(leaf_node)  # leaves are numbered depth-first
        col["leaf_hi"][idx] = len(leaf_node) + 1
        if "split_feature" not in node:  # a leaf
            col["value"][idx] = float(node["leaf_value"])
            for n, went_left in path:
                col["path_leaf"].append(len(leaf_node))
                col["path_node"].append(n)
                col["path_left"].append(went_left)
            leaf_node.append(idx)
            return idx
        col["value"][idx] = float(node.get("internal_value", 0.0))
        col["feature"][idx] = int(node["split_feature"])
        col["missing"][idx] = _MISSING[str(node.get("missing_type", "None"))]
        col["default_left"][idx] = bool(node.get("default_left", False))
        if node["decision_type"] == "==":
            cats = [int(c) for c in str(node["threshold"]).split("||") if c != ""]
            words = [0] * (max(cats) // 32 + 1 if cats else 1)
            for c in cats:
                if c >= 0:
                    words[c // 32] |= 1 << (c % 32)
            col["is_cat"][idx] = True
            col["cat_offset"][idx] = len(cat_words)
            col["cat_len"][idx] = len(words)
            cat_words.extend(words)
        elif node["decision_type"] == "<=":
            col["threshold"][idx] = float(node["threshold"])
        else:
            raise CompileError(f"unknown decision type {node['decision_type']!r}")
        col["left"][idx] = add(node["left_child"], [*path, (idx, True)])
        col["leaf_mid"][idx] = len(leaf_node)
        col["right"][idx] = add(node["right_child"], [*path, (idx, False)])
        col["leaf_hi"][idx] = len(leaf_node)
        return idx

    trees = dump.get("tree_info", [])
    if not trees:
        raise CompileError("the model has no trees")
    for tree in trees:
        col["tree_root"].append(add(tree["tree_structure"], []))
    if not cat_words:
        cat_words.append(0)
    arrays = {name: np.asarray(values, dtype=FILE_DTYPES[name]) for name, values in col.items()}
    meta = {
        "format": FORMAT,
        "feature_names": list(dump.get("feature_names", [])),
        "objective": objective,
        "sigmoid": sigmoid,
        "link": link,
        "average_output": bool(dump.get("average_output", False)),
    }
    return arrays, meta


# ---------------------------------------------------------------------- bytes
def to_bytes(arrays: Mapping[str, npt.NDArray[Any]], meta: Mapping[str, Any]) -> bytes:
    """The .npz of a compiled model: every array in its file dtype, and the meta as JSON bytes."""
    out = {name: np.asarray(arrays[name]).astype(FILE_DTYPES[name]) for name in ARRAYS}
    out["meta"] = np.frombuffer(json.dumps(dict(meta)).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    save: Any = np.savez_compressed  # numpy's stub types **kwds as allow_pickle
    save(buf, **out)
    return buf.getvalue()


def read_npz(
    data: bytes, max_file_bytes: int | None = None, max_array_bytes: int | None = None
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    """The arrays (in-memory dtypes) and meta of a compiled file, every size and header checked before reading."""
    max_file = MAX_FILE_BYTES if max_file_bytes is None else max_file_bytes
    budget = MAX_ARRAY_BYTES if max_array_bytes is None else max_array_bytes
    if len(data) > max_file:
        raise CompileError(f"compiled model file of {len(data)} bytes is above the limit of {max_file}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            names = [info.filename for info in infos]
            unknown = sorted(set(names) - {f"{name}.npy" for name in FILE_DTYPES})
            if unknown:
                raise CompileError(f"compiled model holds unknown arrays: {', '.join(unknown)[:200]}")
            if len(set(names)) != len(names):
                raise CompileError("compiled model holds an array twice")
            lacking = sorted(set(FILE_DTYPES) - {n[: -len(".npy")] for n in names})
            if lacking:
                raise CompileError(f"compiled model lacks arrays: {', '.join(lacking)}")
            if sum(info.file_size for info in infos) > budget + len(infos) * _MAX_HEADER:
                raise CompileError(f"compiled model expands beyond {budget} bytes")
            arrays, total = {}, 0
            for info in infos:
                name = info.filename[: -len(".npy")]
                with zf.open(info) as f:
                    arr = _read_member(f, name, budget - total)
                total += arr.nbytes
                arrays[name] = arr
    except CompileError:
        raise
    except Exception as exc:  # zip, zlib and .npy errors all mean "not a compiled model"
        raise CompileError(f"not a compiled model: {exc}") from exc
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise CompileError(f"compiled model's meta is not JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CompileError(f"not a compiled model of format {FORMAT}")
    return arrays, meta


def _read_member(f: Any, name: str, budget: int) -> npt.NDArray[Any]:
    """One .npy member: its header checked (dtype, 1-D, declared size within `budget`), then exactly its bytes."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_MAX_HEADER)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_MAX_HEADER)
    else:
        raise CompileError(f"array {name}: unsupported .npy version {version}")
    if dtype != FILE_DTYPES[name]:
        raise CompileError(f"array {name} has dtype {dtype.str}, expected {FILE_DTYPES[name].str}")
    if len(shape) != 1:
        raise CompileError(f"array {name} has shape {shape}, expected one dimension")
    n_bytes = int(shape[0]) * dtype.itemsize
    limit = min(budget, MAX_META_BYTES) if name == "meta" else budget
    if n_bytes > limit:
        raise CompileError(f"array {name} declares {n_bytes} bytes, beyond the {limit} left in the size limit")
    raw = f.read(n_bytes)
    if len(raw) != n_bytes:
        raise CompileError(f"array {name} is truncated")
    if f.read(1):  # also reaches the end of the member, where zipfile checks its CRC
        raise CompileError(f"array {name} has trailing data")
    arr = np.frombuffer(raw, dtype=dtype)
    if dtype == np.bool_ and arr.view(np.uint8).max(initial=0) > 1:
        raise CompileError(f"array {name} holds booleans other than 0 and 1")
    return arr


# ---------------------------------------------------------------------- the checks
def check_meta(meta: Mapping[str, Any]) -> None:
    """The meta's keys and their types."""
    keys = set(meta)
    if not keys >= _META_REQUIRED or not keys <= _META_REQUIRED | _META_OPTIONAL:
        raise CompileError(f"compiled model's meta has keys {sorted(keys)}, expected {sorted(_META_REQUIRED)}")
    names = meta["feature_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CompileError("compiled model's feature_names is not a list of names")
    if not isinstance(meta["objective"], str) or meta["link"] not in LINKS:
        raise CompileError(f"compiled model's objective or link is unknown (link {meta['link']!r})")
    sigmoid = meta.get("sigmoid", 1.0)
    if isinstance(sigmoid, bool) or not isinstance(sigmoid, int | float) or not math.isfinite(sigmoid):
        raise CompileError(f"compiled model's sigmoid {sigmoid!r} is not a finite number")
    if not isinstance(meta.get("average_output", False), bool):
        raise CompileError("compiled model's average_output is not a boolean")


def check_arrays(a: Mapping[str, npt.NDArray[Any]], n_features: int) -> None:
    """Lengths, index ranges, finiteness and the tree structure of in-memory arrays (int64 indices)."""

    def need(ok: Any, what: str) -> None:
        if not bool(np.all(ok)):
            raise CompileError(f"compiled model is inconsistent: {what}")

    feature, left, right = a["feature"], a["left"], a["right"]
    n, n_leaves, n_paths = len(feature), len(a["leaf_node"]), len(a["path_leaf"])
    need(n > 0 and len(a["tree_root"]) > 0 and len(a["cat_words"]) > 0, "no trees, nodes or category words")
    for name in NODE_BLANK:
        need(len(a[name]) == n, f"{name} has {len(a[name])} entries for {n} nodes")
    for name in PATH_ARRAYS:
        need(len(a[name]) == n_paths, f"{name} has {len(a[name])} entries for {n_paths} path entries")
    # Values: the features exist, numbers are finite (and so is any sum of them), missing types are known.
    need((feature >= -1) & (feature < n_features), f"a split feature is outside [0, {n_features})")
    need(np.isfinite(a["threshold"]), "a threshold is not finite")
    with np.errstate(over="ignore", invalid="ignore"):
        need(
            np.isfinite(a["value"]) & np.isfinite(np.abs(a["value"]).sum()),
            "a node value is not finite (or sums to inf)",
        )
    need(np.isin(a["missing"], (MISSING_NONE, MISSING_ZERO, MISSING_NAN)), "an unknown missing type")
    internal = feature >= 0
    nodes = np.arange(n)
    need(np.array_equal(a["leaf_node"], nodes[~internal]), "leaf_node does not list the leaves in order")
    # Structure: children come after their parent (no cycles), and every node has one parent or is a root.
    need(
        np.where(internal, (left > nodes) & (right > nodes) & (left < n) & (right < n), (left == -1) & (right == -1)),
        "a child index is out of range or not after its parent (a cycle)",
    )
    roots = a["tree_root"]
    need((roots >= 0) & (roots < n), "a tree root is out of range")
    parents = np.bincount(np.concatenate([left[internal], right[internal], roots]), minlength=n)
    need(parents == 1, "a node is not in exactly one tree (shared, unreachable, or a root with a parent)")
    # Leaf ranges: a leaf is its own range, an internal node's range joins its children's.
    lo, mid, hi = a["leaf_lo"], a["leaf_mid"], a["leaf_hi"]
    ordinal = np.cumsum(~internal) - 1
    li, ri = left[internal], right[internal]
    need(np.where(internal, True, (lo == ordinal) & (mid == lo) & (hi == lo + 1)), "a leaf's range is wrong")
    need(
        (lo[internal] == lo[li]) & (mid[internal] == hi[li]) & (mid[internal] == lo[ri]) & (hi[internal] == hi[ri]),
        "a node's leaf range does not join its children's",
    )
    # Categorical bitsets lie inside cat_words; other nodes have none.
    is_cat, offset, length = a["is_cat"], a["cat_offset"], a["cat_len"]
    need(~is_cat | internal, "a leaf has a categorical split")
    need(
        np.where(
            is_cat,
            (offset >= 0) & (length >= 1) & (offset + length <= len(a["cat_words"])),
            (offset == 0) & (length == 0),
        ),
        "a category bitset is out of range",
    )
    # Paths: leaf after leaf, each leaf's entries exactly its ancestors, root first, with the branch taken.
    leaf, node = a["path_leaf"], a["path_node"]
    need((leaf >= 0) & (leaf < n_leaves) & (node >= 0) & (node < n), "a path index is out of range")
    need(internal[node] & (lo[node] <= leaf) & (leaf < hi[node]), "a path entry is not on its leaf's path")
    need(a["path_left"] == (leaf < mid[node]), "a path entry's direction is wrong")
    same = leaf[1:] == leaf[:-1]
    need((leaf[1:] >= leaf[:-1]) & (~same | (node[1:] > node[:-1])), "path entries are out of order")
    cover = np.bincount(lo[internal], minlength=n_leaves + 1) - np.bincount(hi[internal], minlength=n_leaves + 1)
    need(np.bincount(leaf, minlength=n_leaves) == np.cumsum(cover)[:n_leaves], "a leaf's path lacks splits")


# ---------------------------------------------------------------------- the arrays in memory
class CompiledTrees:
    """A compiled LightGBM booster's arrays (int64 indices), meta and what follows from them, checked on creation.

    Single output only (binary / regression-like objectives). Build with ``from_dump`` (at promotion) or
    ``from_bytes`` (a stored file: every check above); ``to_bytes`` writes the file back.
    """

    def __init__(self, arrays: Mapping[str, npt.NDArray[Any]], meta: Mapping[str, Any]) -> None:
        check_meta(meta)
        lacking = [name for name in ARRAYS if name not in arrays]
        if lacking:
            raise CompileError(f"compiled model lacks arrays: {', '.join(lacking)}")
        a = {name: np.asarray(arrays[name]).astype(_MEMORY_DTYPES[name]) for name in ARRAYS}
        self.meta = dict(meta)
        self.feature_names: list[str] = list(meta["feature_names"])
        self.n_features = len(self.feature_names)
        check_arrays(a, self.n_features)
        self.objective: str = str(meta["objective"])
        self.sigmoid: float = float(meta.get("sigmoid", 1.0))
        self.link: str = str(meta["link"])
        self.average_output: bool = bool(meta.get("average_output", False))
        self.feature: IntArray = a["feature"]
        self.threshold: FloatArray = a["threshold"]
        self.missing: npt.NDArray[np.int8] = a["missing"]
        self.default_left: BoolArray = a["default_left"]
        self.is_cat: BoolArray = a["is_cat"]
        self.left: IntArray = a["left"]
        self.right: IntArray = a["right"]
        self.value: FloatArray = a["value"]
        self.cat_offset: IntArray = a["cat_offset"]
        self.cat_len: IntArray = a["cat_len"]
        self.cat_words: npt.NDArray[np.uint32] = a["cat_words"]
        self.tree_root: IntArray = a["tree_root"]
        self.leaf_node: IntArray = a["leaf_node"]
        self.path_leaf: IntArray = a["path_leaf"]
        self.path_node: IntArray = a["path_node"]
        self.path_left: BoolArray = a["path_left"]
        self.leaf_lo: IntArray = a["leaf_lo"]
        self.leaf_mid: IntArray = a["leaf_mid"]
        self.leaf_hi: IntArray = a["leaf_hi"]
        self.leaf_value: FloatArray = self.value[self.leaf_node]
        self.internal: IntArray = np.flatnonzero(self.feature >= 0)
        self.n_trees = len(self.tree_root)
        self.bias = float(self.value[self.tree_root].sum())  # the sum of root values (attributions' last column)
        self.scale = 1.0 / self.n_trees if self.average_output else 1.0  # raw -> prediction: a forest's mean

    @classmethod
    def from_dump(cls, dump: Mapping[str, Any]) -> Self:
        """Flatten ``booster.dump_model()`` (a dict) into arrays."""
        return cls(*flatten_dump(dump))

    @classmethod
    def from_bytes(cls, data: bytes, max_file_bytes: int | None = None, max_array_bytes: int | None = None) -> Self:
        """Load a compiled file; raises CompileError (a ValueError) on anything malformed, before any use."""
        return cls(*read_npz(data, max_file_bytes, max_array_bytes))

    def to_bytes(self) -> bytes:
        return to_bytes({name: getattr(self, name) for name in ARRAYS}, self.meta)
