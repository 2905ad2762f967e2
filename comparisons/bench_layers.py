"""Benchmark every tensor-field layer of escnn_tensor.nn against the nearest escnn module and a plain ELU+BatchNorm.

Run:  .venv/bin/python comparisons/bench_layers.py [--threads 1] [--reps 15] [--size 32] [--batch 8]

Every row times forward + backward (train mode, gradients to the input and to every parameter) of three things on
the same input, interleaved repetition by repetition (so machine load hits them alike), and prints medians and the
ratios side by side:
  ours   = the escnn_tensor layer;
  escnn  = the nearest escnn module that works on the same fields (for GatedNonLinearity: escnn's ELU on the scalars
           plus GatedNonLinearity1 on the other fields with one extra gate channel each, which the user must supply);
  ELU+BN = torch BatchNorm2d followed by ELU on the same number of channels (a plain CNN's pointwise cost).
Targets (issues 7 and 10): ours <= 1.5x escnn; nonlinearities and norms <= 2x ELU+BN.
Field types (2D, D4 = flipRot2dOnR2(4)): 'mixed' = 16 scalars + 16 vectors + 8 true 2-tensors (80 channels).
"""
from __future__ import annotations

import argparse
import warnings

import torch
from escnn import nn as enn

from _timing import time_interleaved  # noqa: E402  (comparisons/ is on sys.path when run as a script)
import escnn_tensor as et
from escnn_tensor import nn as tnn
from escnn_tensor.nn._norm_gate import batch_norm_gate


def _step(module, x, geometric=True):
    """One forward + backward of ``module`` on a fresh leaf copy of ``x`` (a GeometricTensor or a tensor)."""
    t = (x.tensor if geometric else x).detach().requires_grad_(True)
    out = module(enn.GeometricTensor(t, x.type)) if geometric else module(t)
    out = out.tensor if isinstance(out, enn.GeometricTensor) else out
    out.sum().backward()


class _EscnnGated(torch.nn.Module):
    """escnn's nearest GatedNonLinearity: ELU on the scalars, GatedNonLinearity1 on the rest (with gate channels)."""

    def __init__(self, gs, n_scalars, others):
        super().__init__()
        triv = gs.trivial_repr
        self.elu = enn.ELU(enn.FieldType(gs, [triv] * n_scalars))
        n_gates = len(others.representations)
        self.gate = enn.GatedNonLinearity1(enn.FieldType(gs, [triv] * n_gates) + others)
        self.n_scalars = n_scalars

    def forward(self, x):  # x: tensor (B, scalars + gates + others, ...)
        s, rest = x[:, : self.n_scalars], x[:, self.n_scalars:]
        a = self.elu(enn.GeometricTensor(s, self.elu.in_type)).tensor
        b = self.gate(enn.GeometricTensor(rest, self.gate.in_type)).tensor
        return torch.cat([a, b], 1)


class _FusedPair(torch.nn.Module):
    """TensorBatchNorm then GatedNonLinearity as the models run them: one autograd node in training
    (:func:`escnn_tensor.nn._norm_gate.batch_norm_gate`)."""

    def __init__(self, ft):
        super().__init__()
        self.norm, self.gate = tnn.TensorBatchNorm(ft), tnn.GatedNonLinearity(ft, "elu")

    def forward(self, x):
        return enn.GeometricTensor(batch_norm_gate(self.norm, self.gate, x.tensor), x.type)


def _cases(gs):
    mixed = et.tensor_type(gs, [(0, 1, 16), (1, 1, 16), (2, 1, 8)])
    scalars = et.tensor_type(gs, [(0, 1, 80)])
    tensors2 = et.tensor_type(gs, [(2, 1, 16)])
    others = et.tensor_type(gs, [(1, 1, 16), (2, 1, 8)])
    small = et.tensor_type(gs, [(0, 1, 4), (1, 1, 4), (2, 1, 2)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # label, ft, ours, escnn module, escnn input channels (None: same as ours), kind ('pw' = pointwise layer)
        yield "PointwiseNonLinearity elu, 80 scalars", scalars, tnn.PointwiseNonLinearity(scalars, "elu"), \
            enn.ELU(scalars), None, "pw"
        yield "PointwiseNonLinearity elu+norm, mixed", mixed, \
            tnn.PointwiseNonLinearity(mixed, "elu", nonscalars="norm"), enn.NormNonLinearity(mixed, "n_relu"), \
            None, "pw"
        yield "GatedNonLinearity, mixed", mixed, tnn.GatedNonLinearity(mixed, "elu"), \
            _EscnnGated(gs, 16, others), mixed.size + len(others.representations), "pw"
        yield "VectorNeuronNonLinearity, mixed", mixed, tnn.VectorNeuronNonLinearity(mixed), \
            enn.NormNonLinearity(mixed, "n_relu"), None, "pw"
        yield "TensorProductNonLin., 16 2-tensors", tensors2, tnn.TensorProductNonLinearity(tensors2), \
            enn.TensorProductModule(tensors2, tensors2), None, "pw"
        yield "TensorProductNonLin., 4s+4v+2T", small, tnn.TensorProductNonLinearity(small), None, None, "pw"
        yield "TensorBatchNorm, mixed", mixed, tnn.TensorBatchNorm(mixed), enn.IIDBatchNorm2d(mixed), None, "pw"
        yield "TensorBatchNorm + Gated (a block's pair)", mixed, \
            enn.SequentialModule(tnn.TensorBatchNorm(mixed), tnn.GatedNonLinearity(mixed, "elu")), None, None, "pw"
        yield "same pair fused (as in the models)", mixed, _FusedPair(mixed), None, None, "pw"
        yield "TensorLayerNorm, mixed (vs GroupNorm)", mixed, tnn.TensorLayerNorm(mixed), \
            torch.nn.GroupNorm(1, mixed.size), None, "pw"
        yield "NormMaxPool 2, mixed", mixed, tnn.NormMaxPool(mixed, 2), enn.NormMaxPool(mixed, 2), None, "pool"
        yield "AvgPool 2, mixed", mixed, tnn.AvgPool(mixed, 2), enn.PointwiseAvgPool2D(mixed, 2), None, "pool"
        yield "Upsample 2, mixed", mixed, tnn.Upsample(mixed, 2), enn.R2Upsampling(mixed, 2, mode="nearest"), None, \
            "pool"
        yield "GeometricConvTransposed K3, mixed", mixed, tnn.GeometricConvTransposed(mixed, mixed, 3, padding=1), \
            enn.R2ConvTransposed(mixed, mixed, 3, padding=1), None, "conv"


def run(reps, size, batch):
    gs = et.hyperoctahedral_gspace(2)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, reps={reps}, 2D {size}x{size}, batch {batch};"
          f" median ms per forward+backward (train mode)\n")
    head = (f"{'layer':40s} | {'ours':>7s} {'escnn':>7s} {'ELU+BN':>7s} | {'/escnn':>6s} {'/ELU+BN':>7s}")
    print(head)
    print("-" * len(head))
    for label, ft, ours, theirs, their_channels, kind in _cases(gs):
        x = enn.GeometricTensor(torch.randn(batch, ft.size, size, size), ft)
        plain = torch.nn.Sequential(torch.nn.BatchNorm2d(ft.size), torch.nn.ELU())
        fns = [lambda: _step(ours, x), lambda: _step(plain, x.tensor, geometric=False)]
        if theirs is not None:
            if their_channels is not None:
                xt = torch.randn(batch, their_channels, size, size)
                fns.append(lambda: _step(theirs, xt, geometric=False))
            elif isinstance(theirs, enn.EquivariantModule):
                fns.append(lambda: _step(theirs, x))
            else:
                fns.append(lambda: _step(theirs, x.tensor, geometric=False))
        for m in (ours, plain, theirs):
            if m is not None:
                m.train()
        t = time_interleaved(fns, reps, warmup=2)
        t_ours, t_plain = t[0], t[1]
        t_theirs = t[2] if len(t) > 2 else float("nan")
        ms = lambda v: f"{1e3 * v:7.2f}" if v == v else f"{'-':>7s}"
        r_plain = f"{t_ours / t_plain:7.2f}" if kind == "pw" else f"{'(' + format(t_ours / t_plain, '.2f') + ')':>7s}"
        print(f"{label:40s} | {ms(t_ours)} {ms(t_theirs)} {ms(t_plain)} | {t_ours / t_theirs:6.2f} {r_plain}",
              flush=True)
    print("\n/ELU+BN in parentheses: not a pointwise layer (no target; shown for scale).")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run(args.reps, args.size, args.batch)
