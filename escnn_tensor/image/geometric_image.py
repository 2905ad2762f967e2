r"""Geometric images (tensor images on a pixel grid) with ginjax's operations, in PyTorch.

A *geometric image* of order ``k`` and parity ``parity`` in ``D`` dimensions is a function from the pixels
of an ``N x ... x N`` grid to order-``k`` tensors. Its data is a tensor of shape ``(N,)*D + (D,)*k`` in
**grid layout**, the layout of ginjax: array axis ``i`` runs along the coordinate ``+x_i`` and tensor index
value ``i`` is the component along ``x_i`` (so in 2D ``data[a, b, 0]`` is the x-component at the pixel with
x-index ``a`` and y-index ``b``). This differs from escnn's layout; :mod:`escnn_tensor.translate` converts.

Parities are written ``+1`` (true tensor) and ``-1`` (pseudotensor); ginjax writes them ``0`` and ``1``.

Group action (the convention shared with ginjax and with escnn's ``GeometricTensor.transform``): a signed
permutation matrix :math:`M` acts by

.. math::

    (g \cdot I)(M a) = \rho_{k,parity}(g)\, I(a), \qquad
    \rho_{k,parity}(g) = \det(M)^{(1-parity)/2} M^{\otimes k},

with pixel coordinates :math:`a` centred on the grid centre (``a_i = j_i - (N-1)/2``, half-integers for even
``N``), so the action is an exact permutation of pixels for odd and even ``N``. The tensor factor acts on
every tensor index: :math:`(M^{\otimes k} T)_{i_1 \dots i_k} = \sum M_{i_1 j_1} \cdots M_{i_k j_k}
T_{j_1 \dots j_k}`.
"""
from __future__ import annotations

import numbers
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from escnn.gspaces import GSpace

from ..grid import per_axis
from ..groups import check_dimension, is_integer
from ..representations import check_order, check_parity
from . import functional as fn
from .functional import as_signed_permutation, levi_civita_symbol

__all__ = ["GeometricImage"]


def _grid_str(spatial: Tuple[int, ...]) -> str:
    return f"N={spatial[0]}" if len(set(spatial)) == 1 else f"sides {spatial}"

IntOrTuple = Union[int, Sequence[int]]
Padding = Union[None, str, int, Sequence[Tuple[int, int]]]




class GeometricImage:
    r"""A tensor image on a ``D``-dimensional pixel grid, with ginjax's operations (in PyTorch).

    Args:
        data: a floating-point torch tensor of shape ``(*batch, N_1, ..., N_D, D, ..., D)`` (``D`` spatial axes,
            then ``k`` tensor axes of size ``D``), in grid layout (see module docs). Without ``k`` there are no
            batch axes and ``k = data.dim() - D``. The grid may be rectangular (``N_i`` differ); then only the
            group elements that keep every axis among axes of its length act (the flips of a rectangle), see
            :meth:`times_group_element`.
        parity: ``+1`` (tensor) or ``-1`` (pseudotensor). ginjax's ``0``/``1`` are rejected with a hint.
        D: 2 or 3.
        is_torus: ``True`` (default, periodic boundaries like ginjax), ``False``, or a tuple of ``D`` bools.
        k: the tensor order; give it when ``data`` has leading batch axes. Every operation acts on each batch
            entry independently (and every method is also usable under ``torch.vmap``).

    The data is kept as given (no copy), so gradients flow through every operation.
    """

    def __init__(
        self,
        data: torch.Tensor,
        parity: int,
        D: int,
        is_torus: Union[bool, Tuple[bool, ...]] = True,
        k: Optional[int] = None,
    ) -> None:
        D = check_dimension(D, "D")
        if not isinstance(data, torch.Tensor):
            raise TypeError(
                f"data must be a torch tensor of shape (N,)*D + (D,)*k, got {type(data).__name__} "
                f"(use torch.as_tensor for numpy arrays)"
            )
        if not data.is_floating_point():
            raise TypeError(f"data must be a floating-point tensor, got dtype {data.dtype}")
        if k is None:
            k = data.dim() - D
            if k < 0:
                raise ValueError(f"data of a {D}D image needs at least {D} axes, got shape {tuple(data.shape)}")
        k = check_order(k)
        lead = data.dim() - D - k
        if lead < 0:
            raise ValueError(
                f"data of shape {tuple(data.shape)} has fewer than D + k = {D + k} axes (D={D}, k={k})"
            )
        if tuple(data.shape[lead + D :]) != (D,) * k:
            raise ValueError(
                f"tensor axes must all have size D={D}: expected data shape (*batch, N,)*{D} + ({D},)*{k}, got "
                f"{tuple(data.shape)}"
            )
        self.data = data
        self.parity = check_parity(parity)
        self.D = D
        self.k = k
        self.is_torus = fn.check_is_torus(is_torus, D)

    # ---- constructors ----------------------------------------------------------------------------------
    @classmethod
    def zeros(
        cls,
        N: Union[int, Sequence[int]],
        k: int,
        parity: int,
        D: int,
        is_torus: Union[bool, Tuple[bool, ...]] = True,
        dtype: Optional[torch.dtype] = None,
        device=None,
    ) -> "GeometricImage":
        """An image of zeros (ginjax's ``GeometricImage.zeros``): data of shape ``spatial + (D,)*k``, where ``N``
        is the side of a square/cubic grid or a tuple of ``D`` sides (``spatial``). ``dtype`` defaults to torch's
        default dtype."""
        D = check_dimension(D, "D")
        spatial = per_axis(N, D, "N")
        k = check_order(k)
        return cls(torch.zeros(spatial + (D,) * k, dtype=dtype, device=device), parity, D, is_torus, k=k)

    @classmethod
    def kronecker_delta(
        cls, N: Union[int, Sequence[int]], D: int, k: int = 2, dtype: Optional[torch.dtype] = None, device=None
    ) -> "GeometricImage":
        """The image whose every pixel is the Kronecker delta of order ``k`` (1 where all ``k`` indices are equal, 0
        elsewhere; :func:`escnn_tensor.image.functional.kronecker_delta_symbol`): an invariant tensor image,
        parity +1 (ginjax's ``get_kronecker_delta_image``)."""
        D = check_dimension(D, "D")
        spatial = per_axis(N, D, "N")
        delta = fn.kronecker_delta_symbol(D, check_order(k), dtype or torch.get_default_dtype(), device)
        return cls(delta.expand(spatial + delta.shape).clone(), 1, D, k=k)

    def __getitem__(self, key) -> torch.Tensor:
        """``self.data[key]``: a tensor (ginjax's indexing; e.g. ``img[0, 5, 0, 1]``, ``img[4:, 2:3]``)."""
        return self.data[key]

    # ---- basic info ----------------------------------------------------------------------------------
    @property
    def N(self) -> int:
        """Side length of a square/cubic grid (``ValueError`` on a rectangular one: use :attr:`spatial_dims`)."""
        spatial = self.spatial_dims
        if len(set(spatial)) != 1:
            raise ValueError(f"the grid {spatial} is not square/cubic, so it has no single side N; use spatial_dims")
        return spatial[0]

    @property
    def _grid(self):
        """``N`` on a square/cubic grid, else the tuple of sides (for comparisons and messages)."""
        spatial = self.spatial_dims
        return spatial[0] if len(set(spatial)) == 1 else spatial

    @property
    def n_batch(self) -> int:
        """Number of leading batch axes."""
        return self.data.dim() - self.D - self.k

    @property
    def batch_shape(self) -> Tuple[int, ...]:
        return tuple(self.data.shape[: self.n_batch])

    @property
    def spatial_dims(self) -> Tuple[int, ...]:
        """The grid's sides ``(N_1, .., N_D)``."""
        return tuple(self.data.shape[self.n_batch : self.n_batch + self.D])

    def __repr__(self) -> str:
        return (
            f"GeometricImage(D={self.D}, spatial_dims={self.spatial_dims}, k={self.k}, parity={self.parity:+d}, "
            f"batch_shape={self.batch_shape}, is_torus={self.is_torus}, dtype={self.data.dtype})"
        )

    def _new(self, data: torch.Tensor, parity: Optional[int] = None, k: Optional[int] = None,
             is_torus=None) -> "GeometricImage":
        return GeometricImage(
            data,
            self.parity if parity is None else parity,
            self.D,
            self.is_torus if is_torus is None else is_torus,
            k=self.k if k is None else k,
        )

    def to(self, *args, **kwargs) -> "GeometricImage":
        """A copy with ``data.to(*args, **kwargs)``."""
        return self._new(self.data.to(*args, **kwargs))

    def _spatial_axes(self) -> List[int]:
        return list(range(self.n_batch, self.n_batch + self.D))

    def _tensor_axes(self) -> List[int]:
        return list(range(self.n_batch + self.D, self.data.dim()))

    # ---- arithmetic ----------------------------------------------------------------------------------
    def _check_same_type(self, other, op: str) -> None:
        if not isinstance(other, GeometricImage):
            raise TypeError(f"{op}: expected a GeometricImage, got {type(other).__name__}")
        mine = (self.D, self._grid, self.k, self.parity, self.is_torus)
        theirs = (other.D, other._grid, other.k, other.parity, other.is_torus)
        if mine != theirs:
            raise ValueError(
                f"{op}: images must have the same (D, N, k, parity, is_torus), got {mine} and {theirs}"
            )
        self._check_same_batch(other, op)

    def _check_same_batch(self, other: "GeometricImage", op: str) -> None:
        """One rule with :class:`MultiImage`: no broadcasting of batch axes (``ValueError`` naming both)."""
        if self.batch_shape != other.batch_shape:
            raise ValueError(
                f"{op}: images must have the same batch shape (no broadcasting), got batch shapes "
                f"{self.batch_shape} and {other.batch_shape}"
            )

    def __add__(self, other: "GeometricImage") -> "GeometricImage":
        self._check_same_type(other, "+")
        return self._new(self.data + other.data)

    def __sub__(self, other: "GeometricImage") -> "GeometricImage":
        self._check_same_type(other, "-")
        return self._new(self.data - other.data)

    def __neg__(self) -> "GeometricImage":
        return self._new(-self.data)

    def allclose(self, other: "GeometricImage", rtol: float = fn.TINY, atol: float = fn.TINY) -> bool:
        """Value equality as ginjax's ``==``: same ``D``, ``N``, ``k``, ``parity``, ``is_torus`` and data shape
        (batch axes included), and ``|self - other| <= atol + rtol |other|`` everywhere (``torch.allclose``; the
        data are compared in their promoted dtype, on ``self``'s device). Defaults ``rtol = atol = 1e-5``
        (ginjax's ``TINY``)."""
        if not isinstance(other, GeometricImage):
            raise TypeError(f"allclose: other must be a GeometricImage, got {type(other).__name__}")
        mine = (self.D, self.k, self.parity, self.is_torus, tuple(self.data.shape))
        theirs = (other.D, other.k, other.parity, other.is_torus, tuple(other.data.shape))
        if mine != theirs:
            return False
        return fn.allclose(self.data, other.data, rtol, atol)

    def __eq__(self, other) -> bool:
        """``self.allclose(other)`` with ``rtol = atol = 1e-5`` (ginjax's ``==``); ``False`` for non-images."""
        if not isinstance(other, GeometricImage):
            return NotImplemented
        return self.allclose(other)

    __hash__ = None  # mutable data, equality by value

    def __mul__(self, other: Union["GeometricImage", float]) -> "GeometricImage":
        """Scalar multiple, or (for another image) the pixelwise tensor product.

        The tensor product of orders ``k1``, ``k2`` has order ``k1 + k2`` with ``self``'s indices first:
        ``out[..., i_1..i_k1, j_1..j_k2] = self[..., i] * other[..., j]``; its parity is the product of the
        parities (ginjax: the sum mod 2). Batch shapes must be equal (no broadcasting, as for ``+``).
        """
        if isinstance(other, GeometricImage):
            if (self.D, self._grid, self.is_torus) != (other.D, other._grid, other.is_torus):
                raise ValueError(
                    f"*: images must have the same (D, N, is_torus), got {(self.D, self._grid, self.is_torus)} and "
                    f"{(other.D, other._grid, other.is_torus)}"
                )
            self._check_same_batch(other, "*")
            data = fn.tensor_product(self.data, self.k, other.data, other.k)
            return self._new(data, parity=self.parity * other.parity, k=self.k + other.k)
        if isinstance(other, numbers.Number) or (isinstance(other, torch.Tensor) and other.dim() == 0):
            return self._new(self.data * other)
        return NotImplemented

    def __rmul__(self, other: float) -> "GeometricImage":
        if isinstance(other, numbers.Number) or (isinstance(other, torch.Tensor) and other.dim() == 0):
            return self._new(other * self.data)
        return NotImplemented

    def __truediv__(self, other: float) -> "GeometricImage":
        return self._new(self.data / other)

    # ---- convolution ---------------------------------------------------------------------------------
    def convolve_with(
        self,
        filter_image: "GeometricImage",
        stride: IntOrTuple = 1,
        padding: Padding = None,
        dilation: IntOrTuple = 1,
    ) -> "GeometricImage":
        r"""Geometric convolution with a filter, as ginjax's ``convolve_with`` (a **cross-correlation**).

        With filter side ``M``, stride ``s``, dilation ``e`` and ``p`` = the padding before the first pixel,

        .. math::

            \mathrm{out}[j] = \sum_{m \in \{0..M-1\}^D} \mathrm{image}[s j + e m - p] \otimes \mathrm{filter}[m],

        where out-of-range pixel indices wrap around (torus padding) or read zero. The tensor product puts
        the image's ``k`` indices first, then the filter's (order ``k_image + k_filter``); the parity is the
        product. No filter flip: that is ginjax's cross-correlation (``jax.lax.conv_general_dilated``).

        Args:
            filter_image: a ``GeometricImage`` without batch axes, same ``D``.
            stride: int or tuple of ``D`` ints.
            padding: ``None`` (default, as ginjax: ``'torus'`` if any axis is a torus else ``'same'``),
                ``'torus'`` (wrap by ``e (M-1)/2`` on each side of the torus axes, zero-pad the others),
                or any padding of :mod:`escnn_tensor.grid`: ``'same'`` (zero-pad by ``e (M-1)/2``), ``'valid'``
                (none), an int (zero-pad both sides), ``D`` ints, or ``D`` pairs ``(before, after)``. Strings
                are case-insensitive (ginjax's ``'TORUS'``, ``'SAME'``, ``'VALID'``); ``'torus'``/``'same'``
                need odd filter sides.
            dilation: the filter dilation (ginjax's ``rhs_dilation``), int or tuple of ``D`` ints.

        Returns:
            a ``GeometricImage`` of order ``k_image + k_filter``, same batch axes and ``is_torus``.
        """
        if not isinstance(filter_image, GeometricImage):
            raise TypeError(f"filter_image must be a GeometricImage, got {type(filter_image).__name__}")
        if filter_image.D != self.D or filter_image.n_batch != 0:
            raise ValueError(
                f"filter_image must be a {self.D}D image without batch axes, got D={filter_image.D} with batch "
                f"shape {filter_image.batch_shape}"
            )
        D, ka, kb = self.D, self.k, filter_image.k
        x = self.data.reshape((-1, 1) + self.spatial_dims + (D,) * ka)
        w = filter_image.data.reshape((1, 1) + filter_image.spatial_dims + (D,) * kb)
        y = fn.convolve(D, x, w, self.is_torus, stride=stride, padding=padding, rhs_dilation=dilation)
        y = y.reshape(self.batch_shape + tuple(y.shape[2:]))
        return self._new(y, parity=self.parity * filter_image.parity, k=ka + kb)

    # ---- contractions, transposes ----------------------------------------------------------------------
    def _check_index(self, i, name: str) -> int:
        if not is_integer(i) or not 0 <= i < self.k:
            raise ValueError(f"{name} must be a tensor index in 0..{self.k - 1} (k={self.k}), got {i!r}")
        return int(i)

    def contract(self, i: int, j: int) -> "GeometricImage":
        r"""Kronecker-delta contraction of tensor indices ``i != j``: order ``k - 2``, same parity.

        ``out[..., rest] = sum_a self[..., a at i, a at j]``; the remaining indices keep their order.
        """
        return self.multicontract(((i, j),))

    def multicontract(self, indices: Sequence[Tuple[int, int]]) -> "GeometricImage":
        """Several contractions at once: ``indices`` is a sequence of pairs ``(i, j)`` of distinct tensor
        indices (numbered in ``self``, before any contraction); the rest keep their order. An empty sequence is
        the identity (as in ginjax), for any ``k``."""
        try:
            pairs = [tuple(p) for p in indices]
        except TypeError:
            pairs = [None]
        if any(p is None or len(p) != 2 for p in pairs):
            raise ValueError(f"indices must be a sequence of (i, j) pairs, got {indices!r}")
        if not pairs:
            return self._new(self.data)
        flat = [self._check_index(i, "contraction index") for p in pairs for i in p]
        if len(set(flat)) != len(flat):
            raise ValueError(f"contraction indices must all be distinct, got {indices!r}")
        nb = self.n_batch + self.D
        labels = list(range(nb + self.k))
        for n, (i, j) in enumerate(pairs):
            labels[nb + i] = labels[nb + j] = nb + self.k + n
        out = [lab for lab in range(nb)] + [nb + t for t in range(self.k) if t not in flat]
        data = torch.einsum(self.data, labels, out)
        return self._new(data, k=self.k - 2 * len(pairs))

    def levi_civita_contract(self, indices: Union[int, Sequence[int]]) -> "GeometricImage":
        r"""Contract ``D - 1`` tensor indices with the Levi-Civita symbol (ginjax's convention).

        With ``indices = (i_1, ..., i_{D-1})``:
        ``out[..., rest, l] = sum self[..., a_1 at i_1, ..., a_{D-1} at i_{D-1}] eps[a_1, ..., a_{D-1}, l]``,
        the remaining indices in order, then the symbol's last index. Order ``k - D + 2``; parity flips
        (``eps[0, 1] = +1``, ``eps[0, 1, 2] = +1``; see :func:`levi_civita_symbol`). In 2D a single int is
        accepted.
        """
        idx = (indices,) if isinstance(indices, (int, np.integer)) else tuple(indices)
        if len(idx) != self.D - 1:
            raise ValueError(f"indices must hold D - 1 = {self.D - 1} tensor indices, got {indices!r}")
        idx = tuple(self._check_index(i, "Levi-Civita index") for i in idx)
        if len(set(idx)) != len(idx):
            raise ValueError(f"Levi-Civita indices must be distinct, got {indices!r}")
        nb = self.n_batch + self.D
        labels = list(range(nb + self.k))
        eps_labels = [nb + self.k + n for n in range(self.D)]
        for n, i in enumerate(idx):
            labels[nb + i] = eps_labels[n]
        out = list(range(nb)) + [nb + t for t in range(self.k) if t not in idx] + [eps_labels[-1]]
        eps = levi_civita_symbol(self.D, self.data.dtype, self.data.device)
        data = torch.einsum(self.data, labels, eps, eps_labels, out)
        return self._new(data, parity=-self.parity, k=self.k - self.D + 2)

    def transpose(self, axes: Sequence[int]) -> "GeometricImage":
        """Permute the tensor indices: new index ``n`` is old index ``axes[n]`` (spatial axes unchanged)."""
        axes = tuple(axes)
        if sorted(axes) != list(range(self.k)):
            raise ValueError(f"axes must be a permutation of 0..{self.k - 1} (k={self.k}), got {axes!r}")
        nb = self.n_batch + self.D
        return self._new(self.data.permute(list(range(nb)) + [nb + a for a in axes]))

    # ---- norms -----------------------------------------------------------------------------------------
    def norm(self) -> "GeometricImage":
        """Pixelwise Frobenius norm ``sqrt(sum of squares of the tensor components)``: a scalar image
        (k=0, parity +1), as ginjax's ``norm``."""
        dims = self._tensor_axes()
        data = torch.linalg.vector_norm(self.data, dim=dims) if dims else self.data.abs()
        return self._new(data, parity=1, k=0)

    def normalize(self) -> "GeometricImage":
        """Divide by the largest pixel norm, unless that is at most ``1e-5`` (ginjax's ``TINY``), in which case
        the image is returned unchanged. With batch axes, each batch entry is normalised by its own maximum."""
        norms = self.norm().data.reshape(self.batch_shape + (-1,))
        m = norms.amax(dim=-1).reshape(self.batch_shape + (1,) * (self.D + self.k))
        scale = torch.where(m > fn.TINY, 1.0 / m, torch.ones_like(m))
        return self._new(self.data * scale)

    # ---- group action, translation ---------------------------------------------------------------------
    def times_group_element(self, g, gspace: Optional[GSpace] = None) -> "GeometricImage":
        r"""Act with a group element: ``new(M a) = rho(g) self(a)`` (see module docs), exactly.

        ``g`` is a ``(D, D)`` signed permutation matrix acting on ``(x, y[, z])`` column vectors, or an escnn
        ``GroupElement`` (its matrix is :func:`escnn_tensor.group_matrix` on ``gspace``, default
        ``hyperoctahedral_gspace(D)``). Same convention as ginjax's ``times_group_element(gg)`` and as escnn's
        ``GeometricTensor.transform``. ``is_torus`` is permuted with the axes. The result is a pure index
        permutation with sign flips, so it is bit-exact. On a rectangular grid only the elements that exchange
        axes of equal length act (the flips of a rectangle); others raise ``ValueError``.
        """
        M = as_signed_permutation(g, self.D, gspace)
        fn.check_grid_allows(M, self.spatial_dims)
        data = fn.act(self.data, M, self.k, self.parity, self.D)
        return self._new(data, is_torus=fn.rotate_is_torus(self.is_torus, M))

    def translate(self, shift: Sequence[int]) -> "GeometricImage":
        """Periodic translation by ``shift`` (``D`` ints, in array index units): ``new[j] = self[j - shift]``
        (indices mod ``N``). Requires a torus on every axis, as ginjax's ``translate``."""
        if not all(self.is_torus):
            raise ValueError(f"translate needs a torus on every axis, got is_torus={self.is_torus}")
        shift = tuple(shift)
        if len(shift) != self.D or not all(isinstance(s, (int, np.integer)) for s in shift):
            raise ValueError(f"shift must be {self.D} integers, got {shift!r}")
        return self._new(torch.roll(self.data, [int(s) for s in shift], self._spatial_axes()))

    # ---- pooling ---------------------------------------------------------------------------------------
    def _patches(self, size: int) -> torch.Tensor:
        """``(*batch, N/size, .., size**D, *tensor)``: non-overlapping patches, pixels in row-major order."""
        size = per_axis(size, 1, "size")[0]
        if any(n % size for n in self.spatial_dims):
            raise ValueError(f"pool size must divide the image side {_grid_str(self.spatial_dims)}, got {size}")
        nb, D = self.n_batch, self.D
        ns = [n // size for n in self.spatial_dims]
        x = self.data.reshape(self.batch_shape + sum(((n, size) for n in ns), ()) + (D,) * self.k)
        order = list(range(nb)) + [nb + 2 * i for i in range(D)] + [nb + 2 * i + 1 for i in range(D)]
        order += list(range(nb + 2 * D, x.dim()))
        x = x.permute(order)
        return x.reshape(self.batch_shape + tuple(ns) + (size**D,) + (D,) * self.k)

    def max_pool(self, size: int, use_norm: bool = True) -> "GeometricImage":
        """In every ``size**D`` patch keep the pixel of largest norm (ginjax's ``max_pool`` with
        ``use_norm=True``, the default; for scalars that is the largest absolute value). ``use_norm=False`` keeps
        the largest value, for scalar images (``k = 0``) only, as in ginjax. Ties go to the first pixel of the patch
        in row-major order of the grid axes, as in ginjax. ``size`` must divide every side."""
        if not isinstance(use_norm, bool):
            raise TypeError(f"use_norm must be True or False, got {use_norm!r}")
        if not use_norm and self.k:
            raise ValueError(f"max_pool(use_norm=False) takes the largest value of a scalar image; this one has k={self.k}")
        p = self._patches(size)
        axis = self.n_batch + self.D
        dims = list(range(axis + 1, p.dim()))
        norms = torch.linalg.vector_norm(p, dim=dims) if dims else (p.abs() if use_norm else p)
        best = norms.argmax(dim=axis, keepdim=True)  # first maximum
        best = best.reshape(best.shape + (1,) * self.k).expand(best.shape + (self.D,) * self.k)
        return self._new(p.gather(axis, best).squeeze(axis))

    def average_pool(self, size: int) -> "GeometricImage":
        """Mean over every non-overlapping ``size**D`` patch (``size`` must divide ``N``)."""
        return self._new(self._patches(size).mean(dim=self.n_batch + self.D))

    def unpool(self, size: int) -> "GeometricImage":
        """Nearest-neighbour unpooling: every pixel becomes a ``size**D`` block (``new[j] = self[j // size]``)."""
        size = per_axis(size, 1, "size")[0]
        data = self.data
        for a in self._spatial_axes():
            data = data.repeat_interleave(size, dim=a)
        return self._new(data)

    # ---- plotting --------------------------------------------------------------------------------------
    def plot(self, ax=None, title: Optional[str] = None, **kwargs):
        """Plot with :func:`escnn_tensor.plotting.plot_image` (needs matplotlib); returns the Axes."""
        from .. import plotting

        if self.n_batch:
            raise ValueError(f"plot a single image: index the batch axes first (batch shape {self.batch_shape})")
        return plotting.plot_image(self.data, self.parity, self.D, ax=ax, title=title, **kwargs)


