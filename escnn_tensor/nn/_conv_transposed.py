r"""``GeometricConvTransposed``: the complete equivariant transposed convolution between tensor fields.

Math
----
torch's ``conv_transpose2d`` / ``conv3d`` with stride ``s``, dilation ``D``, padding ``P`` and weight
``W`` (``C_in x C_out x K..``) sends input pixel ``q`` through kernel pixel ``j`` to output pixel ``p = s q + D j - P``:

.. math::

    y[p] = \sum_{q, j:\; p = s q + D j - P} W[:, :, j]^T x[q] = \sum \kappa(j)\, x[q],
    \qquad \kappa(j) = W[:, :, j]^T \ (\text{an } out \times in \text{ matrix}).

With centred coordinates (``q_c = q - (N-1)/2``, ``j_c = j - (K-1)/2``, ``p_c = p - (M-1)/2`` on an output of side
``M = (N-1) s - 2P + D (K-1) + o + 1``, ``o`` the output padding) this reads

.. math::

    p_c = s\, q_c + D\, j_c - o/2 .

For ``o = 0`` the map is linear in the centred coordinates, so for a group element with matrix :math:`M` (acting
on centred pixel coordinates) substituting :math:`q_c = M q'`, :math:`j_c = M j'` shows that the layer is
equivariant if and only if :math:`\kappa(Ma) = \rho_{out}(g)\, \kappa(a)\, \rho_{in}(g)^T` for every ``g``:
*the same condition as for* ``GeometricConv``, so :math:`\kappa` is again an invariant filter of order
``k_in + k_out`` and parity ``p_in p_out``, and one weight per invariant filter per field pair makes the layer
complete. That the kernel is applied "flipped" (output at ``q + j`` rather than input at ``p + j``) does not matter,
with or without :math:`-I` in the group: :math:`\kappa'(a) = \kappa(-a)` satisfies the same condition for every
subgroup of :math:`B_d`, because the condition is linear in the offset. Any stride, dilation, padding, even or odd
``K``, and any input size keep the output centred (``K = 2, s = 2``: ``N -> 2N``, exactly equivariant).

The output padding appends ``o`` pixels at the *end* of an axis only: it moves the output's centre by ``o/2``
pixels along that axis (the vector ``-o/2`` per axis in the equation above), and the layer is equivariant exactly
when every group element fixes that vector, :math:`M o = o`. For a group holding :math:`-I` (D4, :math:`O_h`,
C2, D2, the inversion, ...) that means ``o = 0``; for, e.g., a reflection group it allows padding along the mirror
plane. Other output paddings raise a ``ValueError``.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from escnn.nn import FieldType, GeometricTensor

from ..grid import conv_transpose_output_size, per_axis, same_on_axes, symmetric_padding
from ..groups import escnn_to_grid, group_matrices
from ._fields import check_input_shape
from ._kernel import KernelExpansionModule

__all__ = ["GeometricConvTransposed"]

IntOrTuple = Union[int, Sequence[int]]


class GeometricConvTransposed(KernelExpansionModule):
    r"""Complete :math:`G`-equivariant transposed convolution between FieldTypes of tensor fields (2D or 3D).

    Computes ``torch.nn.functional.conv_transpose2d`` / ``conv_transpose3d`` with a kernel expanded from the
    complete basis of invariant filters, exactly as :class:`~escnn_tensor.nn.GeometricConv` does (the kernel of a
    field pair is an invariant filter of order ``k_in + k_out``, parity ``p_in p_out``; math in the module docs).
    Typical use: ``kernel_size=2, stride=2`` doubles the grid ``N -> 2N`` equivariantly (escnn's
    ``R2ConvTransposed`` has no kernel at size 2).

    Args:
        in_type: FieldType of the input, made of tensor fields (:func:`escnn_tensor.tensor_type`).
        out_type: FieldType of the output, on the same gspace.
        kernel_size: side ``K`` of the kernel (odd or even).
        stride, dilation: as in ``torch.nn.ConvTranspose2d`` (equal on all axes).
        padding: pixels removed from both ends of every output axis: an int or a tuple of ``d`` equal ints.
        output_padding: pixels added at the end of each output axis (an int or ``d`` ints, each smaller than
            ``stride`` or ``dilation``, as in torch). It moves the output grid's centre, so it must be a vector
            fixed by every group element: ``0`` for groups holding ``-I`` (else ``ValueError``).
        bias: add a learnable bias in the invariant subspace of each output field.
        initialize: draw the weights with the variance-preserving scheme of :meth:`reset_parameters`.

    Shapes: ``GeometricTensor`` ``(B, in_type.size, N..)`` in, ``(B, out_type.size, M..)`` out with
    ``M = (N - 1) stride - 2 padding + dilation (K - 1) + output_padding + 1``
    (:func:`escnn_tensor.grid.conv_transpose_output_size`).

    Parameters: ``weights`` and ``bias``, laid out as in ``GeometricConv`` (same count per field pair);
    :meth:`expand_parameters` returns the kernel in torch's transposed layout ``(in_type.size, out_type.size, K..)``.
    Eval-mode caching, ``.to()``, ``check_equivariance``, copying and pickling behave as in ``GeometricConv``.

    Initialisation (:meth:`reset_parameters`): as ``GeometricConv``, the weights into each output type have variance
    ``gain / max_w G(w)`` so that no input frequency gains power in expectation; for the transposed layer ``G`` is the
    power per *output* pixel, i.e. the kernel's power spectrum summed over the ``stride**d`` aliases of each input
    frequency and divided by ``stride**(2d)`` (each output pixel sees only the kernel pixels of its stride phase).
    So with ``stride > 1`` the weights are larger than in a convolution with the same kernel (``K = 2, s = 2``:
    every output pixel gets exactly one kernel pixel from one input pixel, and the gain is the mean squared kernel
    entry).
    """

    _transposed = True

    def __init__(
        self,
        in_type: FieldType,
        out_type: FieldType,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        bias: bool = True,
        initialize: bool = True,
    ):
        super().__init__()
        d, sig_in, sig_out = self._init_types(in_type, out_type)
        self.kernel_size = same_on_axes(kernel_size, d, "kernel_size", 1)
        self.stride = same_on_axes(stride, d, "stride", 1)
        self.dilation = same_on_axes(dilation, d, "dilation", 1)
        if isinstance(padding, str):
            raise TypeError(
                f"padding of a transposed convolution must be an integer >= 0 or a tuple of {d} equal integers "
                f"(the pixels cropped from both ends of each output axis; torch's ConvTranspose has no string "
                f"paddings), got {padding!r}"
            )
        self.padding = symmetric_padding(padding, d, self.kernel_size, self.dilation)
        self.output_padding = self._check_output_padding(output_padding)
        self._build(sig_in, sig_out, bias, initialize)

    def _check_output_padding(self, output_padding: IntOrTuple) -> Tuple[int, ...]:
        """``output_padding`` per axis, checked against torch's rule and against equivariance (module docs)."""
        d = self.d
        op = per_axis(output_padding, d, "output_padding", 0)
        limit = max(self.stride, self.dilation)
        if max(op) >= limit:
            raise ValueError(
                f"output_padding={output_padding!r} must be smaller than stride or dilation on every axis (torch's "
                f"rule), here < max(stride={self.stride}, dilation={self.dilation}) = {limit}"
            )
        if max(op) == 0:
            return op
        # the centre moves by -op/2 along the array axes; as a vector of the space (escnn's axis layout -> x, y, z):
        m = max(op)
        onehot = torch.zeros((2 * m + 1,) * d, dtype=torch.float64)
        onehot[tuple(m + o for o in op)] = 1.0
        shift = np.argwhere(escnn_to_grid(onehot, d).numpy())[0] - m
        mats = group_matrices(self.space)
        moved = [M for M in mats if not np.array_equal(M @ shift, shift)]
        if moved:
            only_zero = " (only 0, since the group holds -I)" if any((M == -np.eye(d)).all() for M in mats) else ""
            raise ValueError(
                f"output_padding={output_padding!r} adds pixels at one end of the output axes only, which moves the "
                f"centre of the output grid by {tuple(o / 2 for o in op)} pixels (along {tuple(int(v) for v in shift)}"
                f" in (x, y{', z' if d == 3 else ''}) coordinates); {len(moved)} element(s) of "
                f"{self.space.fibergroup.name} (e.g. matrix {moved[0].tolist()}) move that direction, so the layer "
                f"would not be equivariant. On this gspace output_padding must be a vector fixed by every group "
                f"element{only_zero}. To double the grid use kernel_size=2 (or 4 with padding=1), stride=2, "
                f"output_padding=0."
            )
        return op

    def _gain_geometry(self) -> Tuple[int, int]:
        return self.stride, self.dilation

    # ---- forward ------------------------------------------------------------------------------------------------

    def _output_sizes(self, spatial: Sequence[int]) -> Tuple[int, ...]:
        return tuple(
            conv_transpose_output_size(n, self.kernel_size, self.stride, 2 * self.padding, self.dilation, o)
            for n, o in zip(spatial, self.output_padding)
        )

    def _checked_output_sizes(self, spatial: Sequence[int]) -> Tuple[int, ...]:
        out = self._output_sizes(spatial)
        if min(out) < 1:
            raise ValueError(
                f"{type(self).__name__}: input size {tuple(spatial)} gives output size {out} < 1 "
                f"((N - 1) stride - 2 padding + dilation (kernel_size - 1) + output_padding + 1 with stride="
                f"{self.stride}, padding={self.padding}, dilation={self.dilation}, kernel_size={self.kernel_size}, "
                f"output_padding={self.output_padding}); use a larger input or a smaller padding"
            )
        return out

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """``GeometricTensor`` of ``in_type`` ``(B, C_in, N..)`` -> of ``out_type`` ``(B, C_out, M..)``."""
        x = self._check_input(input)
        self._checked_output_sizes(x.shape[2:])
        kernel, bias = self._kernel_and_bias()
        conv = F.conv_transpose2d if self.d == 2 else F.conv_transpose3d
        y = conv(x, kernel, bias, self.stride, self.padding, self.output_padding, 1, self.dilation)
        return GeometricTensor(y, self.out_type, coords=None)

    def evaluate_output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """``(B, in_type.size, N_1..N_d)`` -> ``(B, out_type.size, M_1..M_d)`` (formula in the class docstring)."""
        input_shape = check_input_shape(input_shape, self.in_type, self.d)
        return (input_shape[0], self.out_type.size) + self._checked_output_sizes(input_shape[2:])

    # ---- checks and export --------------------------------------------------------------------------------------

    def _check_spatial(self) -> int:
        """The smallest input side >= 3 whose output side is >= 3 (every input size is equivariant)."""
        n = 3
        while min(self._output_sizes((n,) * self.d)) < 3:
            n += 1
        return n

    def export(self) -> torch.nn.Module:
        """A ``torch.nn.ConvTranspose2d`` / ``ConvTranspose3d`` with the same output (stride, padding,
        output_padding, dilation, bias); weights copied from the current parameters (same dtype and device)."""
        conv_cls = torch.nn.ConvTranspose2d if self.d == 2 else torch.nn.ConvTranspose3d
        return self._export_as(conv_cls, stride=self.stride, padding=self.padding,
                               output_padding=self.output_padding, dilation=self.dilation)

    def extra_repr(self) -> str:
        s = f"{self.in_type}, {self.out_type}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding:
            s += f", padding={self.padding}"
        if max(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        return s + self._repr_tail()
