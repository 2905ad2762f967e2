"""How far below a dense Conv2d can a 2D GeometricConv layer go on this CPU? (issues 8 and 10: ≥ 20x ginjax).

Run:  .venv/bin/python comparisons/bench_conv_floor_2d.py [--threads 1] [--reps 5] [--size 64] [--batch 8] [--width 16]

The layer is the hidden layer of the ResNet in bench_models.py: ``width`` scalars + vectors + true 2-tensors in and
out (7 ``width`` channels), kernel 3, circular-free zero padding, batch ``batch``, ``size``^2. Every row is one
training-style forward + backward (the input requires a gradient, as an inner layer), interleaved repetition by
repetition, median, and its ratio to the first row:

  Conv2d                       torch's dense convolution of the same shape (NCHW): the reference
  GeometricConv dense          our default path (kernel expanded by one gather, then that convolution)
  GeometricConv two-stage      fixed invariant filters per input field, then mixing (natural tensor basis)
  Conv2d, NHWC per layer       input and weight converted to channels_last, output back to NCHW (what one layer
                               could do on its own)
  Conv2d, NHWC throughout      input, weight and output all channels_last, no conversion (a model kept in NHWC)
  isotypic: stage 1 / +2 / +3  a cost model, not a layer: the cheapest two-stage form we know, in the basis of
                               D4's irreducible representations. Stage 1: the 9 taps of every channel turned into
                               the 9 "harmonic" coefficients (one depthwise conv, 9 outputs per channel); stage 2:
                               channels regrouped by isotype (one index_select); stage 3: one matrix product per
                               isotype, of the size Schur's lemma allows (multiplicities from the character formula
                               below). Random fixed matrices: the timing of the data movement and products such a
                               layer needs at least (it omits the Clebsch-Gordan coupling of 2-dimensional irreps).

Multiply-adds per output pixel are printed for the dense conv (C^2 K^2), the natural two-stage path
(GeometricConv.two_stage_fraction) and the isotypic mixing (sum over irreps psi of dim(psi) m_in(psi) m_out(psi),
with m_in counted over the K^2 taps of every input field: m(psi) = 1/|G| sum_g chi_field(g) chi_taps(g) chi_psi(g)).
Nothing here is a test.
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
import torch.nn.functional as F
from escnn.nn import GeometricTensor

from _timing import time_interleaved  # noqa: E402  (comparisons/ is on sys.path when run as a script)
import escnn_tensor as et
from escnn_tensor.nn import GeometricConv


def multiplicities(gs, spec, K, taps):
    """Multiplicity of every irrep of the fibre group in the fields of ``spec`` ((k, parity, count) triples),
    times the permutation representation of the K x K taps if ``taps``: ``{irrep name: (dim, multiplicity)}``."""
    G = gs.fibergroup
    offsets = np.array(list(itertools.product(range(-(K // 2), K // 2 + 1), repeat=2)))
    out = {}
    for psi in G.irreps():
        total = 0.0
        for g in G.elements:
            chi_psi = np.trace(psi(g))
            if taps:
                A = np.rint(gs.basespace_action(g)).astype(int)
                chi_taps = int(((offsets @ A.T) == offsets).all(axis=1).sum())
            else:
                chi_taps = 1
            chi_fields = sum(n * np.trace(et.tensor_rep(gs, k, p)(g)) for k, p, n in spec)
            total += chi_fields * chi_taps * chi_psi
        m = int(round(total / G.order()))
        if m:
            out[psi.name] = (psi.size, m)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    K, B, S, W = 3, args.batch, args.size, args.width

    gs = et.hyperoctahedral_gspace(2)
    spec = [(0, 1, W), (1, 1, W), (2, 1, W)]
    ft = et.tensor_type(gs, spec)
    C = ft.size
    dense = GeometricConv(ft, ft, K, padding=1, method="dense")
    two = GeometricConv(ft, ft, K, padding=1, method="two_stage")
    two.load_state_dict(dense.state_dict())
    conv = torch.nn.Conv2d(C, C, K, padding=1, bias=False)
    x = torch.randn(B, C, S, S)
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    w_nhwc = conv.weight.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)

    m_in, m_out = multiplicities(gs, spec, K, True), multiplicities(gs, spec, K, False)
    assert sum(d * m for d, m in m_in.values()) == C * K * K and sum(d * m for d, m in m_out.values()) == C
    iso = [(name, d, m_in[name][1], m_out[name][1]) for name, (d, _) in m_out.items() if name in m_in]
    macs_dense = C * C * K * K
    macs_iso = sum(d * mi * mo for _, d, mi, mo in iso)

    gen = torch.Generator().manual_seed(0)
    harmonics = torch.randn(C * K * K, 1, K, K, generator=gen)
    regroup = torch.randperm(C * K * K, generator=gen)
    mixers = [torch.randn(mo, mi, generator=gen).requires_grad_(True) for _, _, mi, mo in iso]

    def isotypic(stages):
        def f():
            t = x.detach().requires_grad_(True)
            h = F.conv2d(t, harmonics, padding=1, groups=C)  # (B, 9 C, S, S)
            if stages >= 2:
                h = h.index_select(1, regroup)
            if stages >= 3:
                outs, start = [], 0
                for (_, d, mi, mo), w in zip(iso, mixers):
                    blk = h[:, start : start + mi * d].reshape(B, mi, d * S * S)
                    start += mi * d
                    outs.append(torch.bmm(w.unsqueeze(0).expand(B, -1, -1), blk).reshape(B, mo * d, S, S))
                h = torch.cat(outs, 1)
            h.sum().backward()
        return f

    def geo(layer):
        def f():
            t = x.detach().requires_grad_(True)
            layer(GeometricTensor(t, ft)).tensor.sum().backward()
        return f

    def plain():
        t = x.detach().requires_grad_(True)
        conv(t).sum().backward()

    def nhwc_per_layer():
        t = x.detach().requires_grad_(True)
        y = F.conv2d(t.contiguous(memory_format=torch.channels_last), w_nhwc, padding=1).contiguous()
        y.sum().backward()

    def nhwc_throughout():
        t = x_nhwc.detach().requires_grad_(True)
        F.conv2d(t, w_nhwc, padding=1).sum().backward()

    rows = [
        ("Conv2d (NCHW)", plain),
        ("GeometricConv dense", geo(dense)),
        (f"GeometricConv two-stage (frac {two.two_stage_fraction:.2f})", geo(two)),
        ("Conv2d, NHWC per layer", nhwc_per_layer),
        ("Conv2d, NHWC throughout", nhwc_throughout),
        ("isotypic: stage 1 (harmonics)", isotypic(1)),
        ("isotypic: stages 1+2 (regroup)", isotypic(2)),
        ("isotypic: stages 1+2+3 (mixing)", isotypic(3)),
    ]
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, reps={args.reps}; 2D {S}x{S}, batch {B}, "
          f"{W} scalars + {W} vectors + {W} 2-tensors ({C} channels), K={K}; forward + backward, median ms\n")
    print(f"multiply-adds per output pixel: dense conv {macs_dense:,}; natural two-stage "
          f"{two.two_stage_fraction * macs_dense:,.0f} ({two.two_stage_fraction:.2f}); isotypic mixing {macs_iso:,} "
          f"({macs_iso / macs_dense:.2f}) plus stage 1 ({C * K ** 4:,} as a dense 9 x 9 per channel)")
    print("isotypes (irrep, dim, multiplicity in taps x fields, in outputs): "
          + ", ".join(f"{n} {d} {mi} {mo}" for n, d, mi, mo in iso) + "\n")
    times = time_interleaved([f for _, f in rows], args.reps, warmup=1)
    for (label, _), t in zip(rows, times):
        print(f"{label:46s} {1e3 * t:9.1f} ms  {t / times[0]:5.2f}x Conv2d")


if __name__ == "__main__":
    main()
