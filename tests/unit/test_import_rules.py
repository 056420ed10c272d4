"""The dependency rules of the tree (docs/architecture.md), checked by walking every module's imports with ast.

functions/ -> model/; training/ -> model/; nbc/ -> everything; model/domain -> nothing of the project outside
model/domain; model/scoring -> model/domain only; model/adapters -> model/domain (and model/scoring only in
model_service.py, which wires the predictor to the registry); nothing in model/ or functions/ imports training/
or nbc/; the scoring function never imports pandas, scikit-learn, lightgbm or dask (not even lazily).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("model", "functions", "training", "nbc", "tests", "bench")
HEAVY = ("pandas", "sklearn", "lightgbm", "dask")


def imports(path: Path) -> set[str]:
    """Every module name imported anywhere in the file (top level, functions, TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def project_imports(path: Path) -> set[str]:
    return {m for m in imports(path) if m.split(".")[0] in PROJECT}


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


RULES = {
    "model/domain": ("model.domain",),
    "model/scoring": ("model.domain", "model.scoring"),
    "model/adapters": ("model.domain", "model.adapters"),
    "functions": ("model", "functions"),
    "training": ("model", "training"),
}


@pytest.mark.parametrize("folder", list(RULES))
def test_each_layer_imports_only_what_it_may(folder: str) -> None:
    broken = []
    for path in files(folder):
        may = RULES[folder]
        if path.name == "model_service.py" and folder == "model/adapters":
            may = (*may, "model.scoring")  # the one place the predictor meets the registry
        for module in project_imports(path):
            if module in ("model", "model.domain", "model.scoring", "model.adapters"):
                continue  # `from model.adapters import aws` is checked through its full name
            if not allowed(module, may):
                broken.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not broken, "\n".join(broken)


def _scoring_closure() -> set[Path]:
    """Every project file the scoring function can reach from its handler."""
    seen: set[Path] = set()
    todo = [ROOT / "functions/score/app.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in project_imports(path):
            parts = module.split(".")
            for k in range(len(parts), 0, -1):
                cand = ROOT.joinpath(*parts[:k])
                for target in (cand.with_suffix(".py"), cand / "__init__.py"):
                    if target.is_file():
                        todo.append(target)
                        break
                else:
                    continue
                break
    return seen


def test_the_scoring_function_never_imports_heavy_libraries() -> None:
    reached = _scoring_closure()
    assert ROOT / "model/scoring/tree_scorer.py" in reached  # the walk does follow the imports
    heavy = [f"{p.relative_to(ROOT)} imports {m}" for p in reached for m in imports(p) if m.split(".")[0] in HEAVY]
    # The predictor's LightGBM fallback is for training and tests only; the artifact has no lightgbm.
    heavy = [h for h in heavy if h != "model/scoring/predictor.py imports lightgbm"]
    assert not heavy, "\n".join(heavy)


def test_the_rules_fail_on_a_broken_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from training.dataset import build\nimport boto3\n")
    assert not allowed("training.dataset", RULES["model/domain"])
    assert "training.dataset" in project_imports(bad)


def test_the_domain_is_pure() -> None:
    io = ("boto3", "botocore", "aws_lambda_powertools", "fastapi", "lightgbm", "polars", "pyarrow")
    broken = [
        f"{p.relative_to(ROOT)} imports {m}" for p in files("model/domain") for m in imports(p) if m.split(".")[0] in io
    ]
    assert not broken, "\n".join(broken)
