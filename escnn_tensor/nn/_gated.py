r"""``GatedNonLinearity``: every non-scalar field scaled by a learned gate computed from all the invariants."""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch
from escnn.nn import FieldType, GeometricTensor
from torch.nn import Parameter

from ._field_ops import TensorFieldModule, TypeGroups, field_norms, mix_fields, resolve_activation

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

    def __init__(self, in_type: FieldType, function: Union[str, Callable] = "silu", bias: bool = True):
        super().__init__()
        sig = self._set_types(in_type)
        self.function, self.function_name = resolve_activation(function)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        self.groups = TypeGroups(sig, self.d, first=[(0, 1)])
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
        blocks = self.groups.split(self.groups.gather(x))
        if self.gate_weight is None:  # true scalars only
            return self._wrap(self.groups.merge([self.function(blocks[0])], x.shape[2:]))
        inv = []
        for t, blk in enumerate(blocks):
            if t == 0 and self._scalar:
                inv.append(blk[:, :, 0])
            else:
                inv.append(field_norms(blk) * self._scales[t])
        inv = torch.cat(inv, 1) if len(inv) > 1 else inv[0]  # (B, F, L)
        pre = mix_fields(self.gate_weight, inv)  # (B, G, L)
        if self.gate_bias is not None:
            pre = pre + self.gate_bias[:, None]
        gates = torch.sigmoid(pre)
        start = 1 if self._scalar else 0
        out = [self.function(blocks[0])] if self._scalar else []
        counts = self.groups.count[start:]
        for blk, gate in zip(blocks[start:], gates.split(counts, 1)):
            out.append(blk * gate.unsqueeze(2))
        return self._wrap(self.groups.merge(out, x.shape[2:]))

    def extra_repr(self) -> str:
        return f"{self.in_type}, function={self.function_name!r}, gates={self.n_gates}, fields={self.n_fields}"
