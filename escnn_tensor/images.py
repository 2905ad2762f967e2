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

import itertools
import numbers
from collections.abc import Mapping
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from escnn.group import GroupElement
from escnn.gspaces import GSpace

from .groups import check_dimension, check_gspace, group_matrix, hyperoctahedral_gspace, is_integer
from .representations import canonical_order, check_order, check_parity

__all__ = ["GeometricImage", "MultiImage", "levi_civita_symbol"]

TINY = 1e-5  # ginjax's threshold below which normalize() leaves an image unchanged

Key = Tuple[int, int]
IntOrTuple = Union[int, Sequence[int]]
Padding = Union[None, str, int, Sequence[Tuple[int, int]]]


# ----------------------------------------------------------------------------------------------------------
# shared helpers (pure functions of tensors in grid layout)
# ----------------------------------------------------------------------------------------------------------


def _check_D(D) -> int:
    return check_dimension(D, "D")


def _check_is_torus(is_torus, D: int) -> Tuple[bool, ...]:
    if isinstance(is_torus, (bool, np.bool_)):
        return (bool(is_torus),) * D
    if isinstance(is_torus, (tuple, list)) and len(is_torus) == D and all(
        isinstance(t, (bool, np.bool_)) for t in is_torus
    ):
        return tuple(bool(t) for t in is_torus)
    raise TypeError(f"is_torus must be a bool or a tuple of {D} bools (one per axis), got {is_torus!r}")


def _check_positive(value, name: str) -> int:
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _per_axis(value: IntOrTuple, D: int, name: str) -> Tuple[int, ...]:
    if isinstance(value, (tuple, list)):
        if len(value) != D:
            raise ValueError(f"{name} must be an int or a tuple of {D} ints, got {value!r}")
        return tuple(_check_positive(v, name) for v in value)
    return (_check_positive(value, name),) * D


def levi_civita_symbol(D: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    r"""The Levi-Civita symbol :math:`\varepsilon`, shape ``(D,)*D``: +1 on even permutations of
    ``(0, ..., D-1)``, -1 on odd ones, 0 where an index repeats (so ``eps[0, 1] = +1`` in 2D and
    ``eps[0, 1, 2] = +1`` in 3D, as in ginjax)."""
    D = _check_D(D)
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
    if isinstance(g, torch.Tensor):
        g = g.detach().cpu().numpy()
    try:
        m = np.asarray(g, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"g must be a ({D}, {D}) signed permutation matrix or an escnn GroupElement, got {type(g).__name__}"
        ) from None
    r = np.rint(m) if m.shape == (D, D) else m
    if (
        m.shape != (D, D)
        or not np.array_equal(m, r)
        or not np.isin(r, (-1.0, 0.0, 1.0)).all()
        or not (np.abs(r).sum(0) == 1).all()
        or not (np.abs(r).sum(1) == 1).all()
    ):
        raise ValueError(
            f"g must be a ({D}, {D}) signed permutation matrix (entries -1, 0, 1, one non-zero per row and "
            f"column: the elements of the hyperoctahedral group B_{D}, which map the pixel grid onto "
            f"itself), got {np.array2string(m, precision=4)}"
        )
    return r.astype(np.int64)


def _act(x: torch.Tensor, M: np.ndarray, k: int, parity: int, D: int) -> torch.Tensor:
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


def _rotate_is_torus(is_torus: Tuple[bool, ...], M: np.ndarray) -> Tuple[bool, ...]:
    return tuple(is_torus[int(np.flatnonzero(M[i])[0])] for i in range(len(is_torus)))


def _tensor_product(a: torch.Tensor, ka: int, b: torch.Tensor, kb: int) -> torch.Tensor:
    """Pixelwise outer product: ``out[..., i.., j..] = a[..., i..] b[..., j..]`` (a's indices first)."""
    a = a.reshape(a.shape + (1,) * kb)
    b = b.reshape(b.shape[: b.dim() - kb] + (1,) * ka + b.shape[b.dim() - kb :])
    return a * b


def _wrap_pad(x: torch.Tensor, axis: int, before: int, after: int) -> torch.Tensor:
    n = x.shape[axis]
    idx = torch.arange(-before, n + after, device=x.device) % n
    return x.index_select(axis, idx)


# ----------------------------------------------------------------------------------------------------------
# GeometricImage
# ----------------------------------------------------------------------------------------------------------


class GeometricImage:
    r"""A tensor image on a ``D``-dimensional pixel grid, with ginjax's operations (in PyTorch).

    Args:
        data: a floating-point torch tensor of shape ``(*batch, N, ..., N, D, ..., D)`` (``D`` spatial axes of
            equal size ``N``, then ``k`` tensor axes of size ``D``), in grid layout (see module docs). Without
            ``k`` there are no batch axes and ``k = data.dim() - D``.
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
        D = _check_D(D)
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
        spatial = tuple(data.shape[lead : lead + D])
        if len(set(spatial)) != 1:
            raise ValueError(
                f"spatial axes must have equal sizes (a square/cubic grid), got {spatial} in data of shape "
                f"{tuple(data.shape)} (D={D}, k={k})"
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
        self.is_torus = _check_is_torus(is_torus, D)

    # ---- basic info ----------------------------------------------------------------------------------
    @property
    def N(self) -> int:
        """Side length of the grid."""
        return self.data.shape[self.n_batch]

    @property
    def n_batch(self) -> int:
        """Number of leading batch axes."""
        return self.data.dim() - self.D - self.k

    @property
    def batch_shape(self) -> Tuple[int, ...]:
        return tuple(self.data.shape[: self.n_batch])

    @property
    def spatial_dims(self) -> Tuple[int, ...]:
        return (self.N,) * self.D

    def __repr__(self) -> str:
        return (
            f"GeometricImage(D={self.D}, N={self.N}, k={self.k}, parity={self.parity:+d}, "
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
        mine = (self.D, self.N, self.k, self.parity, self.is_torus)
        theirs = (other.D, other.N, other.k, other.parity, other.is_torus)
        if mine != theirs:
            raise ValueError(
                f"{op}: images must have the same (D, N, k, parity, is_torus), got {mine} and {theirs}"
            )

    def __add__(self, other: "GeometricImage") -> "GeometricImage":
        self._check_same_type(other, "+")
        return self._new(self.data + other.data)

    def __sub__(self, other: "GeometricImage") -> "GeometricImage":
        self._check_same_type(other, "-")
        return self._new(self.data - other.data)

    def __neg__(self) -> "GeometricImage":
        return self._new(-self.data)

    def __mul__(self, other: Union["GeometricImage", float]) -> "GeometricImage":
        """Scalar multiple, or (for another image) the pixelwise tensor product.

        The tensor product of orders ``k1``, ``k2`` has order ``k1 + k2`` with ``self``'s indices first:
        ``out[..., i_1..i_k1, j_1..j_k2] = self[..., i] * other[..., j]``; its parity is the product of the
        parities (ginjax: the sum mod 2). Batch axes broadcast.
        """
        if isinstance(other, GeometricImage):
            if (self.D, self.N, self.is_torus) != (other.D, other.N, other.is_torus):
                raise ValueError(
                    f"*: images must have the same (D, N, is_torus), got {(self.D, self.N, self.is_torus)} and "
                    f"{(other.D, other.N, other.is_torus)}"
                )
            data = _tensor_product(self.data, self.k, other.data, other.k)
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
            padding: ``None`` (default, as ginjax: ``'TORUS'`` if any axis is a torus else ``'SAME'``),
                ``'TORUS'`` (wrap by ``e (M-1)/2`` on each side of the torus axes, zero-pad the others),
                ``'SAME'`` (zero-pad by ``e (M-1)/2``), ``'VALID'`` (none), an int (zero-pad both sides) or
                a tuple of ``D`` pairs ``(before, after)``. ``'TORUS'``/``'SAME'`` need odd filter sides.
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
        D, ka, kb, Mf = self.D, self.k, filter_image.k, filter_image.N
        stride_t = _per_axis(stride, D, "stride")
        dil = _per_axis(dilation, D, "dilation")
        x = self.data.reshape((-1,) + self.spatial_dims + (D**ka,))
        x = x.movedim(-1, 1)  # (B, D^ka, N..)
        x = self._pad(x, padding, Mf, dil)
        ca, cb = D**ka, D**kb
        w = filter_image.data.to(x.dtype).reshape((Mf,) * D + (cb,)).movedim(-1, 0)  # (cb, M..)
        w = w.unsqueeze(1).repeat((ca,) + (1,) * (D + 1))  # (ca*cb, 1, M..): out channel i*cb + j = filter j
        conv = F.conv2d if D == 2 else F.conv3d
        y = conv(x, w, stride=stride_t, dilation=dil, groups=ca)  # (B, ca*cb, N'..)
        y = y.movedim(1, -1)
        y = y.reshape(self.batch_shape + tuple(y.shape[1 : 1 + D]) + (D,) * (ka + kb))
        return self._new(y, parity=self.parity * filter_image.parity, k=ka + kb)

    def _pad(self, x: torch.Tensor, padding: Padding, M: int, dil: Tuple[int, ...]) -> torch.Tensor:
        D = self.D
        if padding is None:
            padding = "TORUS" if any(self.is_torus) else "SAME"
        if isinstance(padding, str):
            if padding not in ("TORUS", "SAME", "VALID"):
                raise ValueError(
                    f"padding must be None, 'TORUS', 'SAME', 'VALID', an int or {D} (before, after) pairs, "
                    f"got {padding!r}"
                )
            if padding == "VALID":
                return x
            if M % 2 == 0:
                raise ValueError(
                    f"padding={padding!r} needs an odd filter side (the centre is a pixel), got {M}; give the "
                    f"padding explicitly as an int or (before, after) pairs, or 'VALID'"
                )
            half = [(M - 1) // 2 * e for e in dil]
            for i in range(D):
                if padding == "TORUS" and self.is_torus[i]:
                    x = _wrap_pad(x, 2 + i, half[i], half[i])
            zero = [0 if (padding == "TORUS" and self.is_torus[i]) else half[i] for i in range(D)]
            pairs = [(z, z) for z in zero]
        elif isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
            if padding < 0:
                raise ValueError(f"padding must be >= 0, got {padding}")
            pairs = [(int(padding), int(padding))] * D
        else:
            try:
                pairs = [(int(a), int(b)) for a, b in padding]
            except (TypeError, ValueError):
                pairs = []
            if len(pairs) != D or any(a < 0 or b < 0 for a, b in pairs):
                raise ValueError(
                    f"padding must be None, 'TORUS', 'SAME', 'VALID', an int or {D} (before, after) pairs of "
                    f"non-negative ints, got {padding!r}"
                )
        flat = [p for pair in reversed(pairs) for p in pair]  # F.pad wants the last axis first
        return F.pad(x, flat) if any(flat) else x

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
        indices (numbered in ``self``, before any contraction); the rest keep their order."""
        try:
            pairs = [tuple(p) for p in indices]
        except TypeError:
            pairs = [None]
        if not pairs or any(p is None or len(p) != 2 for p in pairs):
            raise ValueError(f"indices must be a non-empty sequence of (i, j) pairs, got {indices!r}")
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
        scale = torch.where(m > TINY, 1.0 / m, torch.ones_like(m))
        return self._new(self.data * scale)

    # ---- group action, translation ---------------------------------------------------------------------
    def times_group_element(self, g, gspace: Optional[GSpace] = None) -> "GeometricImage":
        r"""Act with a group element: ``new(M a) = rho(g) self(a)`` (see module docs), exactly.

        ``g`` is a ``(D, D)`` signed permutation matrix acting on ``(x, y[, z])`` column vectors, or an escnn
        ``GroupElement`` (its matrix is :func:`escnn_tensor.group_matrix` on ``gspace``, default
        ``hyperoctahedral_gspace(D)``). Same convention as ginjax's ``times_group_element(gg)`` and as escnn's
        ``GeometricTensor.transform``. ``is_torus`` is permuted with the axes. The result is a pure index
        permutation with sign flips, so it is bit-exact.
        """
        M = as_signed_permutation(g, self.D, gspace)
        data = _act(self.data, M, self.k, self.parity, self.D)
        return self._new(data, is_torus=_rotate_is_torus(self.is_torus, M))

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
        size = _check_positive(size, "size")
        if self.N % size:
            raise ValueError(f"pool size must divide the image side N={self.N}, got {size}")
        nb, D, n = self.n_batch, self.D, self.N // size
        x = self.data.reshape(self.batch_shape + sum(((n, size) for _ in range(D)), ()) + (D,) * self.k)
        order = list(range(nb)) + [nb + 2 * i for i in range(D)] + [nb + 2 * i + 1 for i in range(D)]
        order += list(range(nb + 2 * D, x.dim()))
        x = x.permute(order)
        return x.reshape(self.batch_shape + (n,) * D + (size**D,) + (D,) * self.k)

    def max_pool(self, size: int) -> "GeometricImage":
        """In every ``size**D`` patch keep the pixel of largest norm (ginjax's ``max_pool`` with
        ``use_norm=True``; for scalars that is the largest absolute value). Ties go to the first pixel of the
        patch in row-major order of the grid axes, as in ginjax. ``size`` must divide ``N``."""
        p = self._patches(size)
        axis = self.n_batch + self.D
        dims = list(range(axis + 1, p.dim()))
        norms = torch.linalg.vector_norm(p, dim=dims) if dims else p.abs()
        best = norms.argmax(dim=axis, keepdim=True)  # first maximum
        best = best.reshape(best.shape + (1,) * self.k).expand(best.shape + (self.D,) * self.k)
        return self._new(p.gather(axis, best).squeeze(axis))

    def average_pool(self, size: int) -> "GeometricImage":
        """Mean over every non-overlapping ``size**D`` patch (``size`` must divide ``N``)."""
        return self._new(self._patches(size).mean(dim=self.n_batch + self.D))

    def unpool(self, size: int) -> "GeometricImage":
        """Nearest-neighbour unpooling: every pixel becomes a ``size**D`` block (``new[j] = self[j // size]``)."""
        size = _check_positive(size, "size")
        data = self.data
        for a in self._spatial_axes():
            data = data.repeat_interleave(size, dim=a)
        return self._new(data)

    # ---- plotting --------------------------------------------------------------------------------------
    def plot(self, ax=None, title: Optional[str] = None, **kwargs):
        """Plot with :func:`escnn_tensor.plotting.plot_image` (needs matplotlib); returns the Axes."""
        from . import plotting

        if self.n_batch:
            raise ValueError(f"plot a single image: index the batch axes first (batch shape {self.batch_shape})")
        return plotting.plot_image(self.data, self.parity, self.D, ax=ax, title=title, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# MultiImage
# ----------------------------------------------------------------------------------------------------------


def _check_key(key) -> Key:
    if not (isinstance(key, tuple) and len(key) == 2):
        raise ValueError(f"MultiImage keys must be (k, parity) pairs, got {key!r}")
    return check_order(key[0], "k in key"), check_parity(key[1], "parity in key")


class MultiImage(Mapping):
    r"""A batch of multi-channel tensor images of several orders and parities (ginjax's ``MultiImage``).

    A read-only mapping ``(k, parity) -> tensor`` of shape ``(B, C_{k,parity}, N, ..., N, D, ..., D)``
    (batch, channels, ``D`` spatial axes in grid layout, ``k`` tensor axes). All values share ``B``, ``N``,
    dtype and device; channel counts may differ.

    **Canonical key order**: keys are kept and iterated in :func:`escnn_tensor.canonical_order` — by ``k``
    ascending, tensors (+1) before pseudotensors (-1): ``(0,+1), (0,-1), (1,+1), (1,-1), ...``. This is also
    the order of the fields in :func:`escnn_tensor.to_geometric_tensor`.

    Args:
        data: mapping ``{(k, parity): tensor}`` (parity ``+1``/``-1``; see :meth:`from_numpy_dict` for
            ginjax's 0/1 keys).
        D: 2 or 3.
        is_torus: bool or tuple of ``D`` bools.
    """

    def __init__(self, data: Mapping, D: int, is_torus: Union[bool, Tuple[bool, ...]] = True) -> None:
        D = _check_D(D)
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping {{(k, parity): tensor}}, got {type(data).__name__}")
        checked = {}
        for key, value in data.items():
            k, p = _check_key(key)
            if (k, p) in checked:
                raise ValueError(f"key (k={k}, parity={p:+d}) given twice")
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise TypeError(f"value of key {key} must be a floating-point torch tensor, got {type(value).__name__}")
            spatial = tuple(value.shape[2 : 2 + D])
            if value.dim() != 2 + D + k or tuple(value.shape[2 + D :]) != (D,) * k or len(set(spatial)) != 1:
                raise ValueError(
                    f"value of key (k={k}, parity={p:+d}) must have shape (B, C, N,)*{D} + ({D},)*{k} with equal "
                    f"spatial sides, got {tuple(value.shape)}"
                )
            checked[(k, p)] = value
        if not checked:
            raise ValueError("a MultiImage needs at least one (k, parity) entry")
        first = next(iter(checked.values()))
        for key, value in checked.items():
            if value.shape[0] != first.shape[0] or value.shape[2] != first.shape[2]:
                raise ValueError(
                    f"all values must share batch size and grid size: got shapes "
                    f"{ {kk: tuple(v.shape) for kk, v in checked.items()} }"
                )
            if value.dtype != first.dtype or value.device != first.device:
                raise ValueError(
                    f"all values must share dtype and device: got "
                    f"{ {kk: (v.dtype, str(v.device)) for kk, v in checked.items()} }"
                )
        self._data = {key: checked[key] for key in canonical_order(checked)}
        self.D = D
        self.is_torus = _check_is_torus(is_torus, D)

    # ---- mapping interface ---------------------------------------------------------------------------
    def __getitem__(self, key: Key) -> torch.Tensor:
        return self._data[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return (
            f"MultiImage(D={self.D}, N={self.N}, batch={self.batch_size}, signature={self.signature}, "
            f"is_torus={self.is_torus}, dtype={self.dtype})"
        )

    @property
    def signature(self) -> Tuple[Tuple[Key, int], ...]:
        """``(((k, parity), channels), ...)`` in canonical key order."""
        return tuple((key, v.shape[1]) for key, v in self._data.items())

    @property
    def batch_size(self) -> int:
        return next(iter(self._data.values())).shape[0]

    @property
    def N(self) -> int:
        return next(iter(self._data.values())).shape[2]

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self._data.values())).dtype

    @property
    def device(self) -> torch.device:
        return next(iter(self._data.values())).device

    def _new(self, data: Mapping, is_torus=None) -> "MultiImage":
        return MultiImage(data, self.D, self.is_torus if is_torus is None else is_torus)

    # ---- arithmetic ----------------------------------------------------------------------------------
    def _check_compatible(self, other, op: str) -> None:
        if not isinstance(other, MultiImage):
            raise TypeError(f"{op}: expected a MultiImage, got {type(other).__name__}")
        if (self.D, self.is_torus, self.signature) != (other.D, other.is_torus, other.signature):
            raise ValueError(
                f"{op}: MultiImages must have the same D, is_torus and signature, got "
                f"{(self.D, self.is_torus, self.signature)} and {(other.D, other.is_torus, other.signature)}"
            )

    def __add__(self, other: "MultiImage") -> "MultiImage":
        self._check_compatible(other, "+")
        return self._new({key: v + other[key] for key, v in self.items()})

    def __sub__(self, other: "MultiImage") -> "MultiImage":
        self._check_compatible(other, "-")
        return self._new({key: v - other[key] for key, v in self.items()})

    def __neg__(self) -> "MultiImage":
        return self._new({key: -v for key, v in self.items()})

    def __mul__(self, other: float) -> "MultiImage":
        """Scalar multiple (a number or a 0-d tensor)."""
        if isinstance(other, numbers.Number) or (isinstance(other, torch.Tensor) and other.dim() == 0):
            return self._new({key: v * other for key, v in self.items()})
        return NotImplemented

    def __rmul__(self, other: float) -> "MultiImage":
        if isinstance(other, numbers.Number) or (isinstance(other, torch.Tensor) and other.dim() == 0):
            return self._new({key: other * v for key, v in self.items()})
        return NotImplemented

    def concat(self, other: "MultiImage", axis: int = 1) -> "MultiImage":
        """Concatenate along channels (``axis=1``, default: keys are united, common keys stack ``self``'s
        channels first) or along the batch (``axis=0``: both must have the same signature)."""
        if not isinstance(other, MultiImage):
            raise TypeError(f"concat: expected a MultiImage, got {type(other).__name__}")
        if (self.D, self.is_torus) != (other.D, other.is_torus):
            raise ValueError(
                f"concat: D and is_torus must match, got {(self.D, self.is_torus)} and {(other.D, other.is_torus)}"
            )
        if axis == 0:
            self._check_compatible(other, "concat(axis=0)")
            return self._new({key: torch.cat([v, other[key]], 0) for key, v in self.items()})
        if axis != 1:
            raise ValueError(f"axis must be 0 (batch) or 1 (channels), got {axis!r}")
        out = dict(self._data)
        for key, v in other.items():
            out[key] = torch.cat([out[key], v], 1) if key in out else v
        return self._new(out)

    def __truediv__(self, other: float) -> "MultiImage":
        return self._new({key: v / other for key, v in self.items()})

    def equal(self, other: "MultiImage") -> bool:
        """Bitwise equality: same ``D``, ``is_torus``, signature and ``torch.equal`` values (``==`` calls this;
        ginjax's ``==`` is ``allclose``, use ``torch.allclose`` per key for that)."""
        return (
            isinstance(other, MultiImage)
            and (self.D, self.is_torus, self.signature) == (other.D, other.is_torus, other.signature)
            and all(torch.equal(v, other[key]) for key, v in self.items())
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, MultiImage):
            return NotImplemented
        return self.equal(other)

    __hash__ = None  # mutable tensors inside

    def to(self, *args, **kwargs) -> "MultiImage":
        """A copy with every value moved/cast by ``tensor.to(*args, **kwargs)``."""
        return self._new({key: v.to(*args, **kwargs) for key, v in self.items()})

    def times_group_element(self, g, gspace: Optional[GSpace] = None) -> "MultiImage":
        """Act with ``g`` on every image: ``new(M a) = rho_{k,parity}(g) old(a)`` (exact; see
        :meth:`GeometricImage.times_group_element` for ``g`` and ``gspace``)."""
        M = as_signed_permutation(g, self.D, gspace)
        data = {(k, p): _act(v, M, k, p, self.D) for (k, p), v in self.items()}
        return self._new(data, is_torus=_rotate_is_torus(self.is_torus, M))

    def images(self, batch: int = 0) -> List[Tuple[Key, int, GeometricImage]]:
        """``[((k, parity), channel, GeometricImage), ...]`` for one batch entry, in canonical key order."""
        out = []
        for (k, p), v in self.items():
            for c in range(v.shape[1]):
                out.append(((k, p), c, GeometricImage(v[batch, c], p, self.D, self.is_torus)))
        return out

    # ---- ginjax exchange -------------------------------------------------------------------------------
    def to_numpy_dict(self) -> dict:
        """``{(k, ginjax_parity): numpy array (B, C, N.., D..)}`` in ginjax's layout and keys: ``k`` an int
        (ginjax's ``MultiImage`` turns it into ``(False,)*k``) and parity ``0`` (our +1) or ``1`` (our -1).
        Values are detached CPU copies with the same dtype; ``MultiImage(d, D)`` in ginjax takes the dict."""
        return {(k, 0 if p == 1 else 1): v.detach().cpu().numpy().copy() for (k, p), v in self.items()}

    @classmethod
    def from_numpy_dict(
        cls, d: Mapping, D: int, is_torus: Union[bool, Tuple[bool, ...]] = True
    ) -> "MultiImage":
        """Build from ginjax-style data: keys ``(k, parity)`` with ``k`` an int or ginjax's tuple of
        covariant-axis flags (its length is ``k``; covariant and contravariant axes transform alike under
        :math:`B_d`) and ``parity`` 0 (tensor) or 1 (pseudotensor); values numpy arrays
        ``(B, C, N.., D..)``, or ``(C, N.., D..)`` (then ``B = 1``). dtypes are kept (bit-exact round trip
        with :meth:`to_numpy_dict`)."""
        D = _check_D(D)
        if not isinstance(d, Mapping):
            raise TypeError(f"d must be a mapping {{(k, parity 0/1): array}}, got {type(d).__name__}")
        data = {}
        for key, value in d.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(f"keys must be (k, parity) pairs with parity 0 or 1 (ginjax), got {key!r}")
            k, p = key
            if isinstance(k, tuple):
                k = len(k)
            k = check_order(k, "k in key")
            if isinstance(p, bool) or p not in (0, 1):
                raise ValueError(
                    f"parity in key {key!r} must be ginjax's 0 (tensor) or 1 (pseudotensor), got {p!r}"
                )
            t = torch.from_numpy(np.array(value, copy=True))
            if t.dim() == 1 + D + k:
                t = t.unsqueeze(0)
            if (k, 1 - 2 * p) in data:
                raise ValueError(f"key (k={k}, parity={p}) appears twice")
            data[(k, 1 - 2 * p)] = t
        return cls(data, D, is_torus)

    # ---- plotting --------------------------------------------------------------------------------------
    def plot(self, batch: int = 0, **kwargs):
        """Plot one batch entry, one panel per (key, channel), with :func:`escnn_tensor.plotting.plot_images`;
        returns the Figure."""
        from . import plotting

        items = [
            (img.data, p, f"k={k}, parity={p:+d}, channel {c}") for (k, p), c, img in self.images(batch)
        ]
        kwargs.setdefault("D", self.D)
        return plotting.plot_images(items, **kwargs)
