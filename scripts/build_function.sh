#!/usr/bin/env bash
# Build one Lambda artifact: the shared code (model/, functions/common/) + one function's folder + its runtime
# wheels cross-installed for the Lambda platform. `sam build` calls it through `make build-<LogicalId>`
# (BuildMethod: makefile); tests call it directly for the host architecture.
#
#   scripts/build_function.sh FUNCTION ARTIFACTS_DIR [PRUNED_PACKAGE ...]
#
# Environment: LAMBDA_ARCH (arm64 | x86_64, default arm64), LAMBDA_PYTHON (default 3.12),
#              LAMBDA_GLIBC (default 2_34: Amazon Linux 2023, the python3.12 runtime), NBC_UV (uv command).
#
# Requirements come from uv.lock (uv export): the exact locked versions of the runtime dependencies only;
# PRUNED_PACKAGE names (e.g. fastapi mangum for the non-HTTP functions) are dropped with what only they need.
# Installed with `uv pip --python-platform/--python-version --only-binary :all:` rather than plain pip: pip
# evaluates the lock's environment markers against the *host* interpreter (it picked the python<3.12 numpy
# pin for a 3.12 target), and numpy >= 2.3 ships manylinux_2_28 wheels that pip's manylinux2014 tag misses.
set -euo pipefail

fn=${1:?usage: build_function.sh FUNCTION ARTIFACTS_DIR [PRUNED_PACKAGE ...]}
out=${2:?usage: build_function.sh FUNCTION ARTIFACTS_DIR [PRUNED_PACKAGE ...]}
shift 2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
arch=${LAMBDA_ARCH:-arm64}
py=${LAMBDA_PYTHON:-3.12}
glibc=${LAMBDA_GLIBC:-2_34}
# NBC_UV, not UV: make exports its own UV ("python3 -m uv"), and under `uv tool run sam` that python3 is sam's
# venv, which has no uv module. The uv binary on PATH works everywhere.
UV=${NBC_UV:-}
if [[ -z $UV ]]; then
  if command -v uv >/dev/null 2>&1; then UV=uv; else UV="python3 -m uv"; fi
fi
$UV --version >/dev/null 2>&1 || { echo "uv not found: pip install uv (or set NBC_UV)" >&2; exit 2; }
case $arch in
  arm64 | aarch64) platform=aarch64-manylinux_$glibc ;;
  x86_64 | amd64) platform=x86_64-manylinux_$glibc ;;
  *) echo "unknown LAMBDA_ARCH $arch (arm64 or x86_64)" >&2; exit 2 ;;
esac
[[ -d $root/functions/$fn ]] || { echo "no function folder functions/$fn" >&2; exit 2; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

prune=()
for pkg in "$@"; do prune+=(--prune "$pkg"); done
(cd "$root" && $UV export --quiet --frozen --no-hashes --no-dev --no-emit-project --no-header --no-annotate \
  "${prune[@]}" --output-file "$work/requirements.txt")

# --no-deps: the exported lock is already the full closure; install exactly it, nothing resolved anew.
$UV pip install --quiet --no-deps --target "$out" --python-platform "$platform" --python-version "$py" \
  --only-binary :all: --requirement "$work/requirements.txt"

(cd "$root" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - model functions/__init__.py functions/common \
  "functions/$fn") | tar -xf - -C "$out"
cp "$work/requirements.txt" "$out/requirements.lock.txt"  # what went in, for audits
rm -rf "$out/bin"  # console scripts with host shebangs: useless on Lambda
# numpy's own test suites (~8 MB) are never imported at run time; they would also double in size as bytecode.
if [[ -d $out/numpy ]]; then find "$out/numpy" -type d -name tests -prune -exec rm -rf {} +; fi

# Bytecode. /var/task is read-only on Lambda, so an artifact without .pyc recompiles every module it imports on
# every cold start (~0.9 s of the scoring function's ~1.5 s here). Compiled by an interpreter of the target's
# minor version (the .pyc format is per minor version), as unchecked-hash .pyc: valid whatever timestamps the
# zip keeps, and the artifact never changes in place. LAMBDA_COMPILE_PYTHON names the interpreter; without one
# the artifact is still correct, only its cold start slower, so that is a warning, not an error.
compiler=${LAMBDA_COMPILE_PYTHON:-}
if [[ -z $compiler ]]; then
  for cand in "$(command -v "python$py" || true)" "$HOME"/.pyenv/versions/"$py"*/bin/"python$py" \
    "$(UV_PYTHON_DOWNLOADS=never $UV python find "$py" 2>/dev/null || true)"; do
    if [[ -n $cand && -x $cand ]] &&
      [[ $("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) == "$py" ]]; then
      compiler=$cand
      break
    fi
  done
fi
if [[ -n $compiler ]]; then
  "$compiler" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$out" >/dev/null
else
  echo "warning: no python$py to precompile $fn's bytecode (set LAMBDA_COMPILE_PYTHON); every cold start will" \
    "compile it" >&2
fi

# The scoring path is numpy-only: the training stack must never reach an artifact (size, libgomp on Lambda).
for banned in lightgbm scipy pandas sklearn; do
  if [[ -e $out/$banned ]]; then echo "artifact $fn contains $banned" >&2; exit 1; fi
done
echo "built $fn for $arch/python$py: $(du -sm "$out" | cut -f1) MB in $out"
