#!/usr/bin/env bash
# GPU check: on a machine with a CUDA device, run the CUDA tests, then time the layers and models on the GPU.
#
#   bash scripts/gpu_check.sh            # uses .venv/bin/python (override: ESCNN_TENSOR_PYTHON=/path/to/python)
#
# 1. tests/test_cuda.py: every layer of escnn_tensor.nn equivariant on the GPU (float64, every group element) and
#    equal to the CPU, forward + backward under torch.cuda.set_sync_debug_mode("error") (no host synchronisation),
#    one training step per family equal to the CPU's (at most 4 minutes here).
# 2. comparisons/bench_gpu.py: forward + backward times of GeometricConv against torch's Conv2d and escnn's R2Conv
#    on the same channels, and one training step of a ResNet per family (at most 3 minutes).
# The whole check stays under 8 minutes (each stage has a timeout). Without a CUDA device (or with a CPU-only torch
# build, as scripts/dev.sh installs by default) it refuses in one line and exits with status 2.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${ESCNN_TENSOR_PYTHON:-$ROOT/.venv/bin/python}"

if [ ! -x "$PY" ]; then
    echo "gpu_check: no Python at $PY (run bash scripts/dev.sh setup, or set ESCNN_TENSOR_PYTHON)" >&2
    exit 2
fi
if ! msg="$("$PY" - <<'PYEOF'
import sys
import torch
if not torch.cuda.is_available():
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
    print(f"no CUDA device available to torch {torch.__version__} ({build}) in {sys.executable}; run it on a machine "
          f"with a GPU and point ESCNN_TENSOR_PYTHON at a Python whose torch is a CUDA build")
    sys.exit(1)
print(torch.cuda.get_device_name(0))
PYEOF
)"; then
    echo "gpu_check: $msg" >&2
    exit 2
fi
echo "[gpu_check] device: $msg"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

start=$SECONDS
status=0
echo "[gpu_check] 1/2 CUDA tests (tests/test_cuda.py)"
timeout 240 "$PY" -m pytest tests/test_cuda.py -q -rs -p no:cacheprovider || status=1
echo "[gpu_check] tests took $((SECONDS - start)) s"

t1=$SECONDS
echo "[gpu_check] 2/2 timings (comparisons/bench_gpu.py)"
timeout 180 "$PY" comparisons/bench_gpu.py || status=1
echo "[gpu_check] timings took $((SECONDS - t1)) s; total $((SECONDS - start)) s; status $status"
exit $status
