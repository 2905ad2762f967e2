"""``MultiImage``: several geometric images of different (k, parity), as in ginjax (grid layout)."""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from escnn.gspaces import GSpace

from ..groups import check_dimension
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
        D = check_dimension(D, "D")
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
        self.is_torus = fn.check_is_torus(is_torus, D)

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
    def _check_compatible(self, other, op: str, same_batch: bool = True) -> None:
        """``other`` is a MultiImage with the same ``D``, ``is_torus``, signature, ``N`` and (if ``same_batch``)
        batch size; ``ValueError`` naming what differs otherwise (no broadcasting, as in ginjax)."""
        if not isinstance(other, MultiImage):
            raise TypeError(f"{op}: expected a MultiImage, got {type(other).__name__}")
        if (self.D, self.is_torus, self.signature) != (other.D, other.is_torus, other.signature):
            raise ValueError(
                f"{op}: MultiImages must have the same D, is_torus and signature, got "
                f"{(self.D, self.is_torus, self.signature)} and {(other.D, other.is_torus, other.signature)}"
            )
        if self.N != other.N:
            raise ValueError(f"{op}: MultiImages must have the same grid size N, got N={self.N} and N={other.N}")
        if same_batch and self.batch_size != other.batch_size:
            raise ValueError(
                f"{op}: MultiImages must have the same batch size (no broadcasting), got batch sizes "
                f"{self.batch_size} and {other.batch_size}"
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
            self._check_compatible(other, "concat(axis=0)", same_batch=False)
            return self._new({key: torch.cat([v, other[key]], 0) for key, v in self.items()})
        if axis != 1:
            raise ValueError(f"axis must be 0 (batch) or 1 (channels), got {axis!r}")
        if (self.batch_size, self.N) != (other.batch_size, other.N):
            raise ValueError(
                f"concat(axis=1): MultiImages must have the same batch size and grid size N, got "
                f"(batch, N) = {(self.batch_size, self.N)} and {(other.batch_size, other.N)}"
            )
        out = dict(self._data)
        for key, v in other.items():
            out[key] = torch.cat([out[key], v], 1) if key in out else v
        return self._new(out)

    def __truediv__(self, other: float) -> "MultiImage":
        return self._new({key: v / other for key, v in self.items()})

    def equal(self, other: "MultiImage") -> bool:
        """Bitwise equality: same ``D``, ``is_torus``, signature and ``torch.equal`` values (same shapes)."""
        return (
            isinstance(other, MultiImage)
            and (self.D, self.is_torus, self.signature) == (other.D, other.is_torus, other.signature)
            and all(torch.equal(v, other[key]) for key, v in self.items())
        )

    def allclose(self, other: "MultiImage", rtol: float = fn.TINY, atol: float = fn.TINY) -> bool:
        """Value equality as ginjax's ``==``: same ``D``, ``is_torus``, signature, batch size and ``N``, and every
        value ``torch.allclose`` (promoted dtype, ``self``'s device). Defaults ``rtol = atol = 1e-5`` (ginjax's
        ``TINY``), as :meth:`GeometricImage.allclose`."""
        if not isinstance(other, MultiImage):
            raise TypeError(f"allclose: other must be a MultiImage, got {type(other).__name__}")
        mine = (self.D, self.is_torus, self.signature, self.batch_size, self.N)
        theirs = (other.D, other.is_torus, other.signature, other.batch_size, other.N)
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
        :meth:`GeometricImage.times_group_element` for ``g`` and ``gspace``)."""
        M = as_signed_permutation(g, self.D, gspace)
        data = {(k, p): fn.act(v, M, k, p, self.D) for (k, p), v in self.items()}
        return self._new(data, is_torus=fn.rotate_is_torus(self.is_torus, M))

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
