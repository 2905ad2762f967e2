"""Where the fixed cost of a small torch call lies: Python, or ATen (dispatch, allocation, kernel set-up).

Run:  .venv/bin/python comparisons/bench_call_cost.py [--reps 501] [--cpp] [--threads 1] [--sizes 2 16 32 64]

Times, interleaved (medians, thread CPU time, 1 thread), a chain of 40 small element-wise multiplications
(``(2, 28, 4) * (28, 1)``) called from Python, and with ``--cpp`` the same 40 ATen calls made from C++ (an extension
built with ``torch.utils.cpp_extension.load_inline``; needs a C++ compiler, ~30 s to build the first time). It also
times the fused ``TensorBatchNorm -> GatedNonLinearity`` pair (``escnn_tensor.nn._norm_gate.batch_norm_gate``,
forward + backward) as its C kernel and as its PyTorch formulation, against torch's ``BatchNorm2d`` + ``ELU`` on the
same 28 channels (4 scalars, 4 vectors, 4 2-tensors), batch 8, at ``--sizes`` (2x2: almost only fixed costs; 16x16:
the small-model benchmark's size) on ``--threads`` threads, and other formulations of the pair's channel statistics
and batched products at 16x16.

What it answered (docs/speed_layers.md): if most of a call's fixed cost were Python's, moving the fused pair's ~75
torch calls into C++ would close its gap to torch's two fused kernels; the per-call times said it would not, which is
why the pair became one C kernel (``escnn_tensor/nn/csrc/norm_gate_kernels.h``) instead.
"""
from __future__ import annotations

import argparse
import time

import torch

import _timing  # noqa: E402  (comparisons/ is on sys.path when run as a script)
import escnn_tensor as et
from escnn_tensor import _native
from escnn_tensor.nn import GatedNonLinearity, TensorBatchNorm, _norm_gate
from escnn_tensor.nn._norm_gate import batch_norm_gate

_CPP = r"""
#include <torch/extension.h>
at::Tensor chain(at::Tensor x, at::Tensor w, int64_t calls) {
  at::Tensor y = x;
  for (int64_t i = 0; i < calls; ++i) y = y.mul(w);
  return y;
}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=501)
    ap.add_argument("--cpp", action="store_true", help="also the same calls made from a C++ extension")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the fused-pair table (default 1)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2, 16], help="image sides of the fused-pair table")
    args = ap.parse_args()
    torch.set_num_threads(1)
    _timing.CLOCK = time.thread_time
    calls = 40
    x, w = torch.randn(2, 28, 4), torch.randn(28, 1)

    def from_python():
        y = x
        for _ in range(calls):
            y = y.mul(w)
        return y

    fns, labels = [from_python], ["40 muls from Python"]
    if args.cpp:
        from torch.utils.cpp_extension import load_inline

        t0 = time.perf_counter()
        ext = load_inline("escnn_tensor_bench_call_cost", cpp_sources=[_CPP], functions=["chain"],
                          extra_cflags=["-O2"])
        print(f"(C++ extension built or loaded in {time.perf_counter() - t0:.1f} s)")
        fns.append(lambda: ext.chain(x, w, calls))
        labels.append("40 muls from C++")
    t = _timing.time_interleaved(fns, args.reps, warmup=5)
    print(f"torch {torch.__version__}, 1 thread, median thread CPU time of {args.reps} interleaved repetitions")
    for label, v in zip(labels, t):
        print(f"{label:28s} {1e6 * v:8.1f} us  ({1e6 * v / calls:.2f} us per call)")

    ft = et.tensor_type(et.hyperoctahedral_gspace(2), [(0, 1, 4), (1, 1, 4), (2, 1, 4)])
    norm, gate = TensorBatchNorm(ft), GatedNonLinearity(ft, function="elu")
    bn, elu = torch.nn.BatchNorm2d(ft.size), torch.nn.ELU()
    torch.set_num_threads(args.threads)
    if args.threads > 1:
        _timing.CLOCK = time.perf_counter  # thread CPU time would leave out the other threads' work
    clock = "thread CPU time" if args.threads == 1 else "wall time"
    print(f"\nthe fused pair, forward + backward, {args.threads} thread(s), {clock}: its C kernel (used where "
          f"_use_native holds), its PyTorch formulation (ESCNN_TENSOR_NATIVE=0), torch's BatchNorm2d + ELU")
    print(f"{'input':16s} | {'C kernel ms':>11s} | {'PyTorch ms':>10s} | {'BatchNorm2d + ELU ms':>20s} | "
          f"{'C / (BN+ELU)':>12s} | {'PyTorch / C':>11s}")
    for side in args.sizes:
        xi = torch.randn(8, ft.size, side, side, requires_grad=True)
        native = _norm_gate._use_native(xi, norm, gate)

        def formulation():
            with _native.disabled():
                batch_norm_gate(norm, gate, xi).sum().backward()

        t = _timing.time_interleaved([lambda: batch_norm_gate(norm, gate, xi).sum().backward(), formulation,
                                      lambda: elu(bn(xi)).sum().backward()], args.reps // 2, warmup=5)
        c = f"{1e3 * t[0]:11.3f}" if native else f"{'(not used)':>11s}"
        print(f"{'x'.join(map(str, xi.shape)):16s} | {c} | {1e3 * t[1]:10.3f} | {1e3 * t[2]:20.3f} | "
              f"{t[0] / t[2]:12.2f} | {t[1] / t[0]:11.2f}")
    torch.set_num_threads(1)
    _timing.CLOCK = time.thread_time

    # other formulations of the pair's two heaviest steps, at its 16x16 shape: the channel statistics and the
    # batched products (gated channels 24 = 4 vectors + 4 2-tensors, 8 gates)
    x = torch.randn(8, ft.size, 16, 16)
    x3, mu = x.flatten(2), torch.randn(ft.size)
    m, v = torch.randn(8, 24), torch.randn(8, 24, 256)

    def two_pass():  # what the pair does: sum, centre, square, sum
        c = x3 - mu.unsqueeze(1)
        return x3.sum((0, 2)), (c * c).sum((0, 2))

    forms = {
        "statistics: sum, centre, square, sum (used)": two_pass,
        "statistics: torch.var_mean": lambda: torch.var_mean(x3, (0, 2), correction=0),
        "statistics: torch.batch_norm_update_stats": lambda: torch.batch_norm_update_stats(x, None, None, 0.1),
        "product: bmm on an expanded matrix (used)": lambda: torch.bmm(m.unsqueeze(0).expand(8, -1, -1), v),
        "product: broadcasting matmul": lambda: torch.matmul(m, v),
        "weight gradient: bmm, then sum (used)": lambda: torch.bmm(v[:, :8], v.transpose(1, 2)).sum(0),
        "weight gradient: tensordot": lambda: torch.tensordot(v[:, :8], v, ([0, 2], [0, 2])),
    }
    t = _timing.time_interleaved(list(forms.values()), args.reps // 2, warmup=5)
    print(f"\n{'formulation (8x28x16x16 input)':46s} | {'us':>7s}")
    for label, v_ in zip(forms, t):
        print(f"{label:46s} | {1e6 * v_:7.1f}")


if __name__ == "__main__":
    main()
