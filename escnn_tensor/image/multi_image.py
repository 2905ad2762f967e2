"""``MultiImage``: several geometric images of different (k, parity), as in ginjax (grid layout)."""
from __future__ import annotations

import numbers
from collections.abc import Mapping, MutableMapping
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from escnn.gspaces import GSpace

from ..groups import check_dimension, is_integer
from ..representations import canonical_order, check_order, check_parity
from . import functional as fn
from .functional import as_signed_permutation
from .geometric_image import GeometricImage

Key = Tuple[int, int]

__all__ = ["MultiImage"]




def _check_key(key) -> Key:
    if not (isinstance(key, tuple) and len(key) == 2):
        raise ValueError(f"MultiImage keys must be (k, parity) pairs, got {key!r}")
    return check_order(key[0], "k in key"), check_parity(key[1], "parity in key")


def _grid_str(spatial: Tuple[int, ...]) -> str:
    return f"N={spatial[0]}" if len(set(spatial)) == 1 else f"spatial dims {spatial}"


SignatureLike = Union[Sequence[Tuple[Key, int]], Mapping]


def _signature_dict(signature: SignatureLike, name: str = "signature") -> dict:
    """``{(k, parity): channels}`` from a signature tuple ``(((k, parity), c), ...)`` or a mapping."""
    try:
        pairs = [(key, c) for key, c in (signature.items() if isinstance(signature, Mapping) else signature)]
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be (((k, parity), channels), ...) or {{(k, parity): channels}}, got {signature!r}"
        ) from None
    out = {}
    for key, c in pairs:
        if not is_integer(c) or c < 0:
            raise ValueError(f"{name}: channel count of {key!r} must be an integer >= 0, got {c!r}")
        out[_check_key(key)] = int(c)
    return out


class MultiImage(MutableMapping):
    r"""A batch of multi-channel tensor images of several orders and parities (ginjax's ``MultiImage``).

    A mapping ``(k, parity) -> tensor`` of shape ``(B, [extra leading axes,] C_{k,parity}, *spatial, D, .., D)``:
    batch first, channels last among the **leading axes**, then ``D`` spatial axes in grid layout (a square/cubic
    grid ``(N,)*D`` or any rectangular one) and ``k`` tensor axes. Every value has the same number of leading
    axes (at least 2: batch and channels; :meth:`expand` adds more, e.g. ``(B, T, C)`` for time series), the same
    batch size, grid, dtype and device; the other leading sizes may differ between keys (as in ginjax).

    Convention differences with ginjax (see ``docs/images.md``): the batch and channel axes are always present
    (ginjax also allows a lone channel axis); parities are ``+1``/``-1`` (ginjax ``0``/``1``); bad input raises
    ``ValueError``/``TypeError`` naming the argument (ginjax asserts); :meth:`concat` joins channels by default.

    **Canonical key order**: keys are kept and iterated in :func:`escnn_tensor.canonical_order` — by ``k``
    ascending, tensors (+1) before pseudotensors (-1): ``(0,+1), (0,-1), (1,+1), (1,-1), ...``. This is also
    the order of the fields in :func:`escnn_tensor.to_geometric_tensor`.

    The empty MultiImage ``MultiImage({}, D)`` (also :meth:`empty`) has no keys; :meth:`append` and item
    assignment fill it. Item assignment and :meth:`append` change the MultiImage in place (as in ginjax); every
    other method returns a new one.

    Args:
        data: mapping ``{(k, parity): tensor}`` (parity ``+1``/``-1``; see :meth:`from_numpy_dict` for
            ginjax's 0/1 keys).
        D: 2 or 3.
        is_torus: bool or tuple of ``D`` bools.
    """

    def __init__(self, data: Mapping, D: int, is_torus: Union[bool, Tuple[bool, ...]] = True) -> None:
        D = check_dimension(D, "D")
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping {{(k, parity): tensor}}, got {type(data).__name__}")
        self.D = D
        self.is_torus = fn.check_is_torus(is_torus, D)
        self._data = {}
        for key, value in data.items():
            k, p = _check_key(key)
            if (k, p) in self._data:
                raise ValueError(f"key (k={k}, parity={p:+d}) given twice")
            self._data[(k, p)] = self._checked(key, (k, p), value, self._data)
        self._data = {key: self._data[key] for key in canonical_order(self._data)}

    def _checked(self, raw_key, key: Key, value, others: Mapping) -> torch.Tensor:
        """``value`` checked as the block of ``key`` beside the blocks ``others``."""
        k, p = key
        D = self.D
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"value of key {raw_key} must be a floating-point torch tensor, got {type(value).__name__}")
        n_lead = value.dim() - D - k
        if n_lead < 2 or tuple(value.shape[value.dim() - k :]) != (D,) * k:
            raise ValueError(
                f"value of key (k={k}, parity={p:+d}) must have shape (B, C, N,)*{D} + ({D},)*{k} (batch, channels, "
                f"a grid of any sides, tensor axes; more leading axes may sit between batch and channels), got "
                f"{tuple(value.shape)}"
            )
        others = {kk: v for kk, v in others.items() if kk != key}
        if others:
            kk, first = next(iter(others.items()))
            first_lead = first.dim() - D - kk[0]
            mine = (n_lead, value.shape[0], tuple(value.shape[n_lead : n_lead + D]))
            theirs = (first_lead, first.shape[0], tuple(first.shape[first_lead : first_lead + D]))
            if mine != theirs:
                raise ValueError(
                    f"all values must share batch size and grid size (and the number of leading axes): "
                    f"key (k={k}, parity={p:+d}) has shape {tuple(value.shape)}, key (k={kk[0]}, parity={kk[1]:+d}) "
                    f"has {tuple(first.shape)}"
                )
            if value.dtype != first.dtype or value.device != first.device:
                raise ValueError(
                    f"all values must share dtype and device: key (k={k}, parity={p:+d}) has "
                    f"({value.dtype}, {value.device}), key (k={kk[0]}, parity={kk[1]:+d}) has "
                    f"({first.dtype}, {first.device})"
                )
        return value

    # ---- mapping interface ---------------------------------------------------------------------------
    def __getitem__(self, key: Key) -> torch.Tensor:
        return self._data[key]

    def __setitem__(self, key: Key, value: torch.Tensor) -> None:
        """Set (or replace) the block of ``key`` in place, checked against the other blocks (ginjax's item
        assignment); the canonical key order is kept."""
        k, p = _check_key(key)
        self._data[(k, p)] = self._checked(key, (k, p), value, self._data)
        self._data = {kk: self._data[kk] for kk in canonical_order(self._data)}

    def __delitem__(self, key: Key) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return (
            f"MultiImage(D={self.D}, spatial_dims={self.spatial_dims}, leading_shape={self.leading_shape}, "
            f"signature={self.signature}, is_torus={self.is_torus}, dtype={self.dtype})"
        )

    def _first(self) -> Optional[Tuple[Key, torch.Tensor]]:
        return next(iter(self._data.items()), None)

    @property
    def signature(self) -> Tuple[Tuple[Key, int], ...]:
        """``(((k, parity), channels), ...)`` in canonical key order (channels: the last leading axis)."""
        n = self.n_leading
        return tuple((key, v.shape[n - 1]) for key, v in self._data.items())

    def get_signature(self) -> Tuple[Tuple[Key, int], ...]:
        """:attr:`signature` (ginjax's name)."""
        return self.signature

    @property
    def n_leading(self) -> int:
        """Number of leading axes (batch, any extra ones, channels): 2 or more; 0 for the empty MultiImage."""
        first = self._first()
        return 0 if first is None else first[1].dim() - self.D - first[0][0]

    def get_n_leading(self) -> int:
        """:attr:`n_leading` (ginjax's name)."""
        return self.n_leading

    @property
    def leading_shape(self) -> Tuple[int, ...]:
        """The leading sizes of the first block but the channels (``(B,)`` with only batch and channel axes)."""
        first = self._first()
        return () if first is None else tuple(first[1].shape[: self.n_leading - 1])

    @property
    def batch_size(self) -> int:
        """Size of the first axis; 0 for the empty MultiImage (ginjax's ``get_L``)."""
        first = self._first()
        return 0 if first is None else first[1].shape[0]

    def get_L(self) -> int:
        """:attr:`batch_size` (ginjax's name)."""
        return self.batch_size

    @property
    def spatial_dims(self) -> Tuple[int, ...]:
        """The grid's sides; ``()`` for the empty MultiImage."""
        first = self._first()
        if first is None:
            return ()
        n = self.n_leading
        return tuple(first[1].shape[n : n + self.D])

    def get_spatial_dims(self) -> Tuple[int, ...]:
        """:attr:`spatial_dims` (ginjax's name)."""
        return self.spatial_dims

    @property
    def N(self) -> int:
        """Side of a square/cubic grid (``ValueError`` on a rectangular grid or an empty MultiImage)."""
        spatial = self.spatial_dims
        if not spatial or len(set(spatial)) != 1:
            raise ValueError(
                f"N is the side of a square/cubic grid; this MultiImage has spatial_dims={spatial} (use spatial_dims)"
            )
        return spatial[0]

    @property
    def dtype(self) -> Optional[torch.dtype]:
        first = self._first()
        return None if first is None else first[1].dtype

    @property
    def device(self) -> Optional[torch.device]:
        first = self._first()
        return None if first is None else first[1].device

    def size(self) -> int:
        """Total number of values over all blocks (ginjax's ``size``); 0 when empty."""
        return sum(v.numel() for v in self._data.values())

    def _new(self, data: Mapping, is_torus=None) -> "MultiImage":
        return MultiImage(data, self.D, self.is_torus if is_torus is None else is_torus)

    # ---- construction helpers (ginjax's) ---------------------------------------------------------------
    def copy(self) -> "MultiImage":
        """An independent copy: same keys, ``D`` and ``is_torus``; every block cloned (torch tensors are mutable,
        so a clone keeps changes to either side from reaching the other; gradients flow through the clone)."""
        return self._new({key: v.clone() for key, v in self.items()})

    def empty(self) -> "MultiImage":
        """The empty MultiImage with this ``D`` and ``is_torus`` (ginjax's ``empty``)."""
        return self._new({})

    @classmethod
    def from_images(cls, images: Sequence[GeometricImage]) -> "MultiImage":
        """Stack :class:`GeometricImage` s as channels (ginjax's ``from_images``): image ``i`` becomes the next channel
        of key ``(image.k, image.parity)``, in the order given. The images share ``D``, ``is_torus``, grid, dtype
        and device and have no batch axes (then ``B = 1``) or one batch axis ``(B,)``.

        Raises ``ValueError`` for an empty list or images that do not fit together.
        """
        images = list(images)
        if not images:
            raise ValueError("from_images: got an empty list of images; use MultiImage({}, D) for an empty MultiImage")
        if not all(isinstance(im, GeometricImage) for im in images):
            bad = next(im for im in images if not isinstance(im, GeometricImage))
            raise TypeError(f"from_images: images must be GeometricImages, got a {type(bad).__name__}")
        first = images[0]
        if first.n_batch > 1:
            raise ValueError(f"from_images: images may have at most one batch axis, got batch shape {first.batch_shape}")
        for im in images[1:]:
            if (im.D, im.is_torus, im.spatial_dims, im.batch_shape) != (
                first.D, first.is_torus, first.spatial_dims, first.batch_shape
            ):
                raise ValueError(
                    f"from_images: every image needs the same (D, is_torus, spatial_dims, batch shape), got "
                    f"{(first.D, first.is_torus, first.spatial_dims, first.batch_shape)} and "
                    f"{(im.D, im.is_torus, im.spatial_dims, im.batch_shape)}"
                )
        blocks: dict = {}
        for im in images:
            data = im.data if im.n_batch else im.data.unsqueeze(0)
            blocks.setdefault((im.k, im.parity), []).append(data.unsqueeze(1))
        return cls({key: torch.cat(v, 1) for key, v in blocks.items()}, first.D, first.is_torus)

    def append(self, k: int, parity: int, image_block: torch.Tensor, axis: Optional[int] = None) -> "MultiImage":
        """Add ``image_block`` at key ``(k, parity)`` **in place** and return ``self`` (ginjax's ``append``).

        A new key is set; an existing key is concatenated along ``axis``, a leading axis (default: the channel
        axis, the last leading one; ``0`` is the batch). The result is checked like any block (same batch,
        grid, dtype and device as the others; tensor axes of size ``D``).
        """
        key = _check_key((k, parity))
        if key not in self._data:
            self[key] = image_block
            return self
        n = self.n_leading
        axis = n - 1 if axis is None else axis
        if not is_integer(axis) or not 0 <= axis < n:
            raise ValueError(f"append: axis must be a leading axis in 0..{n - 1}, got {axis!r}")
        old = self._data[key]
        if not isinstance(image_block, torch.Tensor) or image_block.dim() != old.dim() or (
            image_block.shape[:axis] + image_block.shape[axis + 1 :] != old.shape[:axis] + old.shape[axis + 1 :]
        ):
            shape = tuple(image_block.shape) if isinstance(image_block, torch.Tensor) else type(image_block).__name__
            raise ValueError(
                f"append: image_block for key (k={key[0]}, parity={key[1]:+d}) must match {tuple(old.shape)} on every "
                f"axis but axis {axis}, got {shape}"
            )
        self[key] = torch.cat([old, image_block.to(old.dtype)], axis)
        return self

    # ---- vectors and scalar layouts --------------------------------------------------------------------
    def to_vector(self) -> torch.Tensor:
        """All values in one 1-D tensor: blocks in canonical key order, each flattened row-major (ginjax's
        ``to_vector``); :meth:`from_vector` inverts it."""
        if not self._data:
            return torch.zeros(0)
        return torch.cat([v.reshape(-1) for v in self._data.values()])

    @classmethod
    def from_vector(cls, vector: torch.Tensor, multi_image: "MultiImage") -> "MultiImage":
        """The MultiImage laid out like ``multi_image`` (keys, shapes, ``D``, ``is_torus``) holding the values of
        the 1-D ``vector`` (ginjax's ``from_vector``; the inverse of :meth:`to_vector`)."""
        if not isinstance(multi_image, MultiImage):
            raise TypeError(f"from_vector: multi_image must be a MultiImage, got {type(multi_image).__name__}")
        if not isinstance(vector, torch.Tensor) or vector.dim() != 1 or vector.numel() != multi_image.size():
            shape = tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__
            raise ValueError(
                f"from_vector: vector must be a 1-D tensor of multi_image.size() = {multi_image.size()} values, got "
                f"{shape}"
            )
        out, start = {}, 0
        for key, v in multi_image.items():
            out[key] = vector[start : start + v.numel()].reshape(v.shape)
            start += v.numel()
        return multi_image._new(out)

    def to_scalar_multi_image(self) -> "MultiImage":
        """Every tensor component as its own scalar channel (ginjax's ``to_scalar_multi_image``): one key
        ``(0, +1)`` with ``sum_keys C * D**k`` channels; within a key, channel ``c`` gives ``D**k`` consecutive
        channels (its components, row-major), keys in canonical order. The inverse is
        :meth:`from_scalar_multi_image` with this MultiImage's :attr:`signature`. Not equivariant (components of
        a vector are not scalars): it is the input layout of a non-equivariant model."""
        n = self.n_leading
        blocks = []
        for (k, _), v in self.items():
            x = v.reshape(v.shape[: n + self.D] + (self.D**k,))  # (..., C, *spatial, D^k)
            x = x.movedim(-1, n)  # (..., C, D^k, *spatial)
            blocks.append(x.reshape(v.shape[: n - 1] + (-1,) + tuple(v.shape[n : n + self.D])))
        return self._new({(0, 1): torch.cat(blocks, n - 1)} if blocks else {})

    def from_scalar_multi_image(self, signature: SignatureLike) -> "MultiImage":
        """Split a scalar MultiImage (only key ``(0, +1)``) back into the keys and channel counts of
        ``signature`` (ginjax's ``from_scalar_multi_image``; the inverse of :meth:`to_scalar_multi_image`)."""
        sig = _signature_dict(signature)
        if list(self.keys()) != [(0, 1)]:
            raise ValueError(f"from_scalar_multi_image needs a MultiImage with the one key (0, +1), got keys {list(self)}")
        n, D = self.n_leading, self.D
        x = self[(0, 1)]
        need = sum(c * D**k for (k, _), c in sig.items())
        if x.shape[n - 1] != need:
            raise ValueError(
                f"from_scalar_multi_image: signature {tuple(sig.items())} needs {need} scalar channels, got "
                f"{x.shape[n - 1]}"
            )
        out, start = {}, 0
        for (k, p) in canonical_order(sig):
            c = sig[(k, p)]
            part = x.narrow(n - 1, start, c * D**k)
            part = part.reshape(x.shape[: n - 1] + (c, D**k) + tuple(x.shape[n:]))
            part = part.movedim(n, -1).reshape(x.shape[: n - 1] + (c,) + tuple(x.shape[n:]) + (D,) * k)
            out[(k, p)] = part
            start += c * D**k
        return self._new(out)

    def norm(self) -> "MultiImage":
        """Pixelwise Frobenius norms of every channel of every key, as one scalar key ``(0, +1)`` with the
        channels of the keys concatenated in canonical order (ginjax's ``norm``: norms are true scalars)."""
        n = self.n_leading
        blocks = []
        for (k, _), v in self.items():
            dims = list(range(v.dim() - k, v.dim()))
            blocks.append(torch.linalg.vector_norm(v, dim=dims) if dims else v.abs())
        return self._new({(0, 1): torch.cat(blocks, n - 1)} if blocks else {})

    def get_component(self, component: Union[int, slice], future_steps: int = 1) -> "MultiImage":
        """Pick tensor components across keys (ginjax's ``get_component``, batched as its ``batch_get_component``).

        Each block ``(B, C * future_steps, *spatial, tensor)`` is read as ``C`` fields with ``future_steps`` time
        steps each; the components of all fields of all keys (canonical order; a field's ``D**k`` components
        consecutive) are numbered ``0, 1, ...`` and ``component`` (an int or a slice) picks some. Returns the
        scalar MultiImage ``{(0, +1): (B, n_picked * future_steps, *spatial)}``, picked component major, time
        minor. E.g. density (scalar), pressure (scalar), velocity (vector) in 2D: 0 density, 1 pressure, 2 and 3
        the velocity's x and y.
        """
        if self.n_leading != 2:
            raise ValueError(f"get_component needs the (batch, channels) leading axes, got {self.n_leading} leading axes")
        if not is_integer(future_steps) or future_steps < 1:
            raise ValueError(f"future_steps must be an integer >= 1, got {future_steps!r}")
        B, spatial, D = self.batch_size, self.spatial_dims, self.D
        parts = []
        for (k, _), v in self.items():
            if v.shape[1] % future_steps:
                raise ValueError(
                    f"get_component: key (k={k}) has {v.shape[1]} channels, not a multiple of future_steps={future_steps}"
                )
            x = v.reshape((B, -1, future_steps) + spatial + (D**k,))  # (B, C, T, *spatial, D^k)
            x = x.movedim(1, -2).reshape((B, future_steps) + spatial + (-1,))  # (B, T, *spatial, C*D^k)
            parts.append(x)
        if not parts:
            raise ValueError("get_component: the MultiImage is empty")
        data = torch.cat(parts, -1)
        idx = torch.arange(data.shape[-1])[component].reshape(-1).to(data.device)
        picked = data.index_select(-1, idx)  # (B, T, *spatial, n)
        picked = picked.movedim(-1, 1).reshape((B, -1) + spatial)
        return self._new({(0, 1): picked})

    # ---- leading axes ------------------------------------------------------------------------------------
    def _check_leading_axis(self, axis, name: str) -> int:
        n = self.n_leading
        if not is_integer(axis) or not 0 <= axis < n:
            raise ValueError(f"{name}: axis must be a leading axis in 0..{n - 1}, got {axis!r}")
        return int(axis)

    def expand(self, axis: int, size: int) -> "MultiImage":
        """Split leading axis ``axis`` of every block into ``(-1, size)`` (ginjax's ``expand``): e.g.
        ``(B, C*T, ...)`` with ``expand(1, T)`` becomes ``(B, C, T, ...)``; :meth:`combine_axes` undoes it."""
        axis = self._check_leading_axis(axis, "expand")
        out = {}
        for key, v in self.items():
            if not is_integer(size) or size < 1 or v.shape[axis] % size:
                raise ValueError(
                    f"expand: size must be a positive integer dividing axis {axis} (size {v.shape[axis]} for key "
                    f"{key}), got {size!r}"
                )
            out[key] = v.reshape(v.shape[:axis] + (-1, int(size)) + v.shape[axis + 1 :])
        return self._new(out)

    def combine_axes(self, axes: Sequence[int]) -> "MultiImage":
        """Merge adjacent leading axes ``axes`` (e.g. ``(1, 2)``) of every block into one (ginjax's
        ``combine_axes``); at least the batch and channel axes remain."""
        axes = tuple(axes)
        n = self.n_leading
        if (
            len(axes) < 2
            or not all(is_integer(a) for a in axes)
            or list(axes) != list(range(axes[0], axes[0] + len(axes)))
            or axes[0] < 0
            or axes[-1] >= n
            or n - len(axes) + 1 < 2
        ):
            raise ValueError(
                f"combine_axes: axes must be 2 or more adjacent leading axes (of 0..{n - 1}) leaving at least the "
                f"batch and channel axes, got {axes!r}"
            )
        return self._new({key: v.reshape(v.shape[: axes[0]] + (-1,) + v.shape[axes[-1] + 1 :]) for key, v in self.items()})

    def get_subset(self, idxs) -> "MultiImage":
        """The batch entries ``idxs`` (a 1-D integer tensor or sequence; ginjax's ``get_subset``)."""
        if isinstance(idxs, torch.Tensor):
            t = idxs
        else:
            try:
                t = torch.as_tensor(idxs)
            except (TypeError, ValueError, RuntimeError):
                t = None
        if t is None or t.dim() != 1 or t.dtype.is_floating_point or t.dtype == torch.bool:
            raise ValueError(f"get_subset: idxs must be a 1-D sequence of integer indices, e.g. [0], got {idxs!r}")
        t = t.to(torch.long)
        return self._new({key: v.index_select(0, t.to(v.device)) for key, v in self.items()})

    def get_one(self, idx: int = 0, keepdims: bool = True) -> "MultiImage":
        """Batch entry ``idx`` (ginjax's ``get_one``): with ``keepdims`` a batch of 1; without it the batch axis is
        dropped, which needs at least 3 leading axes (the next leading axis becomes the batch; with only batch
        and channels there would be no batch axis left, which this MultiImage's convention does not allow)."""
        if not is_integer(idx):
            raise ValueError(f"get_one: idx must be an integer, got {idx!r}")
        if keepdims:
            return self.get_subset([int(idx)])
        if self.n_leading < 3:
            raise ValueError(
                "get_one(keepdims=False) would leave no batch axis: a MultiImage keeps its batch and channel axes "
                "(use keepdims=True for a batch of 1)"
            )
        return self._new({key: v[int(idx)] for key, v in self.items()})

    # ---- arithmetic ----------------------------------------------------------------------------------
    def _check_compatible(self, other, op: str, same_batch: bool = True) -> None:
        """``other`` is a MultiImage with the same ``D``, ``is_torus``, signature, grid and (if ``same_batch``)
        batch size; ``ValueError`` naming what differs otherwise (no broadcasting, as in ginjax)."""
        if not isinstance(other, MultiImage):
            raise TypeError(f"{op}: expected a MultiImage, got {type(other).__name__}")
        if (self.D, self.is_torus, self.signature) != (other.D, other.is_torus, other.signature):
            raise ValueError(
                f"{op}: MultiImages must have the same D, is_torus and signature, got "
                f"{(self.D, self.is_torus, self.signature)} and {(other.D, other.is_torus, other.signature)}"
            )
        if self.spatial_dims != other.spatial_dims:
            raise ValueError(
                f"{op}: MultiImages must have the same grid size N, got {_grid_str(self.spatial_dims)} and "
                f"{_grid_str(other.spatial_dims)}"
            )
        if same_batch and self.batch_size != other.batch_size:
            raise ValueError(
                f"{op}: MultiImages must have the same batch size (no broadcasting), got batch sizes "
                f"{self.batch_size} and {other.batch_size}"
            )
        if same_batch and any(v.shape != other[key].shape for key, v in self.items()):
            raise ValueError(
                f"{op}: MultiImages must have blocks of the same shapes, got "
                f"{[tuple(v.shape) for v in self.values()]} and {[tuple(v.shape) for v in other.values()]}"
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

    def concat(self, other: "MultiImage", axis: Optional[int] = None) -> "MultiImage":
        """Concatenate along a leading axis. Default (``axis=None``, or the channel axis: ``1`` for
        ``(B, C)``): keys are united, common keys stack ``self``'s channels first (ginjax's default axis 0 is its
        channel axis when there is no batch axis). Along any other leading axis (``0``: the batch) both must have
        the same signature. :meth:`concat_inverse` splits the result again."""
        if not isinstance(other, MultiImage):
            raise TypeError(f"concat: expected a MultiImage, got {type(other).__name__}")
        if (self.D, self.is_torus) != (other.D, other.is_torus):
            raise ValueError(
                f"concat: D and is_torus must match, got {(self.D, self.is_torus)} and {(other.D, other.is_torus)}"
            )
        if not self:
            return other.copy()
        if not other:
            return self.copy()
        n = self.n_leading
        channel = n - 1
        if axis is None:
            axis = channel
        if not is_integer(axis) or not 0 <= axis < n:
            raise ValueError(f"axis must be 0 (batch) or {channel} (channels), got {axis!r} (leading axes: 0..{n - 1})")
        if other.n_leading != n:
            raise ValueError(f"concat: MultiImages must have the same leading axes, got {n} and {other.n_leading}")
        if axis != channel:
            self._check_compatible(other, f"concat(axis={axis})", same_batch=False)
            for key, v in self.items():
                w = other[key]
                if v.shape[:axis] + v.shape[axis + 1 :] != w.shape[:axis] + w.shape[axis + 1 :]:
                    raise ValueError(
                        f"concat(axis={axis}): blocks of key {key} must match on every axis but {axis}, got "
                        f"{tuple(v.shape)} and {tuple(w.shape)}"
                    )
            return self._new({key: torch.cat([v, other[key]], axis) for key, v in self.items()})
        if (self.leading_shape, self.spatial_dims) != (other.leading_shape, other.spatial_dims) or any(
            v.shape[: n - 1] != other[key].shape[: n - 1] for key, v in self.items() if key in other
        ):
            if n == 2 and len(set(self.spatial_dims)) == 1 and len(set(other.spatial_dims)) == 1:
                mine, theirs = (self.batch_size, self.spatial_dims[0]), (other.batch_size, other.spatial_dims[0])
            else:
                mine, theirs = (self.leading_shape, self.spatial_dims), (other.leading_shape, other.spatial_dims)
            raise ValueError(
                f"concat(axis={axis}): MultiImages must have the same batch size and grid size N, got "
                f"(batch, N) = {mine} and {theirs}"
            )
        out = dict(self._data)
        for key, v in other.items():
            out[key] = torch.cat([out[key], v], axis) if key in out else v
        return self._new(out)

    def concat_inverse(self, signature: SignatureLike, axis: Optional[int] = None) -> Tuple["MultiImage", "MultiImage"]:
        """Split into ``(a, b)`` where ``b`` takes, for every key of ``signature``, the **last** ``signature[key]``
        entries along ``axis`` (default: the channel axis) and ``a`` keeps the rest (ginjax's ``concat_inverse``):
        ``a.concat(b, axis).concat_inverse(b.signature, axis)`` gives back ``a`` and ``b``. Keys with no entries
        left are absent (either part may be empty)."""
        sig = _signature_dict(signature)
        n = self.n_leading
        axis = n - 1 if axis is None else self._check_leading_axis(axis, "concat_inverse")
        unknown = [key for key in sig if key not in self._data and sig[key]]
        if unknown:
            raise ValueError(f"concat_inverse: signature keys {unknown} are not in this MultiImage (keys {list(self)})")
        a, b = {}, {}
        for key, v in self.items():
            size = sig.get(key, 0)
            total = v.shape[axis]
            if size > total:
                raise ValueError(
                    f"concat_inverse: signature asks {size} entries of key {key} along axis {axis}, which has {total}"
                )
            if size < total:
                a[key] = v.narrow(axis, 0, total - size)
            if size > 0:
                b[key] = v.narrow(axis, total - size, size)
        return self._new(a), self._new(b)

    def __truediv__(self, other: float) -> "MultiImage":
        return self._new({key: v / other for key, v in self.items()})

    def equal(self, other: "MultiImage") -> bool:
        """Bitwise equality: same ``D``, ``is_torus``, keys and ``torch.equal`` values (same shapes)."""
        return (
            isinstance(other, MultiImage)
            and (self.D, self.is_torus, list(self)) == (other.D, other.is_torus, list(other))
            and all(torch.equal(v, other[key]) for key, v in self.items())
        )

    def allclose(self, other: "MultiImage", rtol: float = fn.TINY, atol: float = fn.TINY) -> bool:
        """Value equality as ginjax's ``==``: same ``D``, ``is_torus``, keys and block shapes, and every value
        ``torch.allclose`` (promoted dtype, ``self``'s device). Defaults ``rtol = atol = 1e-5`` (ginjax's ``TINY``),
        as :meth:`GeometricImage.allclose`."""
        if not isinstance(other, MultiImage):
            raise TypeError(f"allclose: other must be a MultiImage, got {type(other).__name__}")
        mine = (self.D, self.is_torus, [(key, tuple(v.shape)) for key, v in self.items()])
        theirs = (other.D, other.is_torus, [(key, tuple(v.shape)) for key, v in other.items()])
        return mine == theirs and all(fn.allclose(v, other[key], rtol, atol) for key, v in self.items())

    def __eq__(self, other) -> bool:
        """``self.allclose(other)`` with ``rtol = atol = 1e-5`` (ginjax's ``==``); :meth:`equal` is bitwise."""
        if not isinstance(other, MultiImage):
            return NotImplemented
        return self.allclose(other)

    __hash__ = None  # mutable tensors inside

    def to(self, *args, **kwargs) -> "MultiImage":
        """A copy with every value moved/cast by ``tensor.to(*args, **kwargs)``."""
        return self._new({key: v.to(*args, **kwargs) for key, v in self.items()})

    def times_group_element(self, g, gspace: Optional[GSpace] = None) -> "MultiImage":
        """Act with ``g`` on every image: ``new(M a) = rho_{k,parity}(g) old(a)`` (exact; see
        :meth:`GeometricImage.times_group_element` for ``g``, ``gspace`` and rectangular grids)."""
        M = as_signed_permutation(g, self.D, gspace)
        if self:
            fn.check_grid_allows(M, self.spatial_dims)
        data = {(k, p): fn.act(v, M, k, p, self.D) for (k, p), v in self.items()}
        return self._new(data, is_torus=fn.rotate_is_torus(self.is_torus, M))

    def average_pool(self, size: int) -> "MultiImage":
        """Mean over non-overlapping ``size**D`` patches on every block (``size`` divides every side)."""
        out = {}
        for (k, p), v in self.items():
            out[(k, p)] = GeometricImage(v, p, self.D, self.is_torus, k=k).average_pool(size).data
        return self._new(out)

    def to_images(self) -> List[GeometricImage]:
        """Every channel of every batch entry as a :class:`GeometricImage` without batch axes (ginjax's
        ``to_images``): keys in canonical order, then the leading axes in row-major order (batch major, channel
        minor)."""
        out = []
        for (k, p), v in self.items():
            for x in v.reshape((-1,) + v.shape[self.n_leading :]):
                out.append(GeometricImage(x, p, self.D, self.is_torus, k=k))
        return out

    def images(self, batch: int = 0) -> List[Tuple[Key, int, GeometricImage]]:
        """``[((k, parity), channel, GeometricImage), ...]`` for one batch entry, in canonical key order."""
        if self.n_leading != 2:
            raise ValueError(f"images() needs the (batch, channels) leading axes, got {self.n_leading} leading axes")
        out = []
        for (k, p), v in self.items():
            for c in range(v.shape[1]):
                out.append(((k, p), c, GeometricImage(v[batch, c], p, self.D, self.is_torus, k=k)))
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
        D = check_dimension(D, "D")
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
        from .. import plotting

        items = [
            (img.data, p, f"k={k}, parity={p:+d}, channel {c}") for (k, p), c, img in self.images(batch)
        ]
        kwargs.setdefault("D", self.D)
        return plotting.plot_images(items, **kwargs)
