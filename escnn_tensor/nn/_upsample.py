r"""``Upsample``: nearest-neighbour upsampling of tensor fields by an integer factor (2D and 3D).

Every pixel becomes a block of ``scale_factor**d`` pixels holding its field values unchanged. A signed permutation
of the input grid maps blocks onto blocks of the output grid (the output grid is the input grid refined about the same
centre), so the layer is exactly equivariant; it is the transposed convolution with a kernel of ones of size and
stride ``scale_factor``, which gives its output size (:func:`escnn_tensor.grid.conv_transpose_output_size`).
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

from escnn.nn import FieldType, GeometricTensor

from ..grid import conv_transpose_output_size, same_on_axes
from ._field_ops import TensorFieldModule

__all__ = ["Upsample"]


class Upsample(TensorFieldModule):
    r"""Nearest-neighbour upsampling: output pixel ``s`` holds the input value at pixel ``floor(s / scale_factor)``.

    Args:
        in_type: FieldType of tensor fields (2D or 3D); ``out_type = in_type``.
        scale_factor: integer ``>= 1`` (or ``d`` equal integers); non-integer factors are refused, since they
            resample unevenly and are not equivariant.

    Shapes: ``(B, C, N_1, .., N_d)`` -> ``(B, C, scale_factor N_1, ..)``; same as
    ``torch.nn.Upsample(scale_factor, mode='nearest')`` for integer factors, computed exactly by a broadcast view.
    """

    _any_orthogonal = "any"  # any escnn representation: every channel is resampled alike (TensorFieldModule)

    def __init__(self, in_type: FieldType, scale_factor: Union[int, Sequence[int]] = 2):
        super().__init__()
        self._set_types(in_type)
        self.scale_factor = same_on_axes(scale_factor, self.d, "scale_factor", 1)

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """Upsample: ``GeometricTensor`` ``(B, C, N..)`` -> ``(B, C, scale_factor N ..)`` of the same type."""
        x = self._check_input(input)
        s = self.scale_factor
        if s == 1:
            return self._wrap(x)
        spatial = x.shape[2:]
        view = x.shape[:2] + tuple(v for n in spatial for v in (n, 1))
        blocks = x.shape[:2] + tuple(v for n in spatial for v in (n, s))
        y = x.reshape(view).expand(blocks).reshape(x.shape[:2] + tuple(n * s for n in spatial))
        return self._wrap(y)

    def evaluate_output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """``(B, C, N_1..N_d)`` -> ``(B, C, scale_factor N_1, ..)``."""
        shape = super().evaluate_output_shape(input_shape)
        s = self.scale_factor
        return shape[:2] + tuple(conv_transpose_output_size(n, s, s) for n in shape[2:])

    def extra_repr(self) -> str:
        return f"{self.in_type}, scale_factor={self.scale_factor}"
