r"""``GatedNonLinearity``: every non-scalar field scaled by a learned gate computed from all the invariants."""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import numpy as np
import torch
from escnn.nn import FieldType, GeometricTensor
from torch.nn import Parameter

from ._field_ops import TensorFieldModule, TypeGroups, mix_fields, resolve_activation

__all__ = ["GatedNonLinearity"]


class GatedNonLinearity(TensorFieldModule):
    r"""Gated nonlinearity for tensor fields whose gates are computed inside the layer from the invariants.

    Per pixel, the invariants are one number per field, :math:`u_j`:

    - a true scalar (``k=0, parity=+1``): its value :math:`x_j`;
    - every other field (pseudoscalars included): its RMS norm :math:`|x_j| / \sqrt{d^{k_j}}` (Euclidean norm
      over the :math:`d^{k_j}` components, so :math:`|x|` for a pseudoscalar). A pseudoscalar's value is not
      invariant (it changes sign under :math:`\det M = -1`); its absolute value is.

    With :math:`G` the non-scalar fields and :math:`F` all fields, learned ``gate_weight`` :math:`W` (``(G, F)``) and
    ``gate_bias`` :math:`c` (``(G,)``), and :math:`\sigma` the logistic sigmoid, the output is

    .. math::

        y_j = f(x_j) \text{ for a true scalar}, \qquad
        y_g = \sigma\Big(\sum_j W_{gj} u_j + c_g\Big)\, x_g \text{ for every other field } g,

    a pixelwise (1x1) linear map of the invariants followed by a sigmoid, one gate per non-scalar field. Gates
    are invariant, so the layer is exactly equivariant; no gate channels are asked of the user (unlike escnn's
    ``GatedNonLinearity1``). Fields are numbered in the order of ``gate_weight``'s rows/columns: grouped by type
    (true scalars first, then the other types in order of first appearance), in channel order within a type.

    Initialisation (:meth:`reset_parameters`): :math:`W_{gj} \sim N(0, 1/F)`, :math:`c = 0`. For inputs with unit
    variance per component every invariant has mean square 1, so a gate's pre-activation has variance about 1,
    like the :math:`\sigma(x)` factor of :math:`\operatorname{silu}(x) = x \sigma(x)`: gated fields keep about the
    share of their power that ``silu`` keeps of a scalar's (measured on unit Gaussian inputs: about 0.3 on
    average over initialisations; ``silu``: 0.36).

    Args:
        in_type: FieldType of tensor fields; ``out_type`` is ``in_type``.
        function: activation of the true scalars: a name in
            :data:`escnn_tensor.nn._field_ops.ACTIVATIONS` or an elementwise callable (default ``'silu'``).
        bias: learn the gate bias :math:`c` (default ``True``; otherwise :math:`c = 0` and ``gate_bias`` is ``None``).

    Shapes: ``(B, C, *S)`` -> ``(B, C, *S)``. A FieldType of true scalars only has no gates and no parameters.
    """

    _any_orthogonal = True  # also symmetric tensors and escnn's orthogonal representations (TensorFieldModule)

    def __init__(self, in_type: FieldType, function: Union[str, Callable] = "silu", bias: bool = True):
        super().__init__()
        sig = self._set_types(in_type)
        self.function, self.function_name = resolve_activation(function)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        self.groups = TypeGroups(sig, self.d, first=[(0, 1)], sizes=self._sizes)
        g = self.groups
        self._scalar = g.types[0] == (0, 1)
        n_fields = sum(g.count)
        n_gates = n_fields - (g.count[0] if self._scalar else 0)
        self.n_fields, self.n_gates = n_fields, n_gates
        # RMS scale of every non-scalar type's norm: 1 / sqrt(d**k)
        self._scales = [1.0 / math.sqrt(n) for n in g.dim]
        if n_gates:
            self.gate_weight = Parameter(torch.zeros(n_gates, n_fields))
        else:
            self.register_parameter("gate_weight", None)
        if n_gates and bias:
            self.gate_bias = Parameter(torch.zeros(n_gates))
        else:
            self.register_parameter("gate_bias", None)
        # the gated channels (after the true scalars, grouped layout): the mean square of each gated field's
        # components is one matrix product with (n_gates, gated channels) entries 1 / d**k, and each channel reads
        # its field's gate through one index_select
        self._n_scalar_channels = g.count[0] if self._scalar else 0
        start = 1 if self._scalar else 0
        dims = [n for n, m in zip(g.dim[start:], g.count[start:]) for _ in range(m)]
        gate_of_channel = np.repeat(np.arange(n_gates), dims)
        mean_square = np.zeros((n_gates, len(gate_of_channel)))
        mean_square[gate_of_channel, np.arange(len(gate_of_channel))] = 1.0 / np.repeat(dims, dims)
        self.register_buffer("_gate_of_channel", torch.from_numpy(gate_of_channel), persistent=False)
        self._add_exact_buffer("_mean_square", torch.from_numpy(mean_square))
        self._add_exact_buffer("_membership", torch.from_numpy((mean_square > 0).astype(np.float64)))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """``gate_weight ~ N(0, 1/F)`` (``F`` = number of fields), ``gate_bias = 0`` (see the class docstring)."""
        if self.gate_weight is None:
            return
        w = torch.randn(self.gate_weight.shape, generator=generator, dtype=torch.float64) / math.sqrt(self.n_fields)
        self.gate_weight.copy_(w.to(self.gate_weight))
        if self.gate_bias is not None:
            self.gate_bias.zero_()

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """``GeometricTensor`` of ``in_type`` ``(B, C, *S)`` -> the same type and shape."""
        x = self._check_input(input)
        self._check_dtype(x, self.gate_weight)
        xg = self.groups.gather(x)  # (B, C, L), true scalars first
        if self.gate_weight is None:  # true scalars only
            return self._wrap(self.groups.merge([self.function(xg)], x.shape[2:]))
        ns = self._n_scalar_channels
        scalars, gated = xg[:, :ns], xg[:, ns:]
        y = _Gate.apply(scalars, gated, self.gate_weight, self.gate_bias, self)
        if ns:
            y = torch.cat([self.function(scalars), y], 1)
        return self._wrap(self.groups.merge([y], x.shape[2:]))

    def _gate_reference(self, scalars, gated, weight, bias):
        """The gated channels ``(B, C_gated, L)`` by autograd-traced operations (reference of :class:`_Gate` and its
        path for second derivatives): RMS norms (clamped: finite gradient at 0), gates, products."""
        rms = mix_fields(self._mean_square, gated * gated).clamp_min(torch.finfo(gated.dtype).tiny).sqrt()
        inv = torch.cat([scalars, rms], 1)  # (B, F, L)
        pre = torch.bmm(weight.unsqueeze(0).expand(gated.shape[0], -1, -1), inv)
        if bias is not None:
            pre = pre + bias[:, None]
        return gated * torch.sigmoid(pre).index_select(1, self._gate_of_channel)

    def extra_repr(self) -> str:
        return f"{self.in_type}, function={self.function_name!r}, gates={self.n_gates}, fields={self.n_fields}"


class _Gate(torch.autograd.Function):
    r"""The gated channels of :class:`GatedNonLinearity` with a closed-form backward (one autograd node).

    ``(s (B, S, L) true scalars, v (B, C_g, L) gated channels, W (G, F), c (G,) or None, module) -> y (B, C_g, L)``,
    the values of :meth:`GatedNonLinearity._gate_reference` (tested to float64 rounding). With ``M`` the
    ``(G, C_g)`` mean-square matrix (``1/D`` on each field's channels), ``1_f`` its 0/1 pattern,
    :math:`\rho = \sqrt{\max(M v^2, tiny)}`, :math:`u = [s; \rho]`, :math:`\gamma = \sigma(W u + c)`,
    :math:`y = v \cdot \gamma_{f(ch)}` and ``g`` the gradient of ``y``:

    .. math::

        \partial\gamma = 1_f (g v), \quad \partial p = \partial\gamma\, \gamma (1 - \gamma), \quad
        \partial W = \sum_{b} \partial p\, u^T, \quad \partial c = \sum_{b, l} \partial p, \quad
        \partial u = W^T \partial p,

    :math:`\partial s = \partial u_{scalars}`, and :math:`\partial v = g \gamma_{f(ch)} + v \cdot M^T
    (\partial u_{\rho} / \rho)` (zero through a clamped norm). 13 operations backward where autograd's trace of the
    reference takes ~25. Second derivatives (``create_graph=True``) go through the reference, traced by autograd.
    """

    @staticmethod
    def forward(ctx, s, v, weight, bias, module):
        tiny = torch.finfo(v.dtype).tiny
        ms = mix_fields(module._mean_square, v * v)  # (B, G, L)
        clamped = ms < tiny
        rms = ms.clamp_min(tiny).sqrt()
        inv = torch.cat([s, rms], 1) if s.shape[1] else rms
        w = weight.unsqueeze(0).expand(v.shape[0], -1, -1)
        pre = torch.baddbmm(bias[:, None], w, inv) if bias is not None else torch.bmm(w, inv)
        gate = torch.sigmoid(pre)
        gc = gate.index_select(1, module._gate_of_channel)
        ctx.module = module
        ctx.save_for_backward(s, v, weight, bias, inv, rms, clamped, gate, gc)
        return v * gc

    @staticmethod
    def backward(ctx, g):
        s, v, weight, bias, inv, rms, clamped, gate, gc = ctx.saved_tensors
        module = ctx.module
        if torch.is_grad_enabled():  # create_graph: differentiate the traced reference instead
            inputs = [t for t in (s, v, weight, bias) if t is not None and t.requires_grad]
            with torch.enable_grad():
                y = module._gate_reference(s, v, weight, bias)
            grads = iter(torch.autograd.grad(y, inputs, g, create_graph=True, allow_unused=True))
            return tuple(next(grads) if t is not None and t.requires_grad else None for t in (s, v, weight, bias)) + (
                None,
            )
        B, ns = v.shape[0], s.shape[1]
        dpre = torch.ops.aten.sigmoid_backward(mix_fields(module._membership, g * v), gate)  # (B, G, L)
        grad_w = torch.bmm(dpre, inv.transpose(1, 2)).sum(0) if ctx.needs_input_grad[2] else None
        grad_b = dpre.sum((0, 2)) if bias is not None and ctx.needs_input_grad[3] else None
        dinv = torch.bmm(weight.t().unsqueeze(0).expand(B, -1, -1), dpre)  # (B, F, L)
        grad_s = dinv[:, :ns] if ctx.needs_input_grad[0] else None
        grad_v = None
        if ctx.needs_input_grad[1]:
            dms = (dinv[:, ns:] * (0.5 / rms)).masked_fill_(clamped, 0.0)
            back = torch.bmm(module._mean_square.t().unsqueeze(0).expand(B, -1, -1), dms)  # (B, C_g, L)
            grad_v = torch.addcmul(g * gc, v, back, value=2.0)
        return grad_s, grad_v, grad_w, grad_b, None
