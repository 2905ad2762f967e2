r"""``GeometricConv``: the complete equivariant convolution between tensor fields, as an escnn module.

Math
----
A field of type ``(k, p)`` is an order-``k`` tensor of parity ``p`` at every pixel; the group element
:math:`g` with signed permutation matrix :math:`M` acts by :math:`\rho_{k,p}(g) = \det(M)^{(1-p)/2}
M^{\otimes k}` on the fibre (see :mod:`escnn_tensor.representations`) and moves pixels by :math:`a \mapsto Ma`.

For an input field ``(k_in, p_in)`` and an output field ``(k_out, p_out)`` the convolution kernel is a map
:math:`\kappa` from pixel offsets :math:`a` to :math:`d^{k_{out}} \times d^{k_{in}}` matrices, i.e. an order
:math:`k_{out}+k_{in}` tensor with indices ``(out_1..out_{k_out}, in_1..in_{k_in})``. The layer computes the
cross-correlation (as ``torch.nn.functional.conv2d`` / ``conv3d`` do)

.. math::

    y(x) = \sum_a \kappa(a)\, f(x + a),

which is equivariant, :math:`y[g \cdot f] = g \cdot y[f]`, if and only if
:math:`\kappa(Ma) = \rho_{out}(g)\, \kappa(a)\, \rho_{in}(g)^T` for every :math:`g`. Read on the flattened
indices, :math:`\rho_{out} \otimes \rho_{in} = \rho_{k_{out}+k_{in},\, p_{out} p_{in}}`, so this says exactly that
:math:`\kappa` is an *invariant filter* of order :math:`k_{out}+k_{in}` and parity :math:`p_{out} p_{in}`
(:func:`escnn_tensor.invariant_filters`); equivalently, :math:`\kappa` is the geometric convolution of the input with
an invariant filter, contracted over the :math:`k_{in}` input indices. The invariant filters are a basis of that
space, so each field pair gets one weight per invariant filter and the layer is *complete*: it reaches every
equivariant kernel of its size on the grid.

The bias of an output field lies in the invariant subspace of its representation (basis:
``invariant_filters(gspace, 1, k, p)``): a constant for scalars, :math:`\delta_{ij}` for true 2-tensors,
:math:`\epsilon_{ijk}` for 3D pseudo-3-tensors, nothing for vectors or pseudoscalars.
"""
from __future__ import annotations

import warnings
from typing import Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from escnn.nn import FieldType, GeometricTensor

from ..grid import PADDING_MODES, conv_output_size, same_on_axes, stride_fits, symmetric_padding
from ..representations import _check_memory
from ._fields import check_input_shape
from ._kernel import KernelExpansionModule, pair_index
from ._two_stage import METHODS, build_two_stage, prefer_two_stage, two_stage_conv, two_stage_fraction

__all__ = ["GeometricConv", "EquivarianceWarning"]

IntOrTuple = Union[int, Sequence[int]]


class EquivarianceWarning(UserWarning):
    """A layer was called in a way that makes its output not equivariant (e.g. a stride that does not fit)."""


class GeometricConv(KernelExpansionModule):
    r"""Complete :math:`G`-equivariant convolution between FieldTypes of tensor fields (2D or 3D).

    Same arguments and meaning as escnn's ``R2Conv`` / ``R3Conv`` (the dimension follows the gspace), but the
    kernel space is spanned by the exact invariant filters of the pixel grid (see :mod:`escnn_tensor.conv`),
    so it holds *every* equivariant kernel of size ``kernel_size`` and equivariance is exact up to round-off.

    Args:
        in_type: FieldType of the input, made of tensor fields (:func:`escnn_tensor.tensor_type`; the trivial
            representation counts as a scalar).
        out_type: FieldType of the output, on the same gspace.
        kernel_size: side ``K`` of the kernel (odd or even; the output grid stays centred).
        padding: zero-based padding on every side of every axis: an int, a tuple of ``d`` equal ints,
            ``'valid'`` (0) or ``'same'`` (``dilation*(K-1)/2``, when that is an integer).
        stride, dilation: as in ``torch.nn.Conv2d`` (equal on all axes).
        padding_mode: ``'zeros'``, ``'circular'``, ``'reflect'`` or ``'replicate'`` (all commute with the
            group, which maps the square/cubic padded grid onto itself).
        bias: add a learnable bias in the invariant subspace of each output field.
        initialize: draw the weights with the variance-preserving scheme of :meth:`reset_parameters`
            (otherwise they are zero).
        method: how ``forward`` evaluates the same linear map: ``'dense'`` (expand the dense kernel, one
            ``conv2d``/``conv3d``), ``'two_stage'`` (the fixed invariant filters applied once per input field, then a
            pointwise mixing by the weights: :mod:`escnn_tensor.nn._two_stage`) or ``'auto'`` (two-stage for 3D
            layers whose two-stage multiply-adds are at most ``TWO_STAGE_MAX_FRACTION`` of the dense ones, e.g.
            64 or more vector fields at ``K=3`` (0.25); docs/speed.md). The resolved choice is the attribute ``method``; the
            outputs agree to round-off.

    Shapes: ``GeometricTensor`` ``(B, in_type.size, N_1, .., N_d)`` in,
    ``(B, out_type.size, M_1, .., M_d)`` out with ``M = floor((N + 2 padding - dilation (K-1) - 1) / stride) + 1``.

    Parameters: ``weights`` (flat; for each pair of distinct field types ``(t_in, t_out)`` a block
    ``(m_out, m_in, n)`` with ``n`` = number of invariant filters of order ``k_in+k_out`` and parity
    ``p_in p_out``) and ``bias`` (flat; ``(m_out, n_b)`` per output type, or ``None``). The dense kernel
    ``(out_type.size, in_type.size, K, .., K)`` is gathered from them in train mode (every kernel entry is
    ``+-weight / sqrt(orbit size)`` of one weight, or 0: one ``index_select`` and one product, precomputed per layer;
    :mod:`escnn_tensor.nn._kernel`), and cached in eval mode (rebuilt whenever ``weights`` or ``bias`` change, as
    their autograd version counters and identity tell without reading a value; in-place edits through ``.data`` need
    ``eval()`` again; bypassed when gradients to the weights are needed and inside ``torch.compile``). The state_dict holds
    only ``weights`` and ``bias``, in both modes. The input must have the layer's dtype (else a ``TypeError``).
    """

    method = "dense"  # (the default of instances pickled before the two-stage path existed)

    def __init__(
        self,
        in_type: FieldType,
        out_type: FieldType,
        kernel_size: IntOrTuple,
        padding: Union[IntOrTuple, str] = 0,
        stride: IntOrTuple = 1,
        dilation: IntOrTuple = 1,
        padding_mode: str = "zeros",
        bias: bool = True,
        initialize: bool = True,
        method: str = "auto",
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        d, sig_in, sig_out = self._init_types(in_type, out_type)
        self.kernel_size = same_on_axes(kernel_size, d, "kernel_size", 1)
        self.stride = same_on_axes(stride, d, "stride", 1)
        self.dilation = same_on_axes(dilation, d, "dilation", 1)
        self.padding = symmetric_padding(padding, d, self.kernel_size, self.dilation)
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        self._build(sig_in, sig_out, bias, initialize)
        fi, fo = self._fields_in, self._fields_out
        self.two_stage_fraction = two_stage_fraction(self._pairs, fi.dim, fo.dim, self.kernel_size**d)
        if not self._all_tensor:
            if method == "two_stage":
                raise ValueError(
                    f"method='two_stage' needs tensor fields on both sides (escnn_tensor.tensor_type); in_type or "
                    f"out_type here has other representations ({self._describe()}): use method='dense' or 'auto'"
                )
            method = "dense"
        if method == "auto":
            method = "two_stage" if prefer_two_stage(d, self.two_stage_fraction) else "dense"
        self.method = method
        if method == "two_stage":
            self._build_two_stage()

    def _build_two_stage(self) -> None:
        """Buffers of the two-stage path: fixed stage-1 filters and the input channels per input type, the output
        channel order (:mod:`escnn_tensor.nn._two_stage`)."""
        fi, fo = self._fields_in, self._fields_out
        entries = sum(n * fo.dim[to] * fi.dim[ti] for to, row in enumerate(self._pairs)
                      for ti, (_, _, _, _, n) in enumerate(row)) * self.kernel_size**self.d
        _check_memory(
            f"GeometricConv({self._describe()}, K={self.kernel_size}, method='two_stage')",
            16.0 * entries,
            f"dense stage-1 filters, {entries} entries in float64 and the layer's dtype; use method='dense'",
        )
        indices = [[pair_index(self.space, self.kernel_size, t_in, t_out) for t_in in fi.types] for t_out in fo.types]
        starts = np.cumsum([0] + [m * dim for m, dim in zip(fi.count, fi.dim)])
        self._stage1_names, self._in_channel_names = [], []
        for ti, w1 in enumerate(build_two_stage(indices, self._pairs, self.kernel_size, self.d)):
            name = None
            if w1 is not None:
                name = f"_stage1_{ti}"
                self._add_basis(name, w1)
            self._stage1_names.append(name)
            chans = None
            if not (len(fi.types) == 1 and fi.identity):
                chans = f"_in_channels_{ti}"
                self.register_buffer(chans, torch.from_numpy(fi.order[starts[ti] : starts[ti + 1]].copy()), persistent=False)
            self._in_channel_names.append(chans)
        self._out_order_name = None
        if not fo.identity:
            self._out_order_name = "_out_order"
            self.register_buffer("_out_order", torch.from_numpy(fo.inverse.copy()), persistent=False)

    def _two_stage_forward(self, x: torch.Tensor, padding: int) -> torch.Tensor:
        get = lambda name: None if name is None else getattr(self, name)
        y = two_stage_conv(
            x,
            self.weights,
            [get(n) for n in self._stage1_names],
            self._pairs,
            [get(n) for n in self._in_channel_names],
            self._fields_in.dim,
            self._fields_out.dim,
            get(self._out_order_name),
            self.stride,
            padding,
            self.dilation,
        )
        bias = self._expand_bias()
        return y if bias is None else y + bias.view((1, -1) + (1,) * self.d)

    # ---- forward ------------------------------------------------------------------------------------------------

    def _check_stride(self, spatial: Sequence[int]) -> None:
        bad = [n for n in spatial if not stride_fits(n, self.kernel_size, self.stride, 2 * self.padding, self.dilation)]
        if bad:
            warnings.warn(
                f"stride={self.stride} does not fit the input size {tuple(spatial)}: the sampled output pixels are "
                f"not symmetric about the centre of the grid (needs (N + 2*padding - dilation*(kernel_size-1) - 1) "
                f"% stride == 0 on every axis, here padding={self.padding}, dilation={self.dilation}, "
                f"kernel_size={self.kernel_size}), so the output is NOT equivariant. Change the input size or "
                f"the padding.",
                EquivarianceWarning,
                stacklevel=3,
            )

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """Convolve: ``GeometricTensor`` of ``in_type`` ``(B, C_in, N..)`` -> of ``out_type`` ``(B, C_out, M..)``."""
        x = self._check_input(input)
        if self.stride > 1:
            self._check_stride(x.shape[2:])
        padding = self.padding
        if self.padding_mode != "zeros" and padding:
            x = F.pad(x, (padding,) * (2 * self.d), mode=self.padding_mode)
            padding = 0
        if self.method == "two_stage":
            y = self._two_stage_forward(x, padding)
        else:
            kernel, bias = self._kernel_and_bias()
            conv = F.conv2d if self.d == 2 else F.conv3d
            y = conv(x, kernel, bias, self.stride, padding, self.dilation)
        return GeometricTensor(y, self.out_type, coords=None)

    def evaluate_output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """``(B, in_type.size, N_1..N_d)`` -> ``(B, out_type.size, M_1..M_d)`` (formula in the class docstring)."""
        input_shape = check_input_shape(input_shape, self.in_type, self.d)
        out = [
            conv_output_size(n, self.kernel_size, self.stride, 2 * self.padding, self.dilation) for n in input_shape[2:]
        ]
        return (input_shape[0], self.out_type.size) + tuple(out)

    # ---- checks and export --------------------------------------------------------------------------------------

    def _check_spatial(self) -> int:
        """The smallest input side >= kernel reach + 4 that fits the stride."""
        span = self.dilation * (self.kernel_size - 1)
        spatial = max(span + 1 - 2 * self.padding, 1) + 4
        while not stride_fits(spatial, self.kernel_size, self.stride, 2 * self.padding, self.dilation):
            spatial += 1
        return spatial

    def export(self) -> torch.nn.Module:
        """A ``torch.nn.Conv2d`` / ``Conv3d`` with the same output (padding, padding_mode, stride, dilation, bias).

        The weights are copied from the current parameters (same dtype and device); this layer's mode is unchanged.
        """
        conv_cls = torch.nn.Conv2d if self.d == 2 else torch.nn.Conv3d
        return self._export_as(conv_cls, stride=self.stride, padding=self.padding, dilation=self.dilation,
                               padding_mode=self.padding_mode)

    def extra_repr(self) -> str:
        s = f"{self.in_type}, {self.out_type}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding:
            s += f", padding={self.padding}, padding_mode={self.padding_mode!r}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if self.method != "dense":
            s += f", method={self.method!r}"
        return s + self._repr_tail()
