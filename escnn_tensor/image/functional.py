r"""The functional core of geometric images: pure functions of tensors in grid layout.

Grid layout (ginjax's): an image is ``(*lead, N, .., N, D, .., D)``: ``D`` spatial axes, array axis ``i`` along
``+x_i``, then ``k`` tensor axes whose index value ``i`` is the component along ``x_i``.
:class:`~escnn_tensor.image.GeometricImage` and :class:`~escnn_tensor.image.MultiImage` are thin classes over
these functions.

Group action (the convention shared with ginjax and with escnn's ``GeometricTensor.transform``): a signed
permutation matrix :math:`M` acts by :math:`(g \cdot I)(M a) = \rho_{k,parity}(g)\, I(a)` with pixel
coordinates :math:`a` centred on the grid centre, so the action is an exact permutation of pixels (odd or
even ``N``) followed by signs.
"""
from __future__ import annotations

import itertools
from typing import Optional, Tuple

import numpy as np
import torch
from escnn.group import GroupElement
from escnn.gspaces import GSpace

from ..groups import check_dimension, check_gspace, check_signed_permutation, group_matrix, hyperoctahedral_gspace

__all__ = [
    "levi_civita_symbol",
    "as_signed_permutation",
    "act",
    "rotate_is_torus",
    "tensor_product",
    "wrap_pad",
    "check_is_torus",
    "allclose",
]

TINY = 1e-5  # ginjax's TINY: normalize() leaves an image unchanged below it; default tolerance of ==


def allclose(a: torch.Tensor, b: torch.Tensor, rtol: float = TINY, atol: float = TINY) -> bool:
    """``torch.allclose(a, b, rtol, atol)`` for tensors of one shape, in their promoted dtype on ``a``'s device
    (ginjax's ``jnp.allclose``; the equality of geometric images)."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    return bool(torch.allclose(a.to(dtype), b.to(device=a.device, dtype=dtype), rtol=rtol, atol=atol))


def check_is_torus(is_torus, D: int) -> Tuple[bool, ...]:
    if isinstance(is_torus, (bool, np.bool_)):
        return (bool(is_torus),) * D
    if isinstance(is_torus, (tuple, list)) and len(is_torus) == D and all(
        isinstance(t, (bool, np.bool_)) for t in is_torus
    ):
        return tuple(bool(t) for t in is_torus)
    raise TypeError(f"is_torus must be a bool or a tuple of {D} bools (one per axis), got {is_torus!r}")


def levi_civita_symbol(D: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    r"""The Levi-Civita symbol :math:`\varepsilon`, shape ``(D,)*D``: +1 on even permutations of
    ``(0, ..., D-1)``, -1 on odd ones, 0 where an index repeats (so ``eps[0, 1] = +1`` in 2D and
    ``eps[0, 1, 2] = +1`` in 3D, as in ginjax)."""
    D = check_dimension(D, "D")
    eps = torch.zeros((D,) * D, dtype=dtype, device=device)
    for perm in itertools.permutations(range(D)):
        inversions = sum(1 for i in range(D) for j in range(i + 1, D) if perm[i] > perm[j])
        eps[perm] = -1.0 if inversions % 2 else 1.0
    return eps


def as_signed_permutation(g, D: int, gspace: Optional[GSpace] = None) -> np.ndarray:
    """The ``(D, D)`` int64 signed permutation matrix of ``g``.

    Args:
        g: a ``(D, D)`` signed permutation matrix (numpy array, torch tensor or nested list; entries in
            ``{-1, 0, 1}``, one non-zero per row and column), or an escnn ``GroupElement``. An element is
            turned into its matrix with :func:`escnn_tensor.group_matrix` on ``gspace`` (default
            ``hyperoctahedral_gspace(D)``; pass the gspace for elements of a subgroup's group).
        D: the dimension.
        gspace: only used for a ``GroupElement``.

    Raises:
        TypeError / ValueError: ``g`` is neither, or not a signed permutation matrix (e.g. a rotation by
            45 degrees, which does not map the grid onto itself).
    """
    if isinstance(g, GroupElement):
        gs = hyperoctahedral_gspace(D) if gspace is None else gspace
        if check_gspace(gs) != D:
            raise ValueError(f"gspace acts on R^{gs.dimensionality}, but the image has D={D}")
        if g.group != gs.fibergroup:
            raise ValueError(
                f"g is an element of {g.group.name}, not of {gs.fibergroup.name} (the group of gspace "
                f"{gs.name}); pass the gspace whose group g belongs to as gspace=..."
            )
        return group_matrix(gs, g)
    return check_signed_permutation(g, D, "g")


def act(x: torch.Tensor, M: np.ndarray, k: int, parity: int, D: int) -> torch.Tensor:
    """``new(M a) = rho(g) old(a)`` on data ``x`` of shape ``(*lead, N,..,N, D,..,D)``; exact (index moves, signs)."""
    lead = x.dim() - D - k
    sp = list(range(lead, lead + D))
    perm = [int(np.flatnonzero(M[i])[0]) for i in range(D)]  # M[i, perm[i]] = sign[i]
    sign = [int(M[i, perm[i]]) for i in range(D)]
    # pixels: new axis i is old axis perm[i], flipped (centred coordinate -> minus itself) where sign[i] = -1
    order = list(range(lead)) + [sp[p] for p in perm] + list(range(lead + D, x.dim()))
    x = x.permute(order)
    flips = [sp[i] for i in range(D) if sign[i] < 0]
    if flips:
        x = x.flip(flips)
    # tensor indices: (M v)_i = sign[i] v[perm[i]] on every index
    index = torch.tensor(perm, device=x.device)
    signs = torch.tensor(sign, dtype=x.dtype, device=x.device)
    for a in range(lead + D, x.dim()):
        shape = [1] * x.dim()
        shape[a] = D
        x = x.index_select(a, index) * signs.reshape(shape)
    if parity == -1 and round(np.linalg.det(M)) < 0:
        x = -x
    return x.contiguous()


def rotate_is_torus(is_torus: Tuple[bool, ...], M: np.ndarray) -> Tuple[bool, ...]:
    return tuple(is_torus[int(np.flatnonzero(M[i])[0])] for i in range(len(is_torus)))


def tensor_product(a: torch.Tensor, ka: int, b: torch.Tensor, kb: int) -> torch.Tensor:
    """Pixelwise outer product: ``out[..., i.., j..] = a[..., i..] b[..., j..]`` (a's indices first)."""
    a = a.reshape(a.shape + (1,) * kb)
    b = b.reshape(b.shape[: b.dim() - kb] + (1,) * ka + b.shape[b.dim() - kb :])
    return a * b


def wrap_pad(x: torch.Tensor, axis: int, before: int, after: int) -> torch.Tensor:
    n = x.shape[axis]
    idx = torch.arange(-before, n + after, device=x.device) % n
    return x.index_select(axis, idx)


