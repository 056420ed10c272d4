"""Corrupt compiled model files (issue 13, D10 and deliverable 6): each is refused when loaded, with a
CompileError from the scorer and a ModelLoadError from ``load_model``, before it could serve; the Predictor
keeps the last good model in service."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

lgb = pytest.importorskip("lightgbm")

from model.adapters.model_service import predictor_for  # noqa: E402
from model.adapters.registry import ModelStore  # noqa: E402
from model.domain.settings import get_settings  # noqa: E402
from model.scoring import tree_format  # noqa: E402
from model.scoring.predictor import ModelLoadError, load_model  # noqa: E402
from model.scoring.tree_scorer import CompileError, TreeScorer  # noqa: E402
from tests.scoring_helpers import layout, manifest_for, publish, synthetic_rows, train  # noqa: E402

Arrays = dict[str, Any]


@pytest.fixture(scope="module")
def booster() -> Any:
    return train(layout(), n_rows=2000, trees=12, leaves=7, seed=3)


@pytest.fixture(scope="module")
def good(booster: Any) -> bytes:
    return TreeScorer.from_dump(booster.dump_model()).to_bytes()


def _arrays(data: bytes) -> Arrays:
    with np.load(io.BytesIO(data)) as npz:
        return {k: npz[k].copy() for k in npz.files}


def _npz(arrays: Arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _meta(arrays: Arrays) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(arrays["meta"].tobytes())
    return meta


def _with_meta(arrays: Arrays, **changes: Any) -> Arrays:
    meta = {**_meta(arrays), **changes}
    return {**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}


def _internal(a: Arrays, cat: bool | None = None) -> int:
    """An internal node that is not a tree's root (of a categorical split if `cat`)."""
    ok = (a["feature"] >= 0) & ~np.isin(np.arange(len(a["feature"])), a["tree_root"])
    if cat is not None:
        ok &= a["is_cat"] == cat
    return int(np.flatnonzero(ok)[0])


def _set(name: str, value: Any, where: Callable[[Arrays], Any]) -> Callable[[Arrays], Arrays]:
    def change(a: Arrays) -> Arrays:
        a[name][where(a)] = value
        return a

    return change


def _member(name: str, header: dict[str, Any], body: bytes) -> Callable[[bytes], bytes]:
    """A file with member `name`.npy replaced (or added) with this .npy header and body."""

    def change(data: bytes) -> bytes:
        npy = io.BytesIO()
        np.lib.format.write_array_header_1_0(npy, header)
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                if info.filename != f"{name}.npy":
                    dst.writestr(info.filename, src.read(info))
            dst.writestr(f"{name}.npy", npy.getvalue() + body)
        return out.getvalue()

    return change


def _header_and_body(data: bytes, name: str, fill: bytes | None = None) -> tuple[dict[str, Any], bytes]:
    """The .npy header and body of array `name` of a file (its bytes, or `fill` repeated to the same length)."""
    arr = _arrays(data)[name]
    body = arr.tobytes() if fill is None else fill * (arr.nbytes // len(fill))
    return {"descr": arr.dtype.str, "fortran_order": False, "shape": arr.shape}, body


def _huge(descr: str) -> dict[str, Any]:
    return {"descr": descr, "fortran_order": False, "shape": (50_000_000_000,)}


LEAF = lambda a: int(np.flatnonzero(a["feature"] < 0)[3])  # noqa: E731
# Corruptions of the arrays (saved with numpy as they are: no dtype fixing on the way).
ARRAY_CORRUPTIONS: dict[str, Callable[[Arrays], Arrays]] = {
    "negative feature index": _set("feature", -3, _internal),
    "internal node marked as a leaf": _set("feature", -1, _internal),
    "feature index beyond the features": _set("feature", 10_000, _internal),
    "NaN leaf value": _set("value", np.nan, LEAF),
    "inf leaf value": _set("value", np.inf, LEAF),
    "values summing to inf": lambda a: {**a, "value": np.where(a["feature"] < 0, 1e308, a["value"])},
    "NaN threshold": _set("threshold", np.nan, _internal),
    "inf threshold": _set("threshold", -np.inf, _internal),
    "child index out of range": _set("left", 10**6, _internal),
    "negative child index": _set("right", -5, _internal),
    "cycle: a child pointing at its tree's root": _set("right", 0, lambda a: _internal(a)),
    "a node with two parents": lambda a: _set("right", a["left"][_internal(a)], _internal)(a),
    "tree root out of range": _set("tree_root", 10**6, lambda a: 1),
    "leaf range out of range": _set("leaf_hi", 10**6, _internal),
    "path node out of range": _set("path_node", 10**6, lambda a: 2),
    "path entry off its leaf's path": _set("path_leaf", 0, lambda a: len(a["path_leaf"]) - 1),
    "path direction flipped": lambda a: {**a, "path_left": ~a["path_left"]},
    "category bitset out of range": _set("cat_offset", 10**6, lambda a: _internal(a, cat=True)),
    "unknown missing type": _set("missing", 7, _internal),
    "node arrays of different lengths": lambda a: {**a, "threshold": a["threshold"][:-1]},
    "no trees": lambda a: {**a, "tree_root": a["tree_root"][:0]},
    "extra array": lambda a: {**a, "padding": np.zeros(1000)},
    "missing array": lambda a: {k: v for k, v in a.items() if k != "leaf_mid"},
    "wrong dtype: float32 thresholds": lambda a: {**a, "threshold": a["threshold"].astype(np.float32)},
    "wrong dtype: int64 features": lambda a: {**a, "feature": a["feature"].astype(np.int64)},
    "wrong dtype: big-endian": lambda a: {**a, "left": a["left"].astype(">i4")},
    "wrong dtype: objects": lambda a: {**a, "cat_words": np.array([object()], dtype=object)},
    "two-dimensional array": lambda a: {**a, "tree_root": a["tree_root"][:, None]},
    "meta: unknown link": lambda a: _with_meta(a, link="softmax"),
    "meta: unknown key": lambda a: _with_meta(a, extra=1),
    "meta: other format": lambda a: _with_meta(a, format="nbc-tree-scorer/0"),
    "meta: NaN sigmoid": lambda a: _with_meta(a, sigmoid=float("nan")),
    "meta: feature names not strings": lambda a: _with_meta(a, feature_names=list(range(34))),
    "meta: not JSON": lambda a: {**a, "meta": np.frombuffer(b"\xff{", dtype=np.uint8)},
}
# Corruptions of the file's bytes.
FILE_CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda d: b"",
    "not a zip": lambda d: b"PK\x03\x04 not really",
    "truncated": lambda d: d[: len(d) // 2],
    "truncated by one byte": lambda d: d[:-1],
    "damaged directory": lambda d: d[:-10] + b"0123456789",
    "oversized member: a known array declaring 50 GB": _member("path_left", _huge("|b1"), b"\x00" * 64),
    "oversized member: an unknown array declaring 400 GB": _member("padding", _huge("<f8"), b"\x00" * 64),
    "member shorter than its header says": _member(
        "tree_root", {"descr": "<i4", "fortran_order": False, "shape": (1000,)}, b"\x00" * 16
    ),
    "member longer than its header says": _member(
        "tree_root", {"descr": "<i4", "fortran_order": False, "shape": (1,)}, b"\x00" * 4000
    ),
    "booleans other than 0 and 1": lambda d: _member("is_cat", *_header_and_body(d, "is_cat", b"\x02"))(d),
    "pickle header": _member("meta", {"descr": "|O", "fortran_order": False, "shape": (1,)}, b"\x80\x04N."),
}


def _corrupt(good: bytes, name: str) -> bytes:
    if name in ARRAY_CORRUPTIONS:
        return _npz(ARRAY_CORRUPTIONS[name](_arrays(good)))
    return FILE_CORRUPTIONS[name](good)


CASES = [*ARRAY_CORRUPTIONS, *FILE_CORRUPTIONS]


def test_the_good_file_loads_and_its_rebuilt_copy_too(good: bytes) -> None:
    """The corruption helpers themselves do not break a file: unchanged arrays saved by numpy load."""
    assert TreeScorer.from_bytes(good).n_trees == 12
    assert TreeScorer.from_bytes(_npz(_arrays(good))).n_trees == 12
    assert TreeScorer.from_bytes(_member("tree_root", *_header_and_body(good, "tree_root"))(good)).n_trees == 12


@pytest.mark.parametrize("case", CASES)
def test_corrupt_file_is_refused_by_the_scorer_and_the_loader(good: bytes, case: str) -> None:
    bad = _corrupt(good, case)
    with pytest.raises(CompileError):
        TreeScorer.from_bytes(bad)
    manifest = manifest_for(layout(), "v9", {"compiled": "model.npz"})
    with pytest.raises(ModelLoadError, match="compiled model of v9 unusable"):
        load_model(manifest, lambda name: bad)


def test_oversized_member_is_refused_before_it_is_read(good: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The declared size is checked on the .npy header: the 400 GB member is never allocated or inflated."""
    read = []
    original = zipfile.ZipExtFile.read

    def spy(self: zipfile.ZipExtFile, n: int = -1) -> bytes:
        read.append((self.name, n))
        return original(self, n)

    monkeypatch.setattr(zipfile.ZipExtFile, "read", spy)
    with pytest.raises(CompileError, match="declares 50000000000 bytes"):
        TreeScorer.from_bytes(FILE_CORRUPTIONS["oversized member: a known array declaring 50 GB"](good))
    assert all(n < 1 << 20 for _, n in read)


def test_size_limits_of_file_and_arrays(good: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    total = sum(a.nbytes for a in _arrays(good).values())
    with pytest.raises(CompileError, match="above the limit"):
        TreeScorer.from_bytes(good, max_file_bytes=len(good) - 1)
    with pytest.raises(CompileError, match=r"size limit|expands beyond"):
        TreeScorer.from_bytes(good, max_array_bytes=total - 1)
    assert TreeScorer.from_bytes(good, max_file_bytes=len(good), max_array_bytes=total).n_trees == 12
    # The defaults are the module's limits, read at call time (what load_model uses).
    monkeypatch.setattr(tree_format, "MAX_FILE_BYTES", len(good) - 1)
    with pytest.raises(ModelLoadError, match="above the limit"):
        load_model(manifest_for(layout(), "v9", {"compiled": "model.npz"}), lambda name: good)


def test_refused_files_report_what_is_wrong(good: bytes) -> None:
    for case, needle in [
        ("negative feature index", "split feature is outside"),
        ("NaN leaf value", "node value is not finite"),
        ("extra array", "unknown arrays: padding.npy"),
        ("wrong dtype: float32 thresholds", "dtype <f4, expected <f8"),
        ("truncated", "not a compiled model"),
        ("cycle: a child pointing at its tree's root", "child index"),
    ]:
        with pytest.raises(CompileError, match=needle):
            TreeScorer.from_bytes(_corrupt(good, case))


def test_checks_accept_what_the_compiler_makes(booster: Any) -> None:
    """Checks that refuse real models would be worse than none: every compiled shape in the tests loads."""
    lay = layout()
    x, _ = synthetic_rows(lay, 200, 1)
    for model in (
        booster,
        train(lay, trees=8, leaves=150, seed=3, min_data_in_leaf=2),  # trees wider than a 64-leaf word
        train(lay, trees=10, leaves=15, seed=4, boosting="rf", bagging_freq=1, bagging_fraction=0.7),
        train(lay, trees=10, leaves=15, seed=5, zero_as_missing=True, objective="regression"),
        train(lay, trees=1, leaves=2, seed=6),
    ):
        scorer = TreeScorer.from_dump(model.dump_model())
        again = TreeScorer.from_bytes(scorer.to_bytes())
        assert np.array_equal(again.raw(x), scorer.raw(x))


def test_predictor_keeps_the_last_good_model_through_every_corrupt_file(booster: Any, good: bytes) -> None:
    class Clock:
        now = 1000.0

        def __call__(self) -> float:
            return self.now

    store = ModelStore.from_uri(get_settings().model_store)
    publish(store, booster, "v1")
    store.add_file("v1", "model.npz", good)
    manifest = store.manifest("v1")
    manifest.files["compiled"] = "model.npz"
    store.update_manifest(manifest)
    store.set_current("v1")
    clock = Clock()
    predictor = predictor_for(get_settings().model_store, refresh_seconds=1, clock=clock)
    assert predictor.model().version == "v1"  # type: ignore[union-attr]
    for i, case in enumerate(CASES):
        version = f"bad-{i}"
        store.publish(
            version, {"model.npz": _corrupt(good, case)}, manifest_for(layout(), version, {"compiled": "model.npz"})
        )
        store.set_current(version)
        clock.now += 2
        served = predictor.model()
        assert served is not None, case
        assert served.version == "v1", case
        assert version in (predictor.last_error or ""), case
