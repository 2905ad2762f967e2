r"""What the normalisation and pooling layers share (private): per-field operations on all channels at once, and
their argument checks.

:class:`FieldMapsModule` (a :class:`~escnn_tensor.nn._field_ops.TensorFieldModule`, so it has that class's input
checks, exact float64-backed buffers, copying and pickling) holds where every field of its ``in_type`` sits in the
channels and the orthonormal basis of every field's invariant subspace, and offers:

* :meth:`~FieldMapsModule._field_sum`: sum of the channels of every field (e.g. squared norms ``|x_f|^2`` from
  ``x * x``), ``(.., C, ..) -> (.., F, ..)``;
* :meth:`~FieldMapsModule._to_channels`: a per-field value repeated on the channels of its field;
* :meth:`~FieldMapsModule._invariant_coefficients` / :meth:`~FieldMapsModule._invariant_vector`: coordinates of
  the projection of a per-channel vector onto the invariant subspace of every field (basis
  :func:`escnn_tensor.nn._fields.bias_basis`), and back.

Each is one matrix product (on vectors of statistics) or one ``index_add`` / ``index_select`` over all fields at
once: no loop over fields or types in forward.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..grid import conv_output_size, stride_fits
from ._field_ops import TensorFieldModule
from ._fields import bias_basis

__all__ = ["FieldMapsModule", "check_flag", "check_real", "check_pool_size"]


class FieldMapsModule(TensorFieldModule):
    r"""Base of layers acting field by field on all channels at once (see the module docstring).

    After :meth:`_build_field_maps`: ``n_fields`` ``F``, ``n_channels`` ``C``, ``n_coefficients`` (total dimension
    of the invariant subspaces; numbered field after field, ``m_f`` for field ``f`` in the order of
    ``bias_basis(gspace, (k_f, p_f))``), and the non-persistent buffers ``_field_of_channel (C,)``,
    ``_field_dim (F,)`` (``d**k_f``), ``_field_n_invariant (F,)`` (``m_f``). Nothing here is in the ``state_dict``.
    """

    def _build_field_maps(self, signature: Sequence[Tuple[int, int]]) -> None:
        d = self.d
        gspace = self.in_type.gspace
        sizes = getattr(self, "_sizes", None)
        dims = np.array([d ** t[0] if sizes is None else sizes[t] for t in signature], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(dims)])
        self.n_fields = len(signature)
        self.n_channels = int(starts[-1])
        bases: Dict[Tuple[int, int], np.ndarray] = {
            t: bias_basis(gspace, t, None if sizes is None else sizes.get(("reps", t))).numpy()
            for t in dict.fromkeys(signature)
        }
        n_inv = np.array([bases[t].shape[0] for t in signature], dtype=np.int64)
        cstarts = np.concatenate([[0], np.cumsum(n_inv)])
        self.n_coefficients = int(cstarts[-1])
        self._scalar_only = bool((dims == 1).all())
        # fewest values per channel (batch * pixels) with n D_f > m_f for every field: 2 with a scalar field, else 1
        self._min_values = int(np.max(np.floor_divide(n_inv, dims), initial=0)) + 1

        # (coefficient, channel, value) triples of the block-diagonal basis, built type by type
        pc: List[np.ndarray] = []
        pch: List[np.ndarray] = []
        pv: List[np.ndarray] = []
        for t, basis in bases.items():
            fields = np.array([f for f, s in enumerate(signature) if s == t], dtype=np.int64)
            rows, cols = np.nonzero(basis)
            pc.append((cstarts[fields][:, None] + rows[None, :]).ravel())
            pch.append((starts[fields][:, None] + cols[None, :]).ravel())
            pv.append(np.broadcast_to(basis[rows, cols], (fields.size, rows.size)).ravel())
        as_tensor = lambda parts, dtype: torch.from_numpy(np.concatenate(parts or [np.zeros(0)]).astype(dtype))
        self.register_buffer(
            "_field_of_channel", torch.from_numpy(np.repeat(np.arange(self.n_fields), dims)), persistent=False
        )
        self.register_buffer("_pair_coefficient", as_tensor(pc, np.int64), persistent=False)
        self.register_buffer("_pair_channel", as_tensor(pch, np.int64), persistent=False)
        self._add_exact_buffer("_pair_value", as_tensor(pv, np.float64))
        self._add_exact_buffer("_field_dim", torch.from_numpy(dims.astype(np.float64)))
        self._add_exact_buffer("_field_n_invariant", torch.from_numpy(n_inv.astype(np.float64)))
        # the same maps as dense matrices, for vectors of statistics (one matmul instead of 4 indexing operations,
        # deterministic on every device): invariant coefficients (n_coefficients, C) and field membership (F, C)
        coeff = np.zeros((self.n_coefficients, self.n_channels))
        if pc:
            np.add.at(coeff, (np.concatenate(pc), np.concatenate(pch)), np.concatenate(pv))
        member = np.zeros((self.n_fields, self.n_channels))
        member[np.repeat(np.arange(self.n_fields), dims), np.arange(self.n_channels)] = 1.0
        self._add_exact_buffer("_coeff_matrix", torch.from_numpy(coeff))
        self._add_exact_buffer("_field_matrix", torch.from_numpy(member))

    def _field_sum(self, v: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """Sum of the ``C`` channels of every field along ``dim``: ``(.., C, ..) -> (.., F, ..)``."""
        if self._scalar_only:
            return v
        if v.dim() == 1:  # a vector of statistics: one matrix-vector product
            return torch.mv(self._field_matrix, v)
        shape = list(v.shape)
        shape[dim] = self.n_fields
        return v.new_zeros(shape).index_add_(dim, self._field_of_channel, v)

    def _to_channels(self, v: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """A per-field value on every channel of its field along ``dim``: ``(.., F, ..) -> (.., C, ..)``."""
        return v if self._scalar_only else v.index_select(dim, self._field_of_channel)

    def _invariant_coefficients(self, v: torch.Tensor) -> torch.Tensor:
        """Coordinates of the invariant projection of each field: ``(.., C) -> (.., n_coefficients)``."""
        return v @ self._coeff_matrix.T

    def _invariant_vector(self, c: torch.Tensor) -> torch.Tensor:
        """The per-channel vector with invariant coordinates ``c``: ``(.., n_coefficients) -> (.., C)``."""
        return c @ self._coeff_matrix


# ----------------------------------------------------------------------------------------------------------------
# argument checks


def check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_real(value, name: str, low: float, high: float = math.inf, allow_none: bool = False) -> Optional[float]:
    """A finite real number in ``[low, high]`` (bools, NaN, inf refused) as ``float``; ``None`` if ``allow_none``."""
    if value is None and allow_none:
        return None
    upper = f"{high:g}]" if math.isfinite(high) else "inf)"
    accepted = f"a real number in [{low:g}, {upper}" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {accepted}, got {value!r} of type {type(value).__name__}")
    if not (math.isfinite(float(value)) and low <= float(value) <= high):  # eps=inf would zero every output
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return float(value)


def check_pool_size(spatial: Sequence[int], kernel_size: int) -> List[int]:
    """Output sides of a non-overlapping pool of side ``kernel_size``; ``ValueError`` unless it divides every side.

    The group maps the grid onto itself; it maps the patches of the pool onto patches only when they tile the grid,
    i.e. ``N % kernel_size == 0`` on every axis (:func:`escnn_tensor.grid.stride_fits` with stride = kernel_size).
    """
    spatial = [int(n) for n in spatial]
    bad = [n for n in spatial if n < kernel_size or not stride_fits(n, kernel_size, kernel_size)]
    if bad:
        raise ValueError(
            f"kernel_size={kernel_size} must divide the spatial size on every axis, got size {tuple(spatial)}: "
            f"the pooling patches must tile the grid so that every rotation/reflection maps patches onto patches "
            f"(otherwise the output is not equivariant). Crop or pad the input to a multiple of {kernel_size}."
        )
    return [conv_output_size(n, kernel_size, kernel_size) for n in spatial]
