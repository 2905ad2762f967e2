r"""``VectorNeuronNonLinearity``: the Vector Neurons ReLU (Deng et al. 2021) for tensor fields of every order."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from escnn.nn import FieldType, GeometricTensor
from torch.nn import Parameter

from ._field_ops import TensorFieldModule, TypeGroups, field_sq_norms, mix_fields

__all__ = ["VectorNeuronNonLinearity"]


class VectorNeuronNonLinearity(TensorFieldModule):
    r"""Vector-neuron (leaky) ReLU, generalised from vectors to tensor fields of every order and parity.

    For each field type :math:`(k, p)` with :math:`m` fields :math:`x_1..x_m` (each in :math:`\mathbb{R}^{d^k}`)
    and a learned :math:`m \times m` matrix :math:`W` of that type, every field gets a learned direction
    :math:`q_i = \sum_j W_{ij} x_j` of the same type, and with :math:`\langle x, q \rangle` the full contraction
    over all :math:`k` indices (the Euclidean inner product of the components), :math:`\alpha` =
    ``negative_slope``:

    .. math::

        y_i = x_i - (1 - \alpha)\, \frac{\min(\langle x_i, q_i \rangle, 0)}{|q_i|^2 + \epsilon}\, q_i ,

    i.e. :math:`y_i = x_i` where :math:`\langle x_i, q_i\rangle \ge 0`, and otherwise :math:`x_i` with its
    component along :math:`q_i` removed (:math:`\alpha = 0`) or scaled by :math:`\alpha` (Deng et al.'s leaky
    variant, :math:`\alpha x + (1-\alpha)\,\mathrm{VN\text{-}ReLU}(x)`). Since every :math:`\rho_{k,p}(g)` is
    orthogonal and :math:`q_i` transforms like :math:`x_i`, :math:`\langle x_i, q_i\rangle` and :math:`|q_i|^2` are
    invariant, so any function of them, :math:`\epsilon` (``eps``, added to :math:`|q_i|^2`) included, keeps the
    layer exactly equivariant; near :math:`q_i = 0` the correction goes to 0 continuously.

    Scalars: true scalars (``k=0, parity=+1``) get the plain leaky ReLU :math:`\max(x, \alpha x)`, as ginjax's
    ``VectorNeuronNonlinear`` applies its scalar activation to them. Pseudoscalars get the rule above with
    :math:`k = 0`: with :math:`q_i = \sum_j W_{ij} x_j`, :math:`y_i = x_i` if :math:`x_i q_i \ge 0` and
    :math:`\alpha x_i + (1-\alpha)\, x_i\epsilon/(q_i^2+\epsilon)` otherwise; it is odd in :math:`(x_1..x_m)`,
    hence equivariant under :math:`x \mapsto \pm x`.

    With one field of a type (:math:`m = 1`) the rule is the identity (:math:`W > 0`) or the leaky zero map
    (:math:`W < 0`) on that type: mixing needs :math:`m \ge 2`, as in Vector Neurons. For one-component fields
    (pseudoscalars) and for :math:`m = 1` only the sign of :math:`\langle x_i, q_i\rangle` matters, so those
    :math:`W` get no gradient (except through :math:`\epsilon`): they stay as initialised.

    ginjax: for ``negative_slope=0`` this is ginjax's ``VectorNeuronNonlinear`` with its default ReLU, up to where
    :math:`\epsilon` enters (ginjax normalises :math:`q / (|q| + \epsilon)` and scales by
    :math:`\mathrm{relu}(t)/(|t| + \epsilon)`). For a leaky slope ginjax's formula gives :math:`-\alpha` times the
    parallel part (it divides by :math:`|t|`, not :math:`t`); this layer follows Deng et al. (:math:`+\alpha`).

    Initialisation (:meth:`reset_parameters`, as ginjax): every :math:`W` uniform in
    :math:`[-1/\sqrt{m}, 1/\sqrt{m}]`.

    Args:
        in_type: FieldType of tensor fields; ``out_type`` is ``in_type``.
        negative_slope: :math:`\alpha` in ``[0, 1)`` (default 0: the ReLU version).
        eps: :math:`\epsilon > 0` (default 1e-8).

    Parameters: ``weights``, flat: the :math:`W` of every type except the true scalars, each :math:`m^2` entries
    row-major, types in order of first appearance in ``in_type``. Shapes: ``(B, C, *S)`` -> ``(B, C, *S)``.
    """

    _any_orthogonal = True  # also symmetric tensors and escnn's orthogonal representations (TensorFieldModule)

    def __init__(self, in_type: FieldType, negative_slope: float = 0.0, eps: float = 1e-8):
        super().__init__()
        sig = self._set_types(in_type)
        for name, value in (("negative_slope", negative_slope), ("eps", eps)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a finite real number, got {value!r} of type {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite real number, got {value!r}")
        if not 0 <= negative_slope < 1:
            raise ValueError(f"negative_slope must be in [0, 1), got {negative_slope}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.negative_slope = float(negative_slope)
        self.eps = float(eps)
        self.groups = TypeGroups(sig, self.d, first=[(0, 1)], sizes=self._sizes)
        g = self.groups
        self._scalar = g.types[0] == (0, 1)
        start = 1 if self._scalar else 0
        self._mixed = list(range(start, len(g.types)))
        self._sizes = [g.count[t] ** 2 for t in self._mixed]
        n = sum(self._sizes)
        if n:
            self.weights = Parameter(torch.zeros(n))
        else:
            self.register_parameter("weights", None)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Every ``W`` uniform in ``[-1/sqrt(m), 1/sqrt(m)]`` (``m`` = number of fields of its type)."""
        if self.weights is None:
            return
        parts = []
        for t in self._mixed:
            m = self.groups.count[t]
            u = torch.rand(m * m, generator=generator, dtype=torch.float64)
            parts.append((2 * u - 1) / math.sqrt(m))
        self.weights.copy_(torch.cat(parts).to(self.weights))

    def matrices(self):
        """The learned ``W`` per mixed type: ``[(type (k, parity), (m, m) view of weights), ...]``."""
        if self.weights is None:
            return []
        ws = self.weights.split(self._sizes)
        return [(self.groups.types[t], w.view(self.groups.count[t], -1)) for t, w in zip(self._mixed, ws)]

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """``GeometricTensor`` of ``in_type`` ``(B, C, *S)`` -> the same type and shape."""
        x = self._check_input(input)
        self._check_dtype(x, self.weights)
        blocks = self.groups.split(self.groups.gather(x))
        out = [F.leaky_relu(blocks[0], self.negative_slope)] if self._scalar else []
        ws = self.weights.split(self._sizes) if self.weights is not None else []
        for t, w in zip(self._mixed, ws):
            blk = blocks[t]  # (B, m, D, L)
            B, m, D, L = blk.shape
            q = mix_fields(w.view(m, m), blk.reshape(B, m, D * L)).view(B, m, D, L)
            ip = (blk * q).sum(2)  # (B, m, L)
            coef = ip.clamp_max(0) * ((1.0 - self.negative_slope) / (field_sq_norms(q) + self.eps))
            out.append(torch.addcmul(blk, coef.unsqueeze(2), q, value=-1.0))
        return self._wrap(self.groups.merge(out, x.shape[2:]))

    def extra_repr(self) -> str:
        return f"{self.in_type}, negative_slope={self.negative_slope}, eps={self.eps}"
