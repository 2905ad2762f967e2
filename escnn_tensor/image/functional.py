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
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from escnn.group import GroupElement
from escnn.gspaces import GSpace

import torch.nn.functional as F

from ..grid import per_axis, resolve_padding
from ..groups import (
    check_dimension,
    check_gspace,
    check_signed_permutation,
    group_matrix,
    hyperoctahedral_gspace,
    is_integer,
)

__all__ = [
    "levi_civita_symbol",
    "permutation_parity",
    "kronecker_delta_symbol",
    "parse_shape",
    "wrap_indices",
    "get_contraction_indices",
    "multicontract",
    "convolve",
    "convolve_contract",
    "pad",
    "check_grid_allows",
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


_LEVI_CIVITA: Dict[tuple, torch.Tensor] = {}


def permutation_parity(pi: Sequence[int]) -> int:
    """The sign of a sequence of integers read as a permutation: ``+1`` for an even number of inversions,
    ``-1`` for an odd one, and ``0`` when a value repeats (ginjax's ``permutation_parity``).

    ``pi`` is any sequence of integers, e.g. ``(1, 2, 0) -> +1``, ``(1, 0, 2) -> -1``, ``(2, 1, 1) -> 0``.
    """
    try:
        values = [int(v) for v in pi]
    except (TypeError, ValueError):
        raise TypeError(f"pi must be a sequence of integers, got {pi!r}") from None
    if len(set(values)) != len(values):
        return 0
    inversions = sum(1 for i in range(len(values)) for j in range(i + 1, len(values)) if values[i] > values[j])
    return -1 if inversions % 2 else 1


def levi_civita_symbol(D: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    r"""The Levi-Civita symbol :math:`\varepsilon`, shape ``(D,)*D``: +1 on even permutations of
    ``(0, ..., D-1)``, -1 on odd ones, 0 where an index repeats (so ``eps[0, 1] = +1`` in 2D and
    ``eps[0, 1, 2] = +1`` in 3D, as in ginjax).

    Cached, as ginjax's ``LeviCivitaSymbol.get``: the same ``(D, dtype, device)`` returns the same tensor object,
    so **do not modify it in place** (clone it first).
    """
    D = check_dimension(D, "D")
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch dtype, got {dtype!r}")
    device = torch.device("cpu") if device is None else torch.device(device)
    key = (D, dtype, device)
    eps = _LEVI_CIVITA.get(key)
    if eps is None:
        eps = torch.zeros((D,) * D, dtype=dtype, device=device)
        for perm in itertools.permutations(range(D)):
            eps[perm] = float(permutation_parity(perm))
        _LEVI_CIVITA[key] = eps
    return eps


def kronecker_delta_symbol(D: int, k: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """The order-``k`` Kronecker delta, shape ``(D,)*k``: 1 where all indices are equal, 0 elsewhere (ginjax's
    ``KroneckerDeltaSymbol.get``; a new tensor each call)."""
    D = check_dimension(D, "D")
    if not is_integer(k) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    delta = torch.zeros((D,) * k, dtype=dtype, device=device)
    for i in range(D):
        delta[(i,) * k] = 1.0
    return delta


def parse_shape(shape: Sequence[int], D: int) -> Tuple[Tuple[int, ...], int]:
    """Split the shape of one image ``(*spatial, D, .., D)`` (no batch or channel axes) into ``(spatial_dims, k)``
    (ginjax's ``parse_shape``): the first ``D`` entries are the grid, the rest are tensor axes of size ``D``.

    Raises:
        TypeError: ``shape`` is not a tuple/list of ints (e.g. a tensor was passed instead of its shape).
        ValueError: fewer than ``D`` entries, or a tensor axis whose size is not ``D``.
    """
    D = check_dimension(D, "D")
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or not all(is_integer(n) for n in shape):
        raise TypeError(f"shape must be a tuple of integers (the data's .shape), got {type(shape).__name__}")
    if len(shape) < D:
        raise ValueError(f"shape {tuple(shape)} has fewer than D={D} (spatial) axes")
    spatial, tensor = tuple(int(n) for n in shape[:D]), tuple(shape[D:])
    if any(n != D for n in tensor):
        raise ValueError(
            f"shape {tuple(shape)}: the axes after the {D} spatial ones are tensor axes and must have size D={D}, "
            f"got {tensor}"
        )
    return spatial, len(tensor)


def wrap_indices(spatial_dims: Sequence[int], indices: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Pixel indices ``(n, D)`` wrapped onto the torus of side lengths ``spatial_dims``: a tuple of ``D`` index
    tensors ``indices[:, i] % spatial_dims[i]``, ready for advanced indexing ``data[wrap_indices(...)]``
    (ginjax's ``hash``)."""
    indices = torch.as_tensor(indices)
    if indices.dim() != 2 or indices.shape[1] != len(spatial_dims):
        raise ValueError(
            f"indices must have shape (n, {len(spatial_dims)}) (one row per pixel), got {tuple(indices.shape)}"
        )
    return tuple(indices[:, i] % int(n) for i, n in enumerate(spatial_dims))


def get_contraction_indices(
    initial_k: int, final_k: int, swappable_idxs: Sequence[Tuple[int, int]] = ()
) -> List[Tuple[Tuple[int, int], ...]]:
    """Every distinct way to contract a tensor of order ``initial_k`` down to ``final_k`` (ginjax's meaning).

    A contraction is a tuple of ``(initial_k - final_k) / 2`` disjoint pairs ``(i, j)``, ``i < j``, sorted. Two
    contractions that differ only in pair order or order within a pair are the same and listed once. Each pair
    ``(a, b)`` in ``swappable_idxs`` says that indices ``a`` and ``b`` may be exchanged without changing the result
    (e.g. the two indices of a symmetric filter): contractions related by such exchanges are listed once, by the
    lexicographically smallest member of their class.

    Returns:
        a sorted list of contractions, each a tuple of pairs.

    Raises:
        ValueError: ``final_k > initial_k``, ``final_k < 0`` or a difference that is odd.
    """
    for name, v in (("initial_k", initial_k), ("final_k", final_k)):
        if not is_integer(v) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    if final_k > initial_k or (initial_k - final_k) % 2:
        raise ValueError(
            f"initial_k - final_k must be even and >= 0 (each contraction removes two indices), got "
            f"initial_k={initial_k}, final_k={final_k}"
        )
    swaps = [tuple(int(i) for i in p) for p in swappable_idxs]
    n_pairs = (initial_k - final_k) // 2

    def canonical(pairs):
        return tuple(sorted(tuple(sorted(p)) for p in pairs))

    def relabel(pairs, flips):
        m = list(range(initial_k))
        for (a, b), f in zip(swaps, flips):
            if f:
                m[a], m[b] = m[b], m[a]
        return canonical((m[i], m[j]) for i, j in pairs)

    found = set()
    for pairs in itertools.combinations(itertools.combinations(range(initial_k), 2), n_pairs):
        flat = [i for p in pairs for i in p]
        if len(set(flat)) != len(flat):
            continue
        found.add(min(relabel(pairs, f) for f in itertools.product((0, 1), repeat=len(swaps))))
    return sorted(found)


def multicontract(data: torch.Tensor, indices: Sequence[Tuple[int, int]], idx_shift: int = 0) -> torch.Tensor:
    """Kronecker-delta contractions of ``data`` on the pairs ``indices`` of tensor indices (ginjax's
    ``multicontract``): tensor index ``i`` is axis ``idx_shift + i``; the remaining axes keep their order. An empty
    ``indices`` returns ``data`` unchanged (the identity)."""
    pairs = [tuple(p) for p in indices]
    if not pairs:
        return data
    flat = [idx_shift + int(i) for p in pairs for i in p]
    if any(len(p) != 2 for p in pairs) or len(set(flat)) != len(flat) or not all(
        idx_shift <= a < data.dim() for a in flat
    ):
        raise ValueError(
            f"indices must be distinct (i, j) pairs of tensor indices (axes {idx_shift}..{data.dim() - 1} of data "
            f"of shape {tuple(data.shape)}, idx_shift={idx_shift}), got {indices!r}"
        )
    labels = list(range(data.dim()))
    for n, p in enumerate(pairs):
        labels[idx_shift + p[0]] = labels[idx_shift + p[1]] = data.dim() + n
    out = [a for a in range(data.dim()) if a not in flat]
    return torch.einsum(data, labels, out)


def pad(
    x: torch.Tensor,
    padding,
    kernel_size: Sequence[int],
    dilation: Sequence[int],
    is_torus: Tuple[bool, ...],
) -> torch.Tensor:
    """Pad ``x`` of shape ``(B, C, *spatial)`` for a convolution, ginjax's way.

    ``padding``: ``None`` (``'torus'`` if any axis is a torus, else ``'same'``), ``'torus'`` (the ``'same'``
    amounts, wrapped around on the periodic axes and zero on the others), or any padding of
    :mod:`escnn_tensor.grid` (``'same'``, ``'valid'``, an int, ``D`` ints, ``D`` ``(before, after)`` pairs);
    strings are case-insensitive. ``'torus'``/``'same'`` need odd kernel sides.
    """
    D = len(is_torus)
    if padding is None:
        padding = "torus" if any(is_torus) else "same"
    torus = isinstance(padding, str) and padding.lower() == "torus"
    if isinstance(padding, str) and padding.lower() in ("torus", "same") and any(m % 2 == 0 for m in kernel_size):
        raise ValueError(
            f"padding={padding!r} needs an odd filter side (the centre is a pixel), got "
            f"{kernel_size[0] if len(set(kernel_size)) == 1 else tuple(kernel_size)}; give "
            f"the padding explicitly as an int or (before, after) pairs, or 'VALID'"
        )
    pairs = resolve_padding("same" if torus else padding, D, tuple(kernel_size), tuple(dilation))
    if torus:
        for i in range(D):
            if is_torus[i]:
                x = wrap_pad(x, 2 + i, *pairs[i])
                pairs[i] = (0, 0)
    flat = [p for pair in reversed(pairs) for p in pair]  # F.pad wants the last axis first
    return F.pad(x, flat) if any(flat) else x


def _conv_args(D, image, filter_image, is_torus, stride, rhs_dilation, lhs_dilation, name):
    D = check_dimension(D, "D")
    for arg, t in (("image", image), ("filter_image", filter_image)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name}: {arg} must be a floating-point torch tensor, got {type(t).__name__}")
    if image.dim() < 2 + D or filter_image.dim() < 2 + D:
        raise ValueError(
            f"{name}: image must be (batch, in_c, *spatial, *tensor) and filter_image (out_c, in_c, *spatial, "
            f"*tensor) with D={D} spatial axes, got shapes {tuple(image.shape)} and {tuple(filter_image.shape)}"
        )
    if image.shape[1] != filter_image.shape[1]:
        raise ValueError(
            f"{name}: the second axes (in_c) of image and filter_image must be equal, got image "
            f"{tuple(image.shape)} and filter {tuple(filter_image.shape)}"
        )
    spatial, ka = parse_shape(tuple(image.shape[2:]), D)
    fspatial, kb = parse_shape(tuple(filter_image.shape[2:]), D)
    if lhs_dilation is not None and any(v != 1 for v in per_axis(lhs_dilation, D, "lhs_dilation")):
        raise ValueError(
            f"{name}: lhs_dilation (ginjax's transposed convolution) is not supported; use "
            f"GeometricImage.unpool or escnn_tensor.nn's transposed convolution, got lhs_dilation={lhs_dilation!r}"
        )
    torus = check_is_torus(is_torus, D)
    return D, spatial, ka, fspatial, kb, per_axis(stride, D, "stride"), per_axis(rhs_dilation, D, "rhs_dilation"), torus


def convolve(
    D: int,
    image: torch.Tensor,
    filter_image: torch.Tensor,
    is_torus: Union[bool, Tuple[bool, ...]],
    stride=1,
    padding=None,
    lhs_dilation=None,
    rhs_dilation=1,
) -> torch.Tensor:
    r"""Geometric convolution of multi-channel images with filters carrying output and input channels
    (ginjax's functional ``convolve``; a cross-correlation).

    .. math::

        \mathrm{out}[b, o, j] = \sum_{i} \sum_{m} \mathrm{image}[b, i, s j + e m - p] \otimes
        \mathrm{filter}[o, i, m]

    with the image's ``k_a`` tensor indices first, then the filter's ``k_b`` (order ``k_a + k_b``); out-of-range
    pixels wrap around on torus axes (``padding='torus'``) or read zero.

    Args:
        D: 2 or 3.
        image: ``(batch, in_c, *spatial, (D,)*k_a)``; the grid may be rectangular.
        filter_image: ``(out_c, in_c, *filter_spatial, (D,)*k_b)``.
        is_torus: bool or ``D`` bools (used by ``padding=None``/``'torus'``).
        stride, rhs_dilation: int or ``D`` ints (``rhs_dilation`` is the filter dilation).
        padding: see :func:`pad`.
        lhs_dilation: only ``None``/1 (input dilation is not supported; a clear error otherwise).

    Returns:
        ``(batch, out_c, *out_spatial, (D,)*(k_a + k_b))``. Parity is the caller's business (it multiplies).
    """
    D, spatial, ka, fspatial, kb, stride, dil, torus = _conv_args(
        D, image, filter_image, is_torus, stride, rhs_dilation, lhs_dilation, "convolve"
    )
    B, in_c = image.shape[:2]
    out_c = filter_image.shape[0]
    ca, cb = D**ka, D**kb
    # fold the image's tensor components into the batch: (B * ca, in_c, *spatial)
    x = image.reshape((B, in_c) + spatial + (ca,)).movedim(-1, 1).reshape((B * ca, in_c) + spatial)
    x = pad(x, padding, fspatial, dil, torus)
    w = filter_image.to(x.dtype).reshape((out_c, in_c) + fspatial + (cb,)).movedim(-1, 1)
    w = w.reshape((out_c * cb, in_c) + fspatial)  # out channel o * cb + component b
    y = (F.conv2d if D == 2 else F.conv3d)(x, w, stride=stride, dilation=dil)
    out_spatial = tuple(y.shape[2:])
    y = y.reshape((B, ca, out_c, cb) + out_spatial)
    y = y.permute([0, 2] + list(range(4, 4 + D)) + [1, 3])  # (B, out_c, *spatial, ca, cb)
    return y.reshape((B, out_c) + out_spatial + (D,) * (ka + kb))


def convolve_contract(
    D: int,
    image: torch.Tensor,
    filter_image: torch.Tensor,
    is_torus: Union[bool, Tuple[bool, ...]],
    stride=1,
    padding=None,
    lhs_dilation=None,
    rhs_dilation=1,
) -> torch.Tensor:
    r"""Convolution followed by the contraction of every image index with the matching leading filter index,
    without forming the order ``k_a + k_a + k_b`` intermediate (ginjax's ``convolve_contract``):

    .. math::

        \mathrm{out}[b, o, j]_{eta} = \sum_i \sum_m \sum_{lpha}
        \mathrm{image}[b, i, s j + e m - p]_{lpha}\, \mathrm{filter}[o, i, m]_{lpha eta}

    i.e. ``multicontract(convolve(...), ((0, k_a), (1, k_a + 1), ...), idx_shift=D + 2)``.

    Args:
        image: ``(batch, in_c, *spatial, (D,)*k_a)``.
        filter_image: ``(out_c, in_c, *filter_spatial, (D,)*(k_a + k_b))`` with ``k_b >= 0``.
        the others: as :func:`convolve`.

    Returns:
        ``(batch, out_c, *out_spatial, (D,)*k_b)``.
    """
    D, spatial, ka, fspatial, kf, stride, dil, torus = _conv_args(
        D, image, filter_image, is_torus, stride, rhs_dilation, lhs_dilation, "convolve_contract"
    )
    if kf < ka:
        raise ValueError(
            f"convolve_contract: the filter's order must be at least the image's (k={ka}), got filter order {kf}"
        )
    kb = kf - ka
    B, in_c = image.shape[:2]
    out_c = filter_image.shape[0]
    ca, cb = D**ka, D**kb
    x = image.reshape((B, in_c) + spatial + (ca,)).movedim(-1, 2).reshape((B, in_c * ca) + spatial)
    x = pad(x, padding, fspatial, dil, torus)
    w = filter_image.to(x.dtype).reshape((out_c, in_c) + fspatial + (ca, cb))
    w = w.permute([0, 3 + D, 1, 2 + D] + list(range(2, 2 + D)))  # (out_c, cb, in_c, ca, *fspatial)
    w = w.reshape((out_c * cb, in_c * ca) + fspatial)
    y = (F.conv2d if D == 2 else F.conv3d)(x, w, stride=stride, dilation=dil)
    out_spatial = tuple(y.shape[2:])
    y = y.reshape((B, out_c, cb) + out_spatial).movedim(2, -1)
    return y.reshape((B, out_c) + out_spatial + (D,) * kb)


def check_grid_allows(M: np.ndarray, spatial_dims: Sequence[int]) -> None:
    """Raise ``ValueError`` unless the signed permutation ``M`` maps the grid ``spatial_dims`` onto itself, i.e.
    it only exchanges axes of equal length (on a rectangle: its flips, the group D2 in 2D)."""
    perm = [int(np.flatnonzero(M[i])[0]) for i in range(len(spatial_dims))]
    if any(spatial_dims[perm[i]] != spatial_dims[i] for i in range(len(spatial_dims))):
        raise ValueError(
            f"the group element with matrix {np.asarray(M).tolist()} exchanges grid axes of different lengths, so it "
            f"does not map the grid {tuple(spatial_dims)} onto itself; on a non-square grid only the elements that "
            f"keep every axis among axes of its length act (on a rectangle: the flips, the group D2)"
        )


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


