r"""Pooling of tensor fields over non-overlapping patches: ``NormMaxPool`` and ``AvgPool`` (2D and 3D).

Both split the grid into ``kernel_size**d`` patches and output one pixel per patch. A group element maps the grid onto
itself and, when the patches tile the grid (``N % kernel_size == 0`` on every axis), maps patches onto patches; the
output pixel of a patch depends only on the set of (field value, pixel) pairs in it (max of norms, or mean), and the
norm is invariant, so both layers are equivariant. The sizes go through :mod:`escnn_tensor.grid`.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from escnn.nn import FieldType, GeometricTensor

from ..grid import same_on_axes
from ._norm_ops import FieldMapsModule, check_pool_size

__all__ = ["NormMaxPool", "AvgPool"]


class _Pool(FieldMapsModule):
    _any_orthogonal = True  # also symmetric tensors and escnn's orthogonal representations (TensorFieldModule)

    def __init__(self, in_type: FieldType, kernel_size: Union[int, Sequence[int]] = 2):
        super().__init__()
        self._signature = self._set_types(in_type)
        self.kernel_size = same_on_axes(kernel_size, self.d, "kernel_size", 1)

    def evaluate_output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """``(B, C, N_1..N_d)`` -> ``(B, C, N_1 / kernel_size, ..)``; ``ValueError`` unless kernel_size divides N."""
        shape = super().evaluate_output_shape(input_shape)
        return shape[:2] + tuple(check_pool_size(shape[2:], self.kernel_size))

    def extra_repr(self) -> str:
        return f"{self.in_type}, kernel_size={self.kernel_size}"


class NormMaxPool(_Pool):
    r"""Max pooling by field norm: in every patch, each field keeps its value at the pixel where its norm is largest.

    For a field ``x_f`` (``d**k`` components) and a patch ``Q`` of ``kernel_size**d`` pixels the output is
    ``x_f(s*)`` with ``s* = argmax_{s in Q} |x_f(s)|^2`` (Euclidean norm over all components; for scalars and
    pseudoscalars ``|x|``, so the value of largest magnitude is kept with its sign, unlike ``torch.nn.MaxPool2d``).
    Different fields of one pixel may be taken from different pixels.

    Ties: among pixels of exactly equal norm, the first in the patch in escnn's row-major scan order
    (``(-y, x)`` / ``(-z, -y, x)``; torch's ``max_pool`` rule) wins. That rule is not symmetric: a group element
    changes the scan order, so with a tie between different field values the transformed input may keep another
    value and the output is then not equivariant (a tie needs only equal norms, e.g. ``v`` at one pixel of the
    patch and ``-v`` at another).
    Exact ties have probability zero for continuous (e.g. random) inputs, which is what the tests use; for inputs
    with exact ties (quantised data, symmetric patterns) prefer :class:`AvgPool`.

    Args:
        in_type: FieldType of tensor fields (2D or 3D); ``out_type = in_type``.
        kernel_size: side of the patches (= stride); an int or ``d`` equal ints. It must divide the spatial size.

    Shapes: ``(B, C, N_1, .., N_d)`` -> ``(B, C, N_1 / kernel_size, ..)``.
    Computed with one ``max_pool`` over the squared norms of all fields (``return_indices``) and one ``gather``.
    Gradients flow to the selected values only (not through the choice).
    """

    def __init__(self, in_type: FieldType, kernel_size: Union[int, Sequence[int]] = 2):
        super().__init__(in_type, kernel_size)
        self._build_field_maps(self._signature)

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """Pool: ``GeometricTensor`` ``(B, C, N..)`` -> ``(B, C, N / kernel_size ..)`` of the same type."""
        x = self._check_input(input)
        out = check_pool_size(x.shape[2:], self.kernel_size)
        B, C = x.shape[:2]
        with torch.no_grad():
            xd = x.detach() if x.element_size() >= 4 else x.detach().float()  # half/bf16: exact norms, no false ties
            sq = self._field_sum(xd * xd, dim=1)  # (B, F, N..) squared field norms
            pool = F.max_pool2d if self.d == 2 else F.max_pool3d
            _, idx = pool(sq, self.kernel_size, self.kernel_size, return_indices=True)  # flat pixel per patch
            idx = self._to_channels(idx, dim=1).flatten(2)
        y = x.flatten(2).gather(2, idx)
        return self._wrap(y.view((B, C) + tuple(out)))


class AvgPool(_Pool):
    r"""Average pooling: every field's mean over each ``kernel_size**d`` patch (linear, so exactly equivariant).

    Args:
        in_type: FieldType of tensor fields (2D or 3D); ``out_type = in_type``.
        kernel_size: side of the patches (= stride); an int or ``d`` equal ints. It must divide the spatial size.

    Shapes: ``(B, C, N_1, .., N_d)`` -> ``(B, C, N_1 / kernel_size, ..)`` (``torch.nn.functional.avg_pool2d``/``3d``).
    """

    _any_orthogonal = "any"  # any escnn representation: a mean of every channel alike (TensorFieldModule)

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """Pool: ``GeometricTensor`` ``(B, C, N..)`` -> ``(B, C, N / kernel_size ..)`` of the same type."""
        x = self._check_input(input)
        check_pool_size(x.shape[2:], self.kernel_size)
        pool = F.avg_pool2d if self.d == 2 else F.avg_pool3d
        return self._wrap(pool(x, self.kernel_size, self.kernel_size))
