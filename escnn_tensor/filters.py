r"""Invariant filters: a basis of all tensor filters on the pixel grid that the group leaves unchanged.

A filter of order ``k`` and parity ``parity`` on a ``kernel_size**d`` grid is a map :math:`C` from pixel
offsets :math:`a` (coordinates centred on the kernel's centre: ``a_i = j_i - (kernel_size - 1)/2``, which
is half-integer for even sizes) to order-``k`` tensors. A group element :math:`g` acts by

.. math::

    (g \cdot C)(a) = \rho_{k,parity}(g)\, C(M(g)^{-1} a),

and :math:`C` is *invariant* when :math:`g \cdot C = C` for all :math:`g`. Because the group permutes the
pixels, the invariant filters split over pixel orbits: on the orbit of a representative :math:`a` with
stabiliser :math:`H`, they are :math:`C(M(g) a) = \rho(g) v` for :math:`v` fixed by :math:`\rho(H)`.

Layout: filters are returned in *grid layout* (array axis ``i`` runs along ``+x_i``; see
:mod:`escnn_tensor.groups`), shape ``(n_filters,) + (kernel_size,)*d + (d,)*k``.
"""
from __future__ import annotations

import functools
import itertools
from typing import Optional

import numpy as np
import torch
from escnn.gspaces import GSpace

from .groups import _action, is_integer
from .representations import check_order, check_parity, tensor_matrix

__all__ = ["invariant_filters", "num_invariant_filters"]


def _check_kernel_size(kernel_size) -> int:
    if not is_integer(kernel_size):
        raise TypeError(f"kernel_size must be a positive integer, got {kernel_size!r} of type {type(kernel_size).__name__}")
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive integer, got {kernel_size}")
    return int(kernel_size)


def _fixed_basis(P: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Orthonormal basis (columns) of the range of the projector ``P``, by Gram-Schmidt on its columns in order."""
    basis = []
    for c in range(P.shape[1]):
        v = P[:, c].copy()
        for b in basis:
            v -= b * (b @ v)
        for b in basis:  # second pass for numerical orthogonality
            v -= b * (b @ v)
        nv = np.linalg.norm(v)
        if nv > tol:
            basis.append(v / nv)
    if not basis:
        return np.zeros((P.shape[0], 0))
    return np.stack(basis, axis=1)


@functools.lru_cache(maxsize=None)
def _filters_np(key: str, matrices_bytes: bytes, d: int, kernel_size: int, k: int, parity: int) -> np.ndarray:
    mats = np.frombuffer(matrices_bytes, dtype=np.int64).reshape(-1, d, d)
    n_t = d**k
    reps = np.stack([tensor_matrix(m, k, parity) for m in mats]).astype(np.float64)  # (|G|, n_t, n_t)
    # pixel offsets, doubled so they are integers for even kernel sizes too
    idx = np.array(list(itertools.product(range(kernel_size), repeat=d)), dtype=np.int64)  # (K^d, d)
    off2 = 2 * idx - (kernel_size - 1)
    lookup = {tuple(o): i for i, o in enumerate(off2)}
    # image of every pixel under every element: perm[g, i] = index of M(g) a_i
    perm = np.array([[lookup[tuple(m @ o)] for o in off2] for m in mats])
    seen = np.zeros(len(off2), dtype=bool)
    orbits = []
    for i in range(len(off2)):
        if not seen[i]:
            orbit = sorted(set(perm[:, i].tolist()))
            seen[orbit] = True
            orbits.append((i, orbit))
    # centre outwards: by radius, then by representative
    orbits.sort(key=lambda t: (int((off2[t[0]] ** 2).sum()), t[0]))
    filters = []
    for rep_i, orbit in orbits:
        stab = perm[:, rep_i] == rep_i
        P = reps[stab].mean(axis=0)
        V = _fixed_basis(P)  # (n_t, m)
        if V.shape[1] == 0:
            continue
        # for each pixel of the orbit, one element that maps the representative there
        first = {}
        for g in range(len(mats)):
            first.setdefault(perm[g, rep_i], g)
        norm = 1.0 / np.sqrt(len(orbit))
        for j in range(V.shape[1]):
            f = np.zeros((len(off2), n_t))
            for pix, g in first.items():
                f[pix] = reps[g] @ V[:, j] * norm
            filters.append(f)
    shape = (kernel_size,) * d + (d,) * k
    if not filters:
        out = np.zeros((0,) + shape)
    else:
        out = np.stack(filters).reshape((len(filters),) + shape)
    out.setflags(write=False)
    return out


def invariant_filters(
    gspace: GSpace,
    kernel_size: int,
    k: int,
    parity: int,
    dtype: torch.dtype = torch.float64,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    r"""A basis of all filters invariant under ``gspace``'s group.

    Args:
        gspace: ``hyperoctahedral_gspace(d)`` or an accepted subgroup gspace.
        kernel_size: side of the filter, odd or even (for even sizes the centre lies between pixels).
        k: tensor order of the filter values.
        parity: +1 (tensor filters) or -1 (pseudotensor filters).
        dtype, device: of the returned tensor.

    Returns:
        A new tensor of shape ``(n_filters,) + (kernel_size,)*d + (d,)*k`` in grid layout (array axis ``i``
        along ``+x_i``, tensor index ``i`` = component along ``x_i``). The filters are orthonormal in the
        Frobenius inner product and every one satisfies :math:`g \cdot C = C` exactly up to round-off.
        ``n_filters`` is the dimension of the space of invariant filters. The order is deterministic:
        pixel orbits from the centre outwards, and inside an orbit by Gram-Schmidt on the stabiliser's
        projector. The basis is computed once per (group action, size, k, parity) in float64 and cached as a
        read-only array; every call returns a fresh tensor, so no caller can change another's filters.
    """
    act = _action(gspace)
    kernel_size = _check_kernel_size(kernel_size)
    k = check_order(k)
    parity = check_parity(parity)
    arr = _filters_np(act.key, act.matrices.tobytes(), act.d, kernel_size, k, parity)
    return torch.tensor(arr, dtype=dtype, device=device)


def num_invariant_filters(gspace: GSpace, kernel_size: int, k: int, parity: int) -> int:
    """The number of invariant filters, ``invariant_filters(...).shape[0]`` (computed from the cached basis)."""
    act = _action(gspace)
    arr = _filters_np(act.key, act.matrices.tobytes(), act.d, _check_kernel_size(kernel_size), check_order(k), check_parity(parity))
    return arr.shape[0]
