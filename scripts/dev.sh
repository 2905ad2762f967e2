#!/usr/bin/env bash
# One entry point for set-up, the main example and the tests.
#
#   bash scripts/dev.sh example   # set up if needed, then the main job: python -m escnn_tensor.compare --quick
#   bash scripts/dev.sh example [args]        # the same with more options (e.g. --out DIR, --task tidal)
#   bash scripts/dev.sh example NAME [args]   # an example script instead: examples/NAME.py (gravity, ...)
#   bash scripts/dev.sh test      # set up if needed, then run the whole test suite (extra args go to pytest)
#   bash scripts/dev.sh setup     # only set up
#
# Set-up is idempotent and quick when everything is there: a project-local virtual environment .venv
# (override with ESCNN_TENSOR_VENV) with torch installed first at a version this machine has on disk
# (ESCNN_TENSOR_TORCH, default torch==2.13.0, so pip takes the CPU wheel instead of a multi-GB CUDA build),
# Debian's gfortran when it is missing (py3nj, which escnn needs, compiles Fortran), then this package with
# its dev extra. The test command also makes .venv-ginjax (override with ESCNN_TENSOR_GINJAX_VENV), a second
# environment for the reference implementation ginjax (it needs numpy >= 2.2, escnn needs numpy < 2), with the
# same CPU torch installed first there too (ginjax requires an unpinned torch, which would otherwise pull a
# CUDA build with its nvidia libraries and triton, ~6 GB); when that cannot be made the cross-check tests skip
# and say why. Both environments together take ~2.7 GB (measured after a set-up and a test run, 2026-12-06).
# A set-up that does any work ends by printing its time and the disk size of the environments.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${ESCNN_TENSOR_VENV:-$ROOT/.venv}"
GVENV="${ESCNN_TENSOR_GINJAX_VENV:-$ROOT/.venv-ginjax}"
TORCH_SPEC="${ESCNN_TENSOR_TORCH:-torch==2.13.0}"
PY="${PYTHON:-python3}"
GINJAX_SPEC="ginjax==0.1.8"
# --no-compile: no .pyc for every installed module (~0.5 GB over both environments); Python writes them for
# what it imports. --no-cache-dir: no second copy of the downloaded wheels under ~/.cache/pip.
PIP_QUIET=(-q --disable-pip-version-check --no-compile --no-cache-dir)
DID_SETUP=0
SETUP_T0=$SECONDS

log() { printf '[dev.sh] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else log "need root to run: $*"; return 1
    fi
}

ensure_gfortran() {
    command -v gfortran >/dev/null 2>&1 && return 0
    log "installing Debian's gfortran (py3nj, needed by escnn, compiles Fortran)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq gfortran >/dev/null
}

stamp_value() {
    # changes whenever the requirements or this script change
    cat pyproject.toml scripts/dev.sh | sha256sum | cut -c1-16
    echo "$TORCH_SPEC"
}

setup() {
    local stamp="$VENV/.escnn-tensor-setup"
    local want
    want="$(stamp_value)"
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    local t0=$SECONDS
    DID_SETUP=1
    [ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
    if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
        log "installing $TORCH_SPEC (first, so nothing pulls a CUDA build)"
        "$VENV/bin/pip" install "${PIP_QUIET[@]}" "$TORCH_SPEC" 2> >(grep -v "is ignored" >&2)
    fi
    if ! "$VENV/bin/python" -c "import py3nj" >/dev/null 2>&1; then
        ensure_gfortran
    fi
    log "installing escnn_tensor[dev] and its dependencies (escnn, py3nj, ...)"
    "$VENV/bin/pip" install "${PIP_QUIET[@]}" -e ".[dev]" 2> >(grep -v "is ignored" >&2)
    "$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
    echo "$want" >"$stamp"
    log "set-up done in $((SECONDS - t0)) s"
}

setup_ginjax() {
    # ginjax (JAX) needs numpy >= 2.2 and so lives in its own environment; failures only skip its tests.
    local stamp="$GVENV/.ginjax-setup"
    local want="$GINJAX_SPEC $TORCH_SPEC"
    if [ -x "$GVENV/bin/python" ] && [ -f "$stamp" ]; then
        if [ "$(cat "$stamp")" != "$want" ]; then
            log "note: $GVENV was made by an older set-up (maybe with a CUDA torch, ~6 GB); it is used as it is;" \
                "delete it and rerun to rebuild it with $TORCH_SPEC (CPU)"
        fi
        export ESCNN_TENSOR_GINJAX_PYTHON="$GVENV/bin/python"
        return 0
    fi
    local t0=$SECONDS
    DID_SETUP=1
    log "creating $GVENV with $GINJAX_SPEC (the reference implementation, for cross-checks) on $TORCH_SPEC"
    if { [ -x "$GVENV/bin/python" ] || "$PY" -m venv "$GVENV"; } &&
        { "$GVENV/bin/python" -c "import torch" >/dev/null 2>&1 ||
            "$GVENV/bin/pip" install "${PIP_QUIET[@]}" "$TORCH_SPEC" 2> >(grep -v "is ignored" >&2); } &&
        "$GVENV/bin/pip" install "${PIP_QUIET[@]}" "$GINJAX_SPEC" 2> >(grep -v "is ignored" >&2) &&
        "$GVENV/bin/python" -c "import ginjax" >/dev/null 2>&1; then
        echo "$want" >"$stamp"
        export ESCNN_TENSOR_GINJAX_PYTHON="$GVENV/bin/python"
        log "ginjax environment ready in $((SECONDS - t0)) s"
    else
        export ESCNN_TENSOR_GINJAX_UNAVAILABLE="could not create $GVENV with $GINJAX_SPEC (see the log above)"
        log "WARNING: $ESCNN_TENSOR_GINJAX_UNAVAILABLE; the ginjax cross-checks will skip"
    fi
}

report_setup() {
    # after a set-up that did work: its time and the disk size of each environment (and their total)
    [ "$DID_SETUP" = 1 ] || return 0
    local sizes
    sizes="$(du -sch "$@" 2>/dev/null | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}')"
    log "set-up took $((SECONDS - SETUP_T0)) s; disk: $sizes"
}

cmd="${1:-test}"
[ $# -gt 0 ] && shift
case "$cmd" in
setup)
    setup
    setup_ginjax
    report_setup "$VENV" "$GVENV"
    ;;
example)
    setup
    report_setup "$VENV"
    if [ $# -gt 0 ] && [ -f "examples/$1.py" ]; then
        name="$1"; shift
        exec "$VENV/bin/python" "examples/$name.py" "$@"
    fi
    # the main job: the quick head-to-head (3 tasks x geometric / steerable / plain / plain + augmentation)
    exec "$VENV/bin/python" -m escnn_tensor.compare --quick "$@"
    ;;
test)
    setup
    setup_ginjax
    report_setup "$VENV" "$GVENV"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
*)
    echo "usage: bash scripts/dev.sh {example|test|setup} [args...]" >&2
    exit 2
    ;;
esac
