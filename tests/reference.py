"""The tests' one reference construction, written from the definitions and independent of the package's code.

- ``rho(m, k, parity)``: det(M)^((1-parity)/2) M (x) ... (x) M by numpy's kron.
- ``character(m, k, parity)``: its trace, tr(M)^k det(M)^((1-parity)/2).
- ``invariant_count(gs, K, k, parity)``: the dimension of the space of invariant order-k filters on a K^d
  grid by the character formula (1/|G|) sum_g #(pixels fixed by M(g)) chi(g); ``K=1`` counts the invariant
  vectors of rho itself, order k_in + k_out counts equivariant kernels, order k_a + k_b + k_out counts
  equivariant bilinear maps.
- ``symmetric_square_count(gs, k, parity, k_out, parity_out)``: the dimension of the equivariant linear maps from
  the symmetric square Sym^2 of rho_{k,parity} to rho_{k_out,parity_out}, by the character formula
  (1/|G|) sum_g chi_out(g) (chi(g)^2 + chi(g^2)) / 2 (equivariant quadratic maps of one field).
- ``SUBGROUP_GSPACES_2D`` / ``_3D``: escnn gspaces of subgroups of B_d acting by signed permutations.

Only the signed permutation matrices are taken from the package (``group_matrices``), and those are checked
against escnn's own ``basespace_action`` in ``tests/test_groups.py``.
"""
import itertools

import numpy as np
from escnn import gspaces

from escnn_tensor import group_matrices

# name -> factory; every one is a subgroup of B_d acting by signed permutation matrices
SUBGROUP_GSPACES_2D = {
    "C4": lambda: gspaces.rot2dOnR2(N=4),
    "C2": lambda: gspaces.rot2dOnR2(N=2),
    "flip_x": lambda: gspaces.flip2dOnR2(axis=0.0),
    "flip_y": lambda: gspaces.flip2dOnR2(axis=np.pi / 2),
    "flip_diag": lambda: gspaces.flip2dOnR2(axis=np.pi / 4),
    "D2": lambda: gspaces.flipRot2dOnR2(N=2),
    "trivial2": lambda: gspaces.trivialOnR2(),
}
SUBGROUP_GSPACES_3D = {
    "O": lambda: gspaces.octaOnR3(),
    "C4z": lambda: gspaces.rot2dOnR3(n=4),
    "D4z": lambda: gspaces.dihedralOnR3(n=4),
    "C4v": lambda: gspaces.conicalOnR3(n=4),
    "D4h": lambda: gspaces.fullCylindricalOnR3(n=4),
    "mirror": lambda: gspaces.mirOnR3(),
    "inversion": lambda: gspaces.invOnR3(),
    "trivial3": lambda: gspaces.trivialOnR3(),
}


def rho(m, k, parity):
    """det(M)^((1-parity)/2) * M (x) ... (x) M (k factors), float64, from numpy directly."""
    out = np.ones((1, 1))
    for _ in range(k):
        out = np.kron(out, np.asarray(m, dtype=np.float64))
    return out * (np.linalg.det(m) if parity == -1 else 1.0)


def character(m, k, parity):
    """tr rho(g) = tr(M)^k * det(M)^((1-parity)/2)."""
    return float(np.trace(m)) ** k * (round(np.linalg.det(m)) if parity == -1 else 1)


def doubled_offsets(K, d):
    """Doubled centred offsets 2 j - (K - 1) of every pixel of a K^d grid (integers for odd and even K)."""
    idx = np.array(list(itertools.product(range(K), repeat=d)))
    return 2 * idx - (K - 1)


def invariant_count(gs, K, k, parity):
    """dim of the invariant order-k filters on a K^d grid: (1/|G|) sum_g #(pixels fixed by M) chi(g)."""
    mats = group_matrices(gs)
    off = doubled_offsets(K, mats.shape[1])
    total = sum(int(np.all(off @ m.T == off, axis=1).sum()) * character(m, k, parity) for m in mats)
    n = total / len(mats)
    assert abs(n - round(n)) < 1e-9
    return int(round(n))


def symmetric_square_count(gs, k, parity, k_out, parity_out):
    """dim Hom_G(Sym^2 rho_{k,parity}, rho_{k_out,parity_out}) = (1/|G|) sum_g chi_out(g) (chi(g)^2 + chi(g^2)) / 2.

    chi_{Sym^2 V}(g) = (chi_V(g)^2 + chi_V(g^2)) / 2, with g^2 acting by the matrix M(g) M(g); characters are real.
    """
    mats = group_matrices(gs)
    total = sum(
        character(m, k_out, parity_out) * (character(m, k, parity) ** 2 + character(m @ m, k, parity)) / 2
        for m in mats
    )
    n = total / len(mats)
    assert abs(n - round(n)) < 1e-9
    return int(round(n))


def randomize(module, seed=0):
    """Every parameter of ``module`` Gaussian (float64 draws in parameter order, cast to the parameter's dtype), so
    that biases and shifts that start at zero take part in the checks too. Returns ``module``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return module
