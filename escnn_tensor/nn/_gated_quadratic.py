r"""``GatedQuadratic``: the gated nonlinearity plus a bounded, low-rank quadratic term (the geometric model
family's ``nonlinearity='gated_quadratic'``).

Math
----
For a FieldType :math:`a` of tensor fields, let :math:`r` hold ``rank`` fields of every distinct ``(k, parity)``
(and symmetry: full, symmetric or symmetric traceless) of :math:`a` (the *probes*). Per pixel:

.. math::

    y = \mathrm{gate}(x) + Q\big(\beta(P x)\big),

- :math:`\mathrm{gate}`: :class:`~escnn_tensor.nn.GatedNonLinearity` on :math:`a`;
- :math:`P`: an equivariant linear map :math:`a \to r` at each pixel (a 1x1 :class:`~escnn_tensor.nn.GeometricConv`
  without bias: every invariant map between the field types, e.g. the trace of a 2-tensor into a scalar);
- :math:`\beta`: every probe field squashed to norm below 1, :math:`z \mapsto z \tanh(|z|) / |z|` (scalars and
  pseudoscalars: :math:`\tanh`), :class:`~escnn_tensor.nn.PointwiseNonLinearity` with ``tanh``, threshold 0,
  ``nonscalars='norm'``;
- :math:`Q`: :class:`~escnn_tensor.nn.TensorProductNonLinearity` :math:`r \to a`, every equivariant bilinear map of
  pairs of probe fields into every field of :math:`a`; its weights start at zero, so at initialisation the layer is
  the gate alone. Where no such map exists (e.g. pseudoscalars only: a product of two is a true scalar) there is
  no quadratic term and the layer is the gate.

Each part is exactly equivariant, so the sum is. The quadratic term is bounded (:math:`|\beta(\cdot)| < 1`), so a
residual network of these layers cannot blow up through it, and it costs few parameters: with 3 scalars, 4 vectors
and 4 2-tensors and ``rank=1``, :math:`P` has 30 and :math:`Q` 113 parameters, where a full tensor product on the
same fields has 1,412. It gives products such as :math:`u_j \partial_j u_i` (a vector times a 2-tensor,
contracted), which a gate, a function of invariants times each field, forms only indirectly.
"""
from __future__ import annotations

from typing import List, Tuple

from escnn.nn import FieldType, GeometricTensor
from escnn.nn.modules.equivariant_module import EquivariantModule

from .. import representations as _reps
from ._conv import GeometricConv
from ._field_ops import ACTIVATIONS
from ._fields import check_tensor_fields
from ._gated import GatedNonLinearity
from ._pointwise import PointwiseNonLinearity
from ._tensor_product import NoQuadraticMapError, TensorProductNonLinearity

__all__ = ["GatedQuadratic"]


class GatedQuadratic(EquivariantModule):
    r"""``gate(x) + Q(beta(P x))`` on a FieldType of tensor fields (see the module docstring for the math).

    Args:
        in_type: FieldType of tensor fields (2D or 3D, any orders and parities; full, symmetric or symmetric
            traceless, :func:`escnn_tensor.tensor_rep`); ``out_type = in_type``. The probes have the field types of
            ``in_type``, symmetry included (a symmetric 2-tensor is probed by symmetric 2-tensors).
        activation: the gate's activation of the true scalars (a name of
            :data:`escnn_tensor.nn._field_ops.ACTIVATIONS`).
        rank: probe fields per distinct field type of ``in_type`` (``int >= 1``).

    Submodules: ``gate``, ``probe`` (``P``), ``squash`` (``beta``), ``product`` (``Q``); the last three are ``None``
    when ``in_type`` admits no quadratic map (module docstring). Shapes:
    ``(B, C, N_1, .., N_d)`` in and out.
    """

    def __init__(self, in_type: FieldType, activation: str = "elu", rank: int = 1):
        super().__init__()
        _, signature, _ = check_tensor_fields(in_type, "in_type", "GatedQuadratic")
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise TypeError(f"rank must be an int >= 1, got {rank!r} of type {type(rank).__name__}")
        if rank < 1:
            raise ValueError(f"rank must be an int >= 1, got {rank}")
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.in_type = self.out_type = in_type
        self.rank = rank
        kinds: List[tuple] = list(dict.fromkeys(signature))  # (k, parity) or (k, parity, symmetry)
        probes = _reps.tensor_type(in_type.gspace, [t[:2] + (rank,) + t[2:] for t in kinds])
        self.gate = GatedNonLinearity(in_type, function=activation)
        try:
            self.product = TensorProductNonLinearity(probes, in_type)
        except NoQuadraticMapError:
            self.product = self.probe = self.squash = None
        else:
            self.probe = GeometricConv(in_type, probes, 1, bias=False)
            self.squash = PointwiseNonLinearity(probes, function="tanh", threshold=0.0, nonscalars="norm")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The gate and the probe as their own defaults; the product's weights to zero (the layer starts as the
        gate)."""
        self.gate.reset_parameters()
        if self.product is not None:
            self.probe.reset_parameters()
            self.product.reset_parameters(gain=0.0)

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """``GeometricTensor`` of ``in_type`` ``(B, C, *S)`` -> the same type and shape."""
        gated = self.gate(input)
        if self.product is None:
            return gated
        return GeometricTensor(gated.tensor + self._quadratic(input).tensor, self.out_type)

    def _quadratic(self, input: GeometricTensor) -> GeometricTensor:
        """The quadratic term ``Q(beta(P x))`` of ``in_type`` ``(B, C, *S)`` (``self.product`` is not ``None``; also
        used by :func:`escnn_tensor.nn._norm_gate.batch_norm_gate`, which fuses the gate with a norm before it)."""
        return self.product(self.squash(self.probe(input)))

    def evaluate_output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return input_shape

    def extra_repr(self) -> str:
        return f"rank={self.rank}"
