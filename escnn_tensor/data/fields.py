r"""Tensor fields on a grid of any shape: declarations and the conversion between a file's layout and escnn's.

**Grid layout** (The Well's, ginjax's, and that of every reader here): a field of order ``k`` on a ``d``-dimensional
grid is an array ``(..., n_x, n_y[, n_z], d, ..., d)`` (``k`` trailing component axes): array axis ``i`` runs
along ``+x_i`` and component index ``i`` means the direction of axis ``i``. ``grid = (n_x, n_y[, n_z])``.

**escnn layout** (:mod:`escnn_tensor.groups`): ``(..., d**k, n_y, n_x)`` in 2D with axes ``(-y, x)`` and
``(..., d**k, n_z, n_y, n_x)`` in 3D with axes ``(-z, -y, x)``; the ``d**k`` channels are the components in
row-major order over ``(x, y[, z])``. The spatial shape in escnn layout is therefore ``grid[::-1]``.

:func:`grid_to_escnn_layout` and :func:`escnn_to_grid_layout` convert between them exactly (re-indexing only) on
any grid shape, square or not (:func:`escnn_tensor.grid_to_escnn` asks for a square / cubic grid).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ["Field", "grid_to_escnn_layout", "escnn_to_grid_layout", "field_list"]


@dataclass(frozen=True)
class Field:
    """A declared tensor field: its ``name``, ``order`` ``k`` (0 scalar, 1 vector, 2 two-tensor, ...) and
    ``parity`` (+1 a true tensor, -1 a pseudo-tensor, which changes sign under reflections)."""

    name: str
    order: int
    parity: int = 1


def field_list(fields: Sequence[Field]) -> Tuple[Tuple[int, int, int], ...]:
    """``((k, parity, 1), ...)``, one entry per field in order, as :func:`escnn_tensor.tensor_type` takes it."""
    return tuple((f.order, f.parity, 1) for f in fields)


def grid_to_escnn_layout(x: Union[np.ndarray, torch.Tensor], d: int, k: int) -> torch.Tensor:
    """``(B, *grid, (d,)*k)`` in grid layout -> ``(B, d**k, *grid[::-1])`` in escnn layout, float64 (any grid).

    Axis ``i`` of the grid (along ``+x_i``) becomes spatial axis ``-1 - i`` of the result, and the ``y`` (and
    ``z``) axes are reversed, so the result's axes run along ``(-y, x)`` / ``(-z, -y, x)``. Exact.
    """
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(torch.float64)
    if t.dim() != 1 + d + k or tuple(t.shape[1 + d :]) != (d,) * k:
        raise ValueError(
            f"expected an order-{k} field of shape (B, *grid) + {(d,) * k} in grid layout, got {tuple(t.shape)}"
        )
    batch, grid = t.shape[0], tuple(t.shape[1 : 1 + d])
    t = t.reshape((batch,) + grid + (d**k,))
    t = t.flip(tuple(range(2, 1 + d)))  # +y (+z) -> -y (-z)
    t = t.permute((0, d + 1) + tuple(range(d, 0, -1)))  # (B, C, axis d-1, ..., axis 0)
    return t.contiguous()


def escnn_to_grid_layout(x: torch.Tensor, d: int, k: int) -> torch.Tensor:
    """The inverse of :func:`grid_to_escnn_layout`: ``(B, d**k, *grid[::-1])`` -> ``(B, *grid, (d,)*k)``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 + d or x.shape[1] != d**k:
        raise ValueError(
            f"expected an order-{k} field of shape (B, {d**k}, *grid[::-1]) in escnn layout, got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    t = x.permute((0,) + tuple(range(d + 1, 1, -1)) + (1,))  # (B, axis 0, ..., axis d-1, C)
    t = t.flip(tuple(range(2, 1 + d)))
    return t.reshape(tuple(t.shape[: 1 + d]) + (d,) * k)
