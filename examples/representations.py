"""Tensor fields in escnn: build tensor FieldTypes for d=2 and d=3 and check escnn's own convolutions on them.

Run: ``bash scripts/dev.sh example representations`` (or ``python examples/representations.py``).

For every (d, k, parity) it prints the size d**k of the representation, its decomposition into escnn irreps
(irrep id x multiplicity) and the equivariance error of escnn's R2Conv / R3Conv from a set of low-order fields to
that tensor field, measured over every group element with GeometricTensor.transform (max relative error) from an input of one scalar, pseudoscalar, vector and pseudovector field. escnn
samples its kernel basis in float32, so these errors are ~1e-7 even in float64; a convention mistake in the
tensor representation would show up as an error of order 1.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import List, Optional

import torch
from escnn import nn

import escnn_tensor as et
from escnn_tensor.testing import equivariance_errors, random_input


def _irreps(rep) -> str:
    counts = Counter(rep.irreps)
    return " + ".join(f"{m}x{i}" if m > 1 else f"{i}" for i, m in counts.items())


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-k-2d", type=int, default=3, help="largest tensor order in 2D (default 3)")
    parser.add_argument("--max-k-3d", type=int, default=2, help="largest tensor order in 3D (default 2)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"{'d':>2} {'k':>2} {'parity':>6} {'size':>5}  {'equiv. error':>12}  irreps")
    for d, kmax in ((2, args.max_k_2d), (3, args.max_k_3d)):
        gs = et.hyperoctahedral_gspace(d)
        conv_cls = nn.R2Conv if d == 2 else nn.R3Conv
        inp = et.tensor_type(gs, {(0, 1): 1, (0, -1): 1, (1, 1): 1, (1, -1): 1})
        for k in range(kmax + 1):
            for parity in (1, -1):
                t0 = time.time()
                out = et.tensor_type(gs, [(k, parity, 1)])
                conv = conv_cls(inp, out, kernel_size=5, padding=2).double().eval()
                with torch.no_grad():
                    conv.weights.normal_()
                x = random_input(inp, spatial=9, batch=1)
                err = f"{max(equivariance_errors(conv, x).values()):.1e}"
                rep = out.representations[0]
                print(f"{d:>2} {k:>2} {parity:>+6d} {rep.size:>5}  {err:>12}  {_irreps(rep)}  ({time.time() - t0:.1f}s)")


if __name__ == "__main__":
    main()
