#!/usr/bin/env bash
# Build MinkowskiEngine 0.5.4 CPU-only from its sdist against the torch already installed in a venv,
# cache the wheel, and install it into that venv.
#
# Usage: scripts/build_minkowski.sh [VENV]          (VENV defaults to .venv)
# Env:   GEN3D_CACHE  cache root (default ~/.cache/gen3d_ros); wheels go under $GEN3D_CACHE/wheels/
#        MAX_JOBS     parallel compile jobs (default: number of cores)
#        FORCE_REBUILD=1  ignore a cached wheel
#
# The wheel links against one torch ABI, so the cache key holds the torch version and the Python tag:
#   $GEN3D_CACHE/wheels/minkowskiengine-0.5.4/torch-<torch version>-<python tag>/MinkowskiEngine-0.5.4-*.whl
# A second run with the same torch reuses the wheel (seconds instead of minutes).
#
# Needs: g++, ninja (apt ninja-build, or pip ninja), libopenblas-dev (installed with apt-get when missing
# and we are root), and torch + numpy in the venv. Python <= 3.11 (the sdist's setup.py needs the stdlib
# distutils for numpy.distutils). Measured: 249 s compile on 2 cores (MAX_JOBS=2), torch 2.13.0+cpu,
# g++ 12.2; ~3 s when the cached wheel is reused.
set -euo pipefail

ME_VERSION=0.5.4
VENV="${1:-.venv}"
PY="$VENV/bin/python"
if [[ ! -x "$PY" ]]; then
    echo "build_minkowski: no python at $PY; pass the venv folder as the first argument" >&2
    exit 2
fi
PY="$(cd "$(dirname "$PY")" && pwd)/python"
VENV_BIN="$(dirname "$PY")"

CACHE_ROOT="${GEN3D_CACHE:-$HOME/.cache/gen3d_ros}"
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__)')" || {
    echo "build_minkowski: torch is not importable from $PY; install torch first" >&2
    exit 2
}
PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE_ROOT/wheels/minkowskiengine-$ME_VERSION/torch-$TORCH_VERSION-$PY_TAG"
mkdir -p "$WHEEL_DIR"

install_wheel() {
    "$PY" -m pip install --no-deps --force-reinstall "$1"
    # Import check: the extension must load against this torch.
    (cd / && "$PY" -c 'import MinkowskiEngine as ME; print("MinkowskiEngine", ME.__version__, "installed")')
}

shopt -s nullglob
cached=("$WHEEL_DIR"/[Mm]inkowski[Ee]ngine-"$ME_VERSION"-*.whl)
shopt -u nullglob
if [[ ${#cached[@]} -gt 0 && "${FORCE_REBUILD:-0}" != "1" ]]; then
    echo "build_minkowski: using cached wheel ${cached[0]}"
    install_wheel "${cached[0]}"
    exit 0
fi

# BLAS headers and library (cblas.h, libopenblas.so).
if ! dpkg -s libopenblas-dev >/dev/null 2>&1; then
    if [[ "$(id -u)" == "0" ]]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y libopenblas-dev
    else
        echo "build_minkowski: libopenblas-dev is missing; run: sudo apt-get install -y libopenblas-dev" >&2
        exit 2
    fi
fi
if ! command -v ninja >/dev/null 2>&1 && [[ ! -x "$VENV_BIN/ninja" ]]; then
    echo "build_minkowski: ninja is missing; run: apt-get install -y ninja-build (or pip install ninja)" >&2
    exit 2
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# The sdist's setup.py imports numpy.distutils at metadata time, which breaks with setuptools' own
# distutils; the stdlib one (Python 3.11) works. --no-build-isolation: setup.py imports torch.
SETUPTOOLS_USE_DISTUTILS=stdlib "$PY" -m pip download --no-deps --no-binary :all: --no-build-isolation \
    "MinkowskiEngine==$ME_VERSION" -d "$WORK"
tar xzf "MinkowskiEngine-$ME_VERSION.tar.gz"
cd "MinkowskiEngine-$ME_VERSION"

# Python >= 3.10 removed the ABC aliases from `collections`.
grep -rl --include='*.py' 'from collections import' MinkowskiEngine | while read -r f; do
    sed -i -E 's/^from collections import Sequence, namedtuple$/from collections import namedtuple\nfrom collections.abc import Sequence/; s/^from collections import Sequence$/from collections.abc import Sequence/' "$f"
done
if grep -rn --include='*.py' -E '^from collections import .*Sequence' MinkowskiEngine; then
    echo "build_minkowski: a collections.Sequence import was left unpatched" >&2
    exit 1
fi

# setup.py calls `pip uninstall` and expects the venv's pip first on PATH.
export PATH="$VENV_BIN:$PATH"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
start=$(date +%s)
SETUPTOOLS_USE_DISTUTILS=stdlib "$PY" setup.py bdist_wheel --dist-dir "$WORK/dist" --blas=openblas --cpu_only
end=$(date +%s)
echo "build_minkowski: built in $((end - start)) s with MAX_JOBS=$MAX_JOBS"

shopt -s nullglob
built=("$WORK"/dist/[Mm]inkowski[Ee]ngine-"$ME_VERSION"-*.whl)
shopt -u nullglob
if [[ ${#built[@]} -eq 0 ]]; then
    echo "build_minkowski: no wheel in $WORK/dist: $(ls "$WORK/dist" 2>&1)" >&2
    exit 1
fi
cp "${built[0]}" "$WHEEL_DIR/"
echo "build_minkowski: cached $WHEEL_DIR/$(basename "${built[0]}")"
install_wheel "$WHEEL_DIR/$(basename "${built[0]}")"
