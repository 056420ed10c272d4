"""The Lambda artifacts, built exactly as `sam build` builds them (scripts/build_function.sh), work on their own.

For the host architecture: each handler imports in a fresh interpreter that sees nothing but the artifact and the
standard library. For the deployed architecture (arm64, through `sam build` itself): every shared library's
DT_NEEDED entries resolve inside the artifact or to the Lambda runtime's base libraries, no training stack is
shipped, and the size stays under the target (sizes measured here: bench/RESULTS.md).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "scripts" / "build_function.sh"
HEAVY = ("lightgbm", "scipy", "pandas", "sklearn", "dask", "pyarrow", "polars", "matplotlib")
SIZE_LIMIT_MB = 120
# What the Lambda python3.12 runtime (Amazon Linux 2023) provides besides the artifact. Not libgomp: LightGBM's
# OpenMP runtime is absent there, the classic "libgomp.so.1: cannot open shared object file" on Lambda.
RUNTIME_LIBS = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libutil.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
        "libgcc_s.so.1",
        "libstdc++.so.6",
    }
)
FUNCTIONS = {  # function folder -> (handler module, packages it is built without), as in the Makefile
    "score": ("functions.score.app", ()),
    "ingest": ("functions.ingest.app", ()),
    "ingest_queue": ("functions.ingest_queue.app", ("fastapi", "mangum")),
    "aggregator": ("functions.aggregator.app", ("fastapi", "mangum")),
    "audience": ("functions.audience.app", ("fastapi", "mangum")),
}
SAM = ["tool", "run", "--from", "aws-sam-cli==1.170.0", "sam"]  # after the uv command


def _host_python() -> tuple[str, str]:
    """An interpreter to import the artifacts with, and its version: the runtime's 3.12 when the machine has
    one (pyenv here), else the test's own interpreter (the artifact is then built for its version)."""
    candidates = [
        shutil.which("python3.12"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))),
    ]
    for exe in candidates:
        if exe and subprocess.run([exe, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            return exe, "3.12"
    return sys.executable, f"{sys.version_info.major}.{sys.version_info.minor}"


def build(function: str, out: Path, arch: str, python_version: str) -> Path:
    pruned = FUNCTIONS[function][1]
    env = {**os.environ, "LAMBDA_ARCH": arch, "LAMBDA_PYTHON": python_version}
    subprocess.run([str(BUILD), function, str(out), *pruned], env=env, check=True, capture_output=True, timeout=170)
    return out


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def needed_libraries(path: Path) -> dict[str, list[str]]:
    """DT_NEEDED entries of every ELF shared object under `path`, by file."""
    found: dict[str, list[str]] = {}
    for file in sorted(path.rglob("*.so*")):
        if not file.is_file():
            continue
        with file.open("rb") as fh:
            if fh.read(4) != b"\x7fELF":
                continue
            fh.seek(0)
            try:
                elf = ELFFile(fh)
            except ELFError:
                continue
            needed = [
                tag.needed  # type: ignore[attr-defined]  # set on DT_NEEDED tags
                for section in elf.iter_sections()
                if isinstance(section, DynamicSection)
                for tag in section.iter_tags()
                if tag.entry.d_tag == "DT_NEEDED"
            ]
        found[str(file.relative_to(path))] = needed
    return found


def machines(path: Path) -> set[str]:
    """The CPU architectures of the shared objects under `path`."""
    archs = set()
    for file in path.rglob("*.so*"):
        with file.open("rb") as fh:
            if file.is_file() and fh.read(4) == b"\x7fELF":
                fh.seek(0)
                archs.add(ELFFile(fh).get_machine_arch())
    return archs


def unresolved_libraries(path: Path) -> dict[str, list[str]]:
    """Libraries some shared object needs that neither the artifact nor the Lambda runtime provides."""
    inside = {f.name for f in path.rglob("*.so*")}
    missing = {}
    for file, needed in needed_libraries(path).items():
        absent = [lib for lib in needed if lib not in inside and lib not in RUNTIME_LIBS]
        if absent:
            missing[file] = absent
    return missing


def heavy_packages(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.split("-")[0].split(".")[0].lower() in HEAVY)


class HostArtifacts:
    """Artifacts for the host architecture, built on first use (once per test process)."""

    def __init__(self, base: Path) -> None:
        self.python, self.version = _host_python()
        self.base, self.built = base, dict[str, Path]()

    def __getitem__(self, function: str) -> Path:
        if function not in self.built:
            self.built[function] = build(function, self.base / function, platform.machine(), self.version)
        return self.built[function]


# The tests of the host artifacts share one worker (--dist loadgroup): each artifact is built once, not per worker.
ON_HOST_ARTIFACTS = pytest.mark.xdist_group("host_artifacts")


@pytest.fixture(scope="module")
def host_artifacts(tmp_path_factory: pytest.TempPathFactory) -> HostArtifacts:
    return HostArtifacts(tmp_path_factory.mktemp("artifacts"))


ISOLATED_IMPORT = """
import json, sys, sysconfig
artifact, module, attr = sys.argv[1:4]
sys.path.insert(0, artifact)
import importlib
handler = getattr(importlib.import_module(module), attr)
assert callable(handler)
stdlib = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
outside = sorted(
    name for name, mod in list(sys.modules.items())
    if getattr(mod, "__file__", None)
    and not mod.__file__.startswith(artifact)
    and not any(mod.__file__.startswith(s) for s in stdlib)
)
print(json.dumps({"outside": outside, "modules": sorted(sys.modules)}))
"""


def _isolated_env(tmp: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "NBC_TABLE_NAME": "nbc-artifact-test",
        "NBC_MODEL_STORE": str(tmp / "models"),
    }


@ON_HOST_ARTIFACTS
@pytest.mark.parametrize("function", ["score", "ingest", "audience"])
def test_handler_imports_from_the_artifact_alone(host_artifacts: HostArtifacts, function: str, tmp_path: Path) -> None:
    module, _ = FUNCTIONS[function]
    # -I: no user site, no PYTHON* variables, no cwd on sys.path; -S: no site-packages. Only the artifact.
    proc = subprocess.run(
        [host_artifacts.python, "-I", "-S", "-c", ISOLATED_IMPORT, str(host_artifacts[function]), module, "handler"],
        env=_isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["outside"] == [], report["outside"]
    assert not [m for m in report["modules"] if m.split(".")[0] in HEAVY]


@ON_HOST_ARTIFACTS
def test_scoring_artifact_answers_health_from_the_artifact_alone(host_artifacts: HostArtifacts, tmp_path: Path) -> None:
    """Beyond importing: the artifact's Mangum handler serves an API Gateway v2 request (no AWS call needed)."""
    event = json.loads((ROOT / "events" / "ingest_touchpoints.json").read_text())
    event.pop("body", None)
    event["isBase64Encoded"] = False
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/health"
    event["requestContext"]["http"]["method"] = "GET"
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /health"
    code = """
import json, sys
sys.path.insert(0, sys.argv[1])
from functions.score.app import handler
class Context:
    function_name = "nbc-score"; function_version = "$LATEST"; memory_limit_in_mb = 1769
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:nbc-score"
    aws_request_id = "00000000-0000-0000-0000-000000000001"
    log_group_name = "/aws/lambda/nbc-score"; log_stream_name = "s"
    def get_remaining_time_in_millis(self): return 30000
response = handler(json.loads(sys.argv[2]), Context())
print(json.dumps(response))
"""
    proc = subprocess.run(
        [host_artifacts.python, "-I", "-S", "-c", code, str(host_artifacts["score"]), json.dumps(event)],
        env=_isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    response = json.loads(proc.stdout.strip().splitlines()[-1])
    assert response["statusCode"] == 200, response


@ON_HOST_ARTIFACTS
def test_host_artifacts_ship_no_training_stack_and_resolve_their_libraries(
    host_artifacts: HostArtifacts,
) -> None:
    for function in ("score", "ingest"):
        path = host_artifacts[function]
        assert heavy_packages(path) == []
        assert unresolved_libraries(path) == {}
        assert size_mb(path) < SIZE_LIMIT_MB


@ON_HOST_ARTIFACTS
def test_the_scoring_artifact_ships_bytecode_for_its_python(host_artifacts: HostArtifacts) -> None:
    """/var/task is read-only: without .pyc every cold start recompiles every module it imports (~0.9 s of
    the scoring function's cold start, bench/RESULTS.md). Unchecked-hash .pyc: zip timestamps cannot stale them."""
    path = host_artifacts["score"]
    tag = f"cpython-{host_artifacts.version.replace('.', '')}"
    for module in ("functions/score/app.py", "model/scoring/tree_scorer.py", "numpy/__init__.py", "fastapi/routing.py"):
        source = path / module
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        assert pyc.is_file(), pyc
        assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b01, pyc  # hash-based, not checked
    assert not list(path.glob("numpy/**/tests")), "numpy's test suites are not shipped"


def test_the_library_check_catches_lightgbm_needing_libgomp(tmp_path: Path) -> None:
    """The checker is not vacuous: LightGBM's library (in the training environment) needs libgomp."""
    spec = importlib.util.find_spec("lightgbm")  # located, not imported (that would take seconds)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("lightgbm is not installed (training extra)")
    lib = next(Path(next(iter(spec.submodule_search_locations))).rglob("lib_lightgbm.so"))
    shutil.copy(lib, tmp_path / lib.name)
    assert unresolved_libraries(tmp_path) == {lib.name: ["libgomp.so.1"]}
    (tmp_path / "lightgbm").mkdir()
    assert heavy_packages(tmp_path) == ["lightgbm"]


def test_sam_build_without_docker_produces_deployable_arm64_artifacts(tmp_path: Path) -> None:
    """`sam build` itself (makefile build method, in source): every function, arm64, checked like the above."""
    uv = [shutil.which("uv") or "python3"] + ([] if shutil.which("uv") else ["-m", "uv"])  # as the Makefile
    out = tmp_path / "sam"
    proc = subprocess.run(
        [*uv, *SAM, "build", "--template", str(ROOT / "template.yaml"), "--build-in-source", "--build-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        timeout=300,  # five functions, each cross-installed from the lock
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    sizes = {}
    for logical_id in (
        "IngestFunction",
        "IngestQueueFunction",
        "AggregatorFunction",
        "ScoreFunction",
        "AudienceFunction",
    ):
        path = out / logical_id
        folder = {"IngestFunction": "ingest", "IngestQueueFunction": "ingest_queue"}.get(
            logical_id, logical_id.removesuffix("Function").lower()
        )
        assert (path / "functions" / folder / "app.py").is_file(), logical_id
        assert (path / "model" / "__init__.py").is_file(), logical_id
        assert heavy_packages(path) == [], logical_id
        assert unresolved_libraries(path) == {}, logical_id
        assert machines(path) == {"AArch64"}, logical_id
        sizes[logical_id] = size_mb(path)
        assert sizes[logical_id] < SIZE_LIMIT_MB, (logical_id, sizes[logical_id])
    print(json.dumps({k: round(v, 1) for k, v in sizes.items()}))  # shown with -s; recorded in bench/RESULTS.md
