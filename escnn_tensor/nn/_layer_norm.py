r"""``TensorLayerNorm``: per-sample normalisation of tensor fields that commutes with the group.

Math
----
For each sample ``b`` separately (``N`` pixels, ``F`` fields, field ``f`` of type ``(k_f, p_f)`` with
``D_f = d**k_f`` components and invariant subspace ``V_f``, basis :func:`escnn_tensor.nn._fields.bias_basis`):

.. math::

    \mu_{b,f} = P_{V_f} \frac{1}{N}\sum_s x_f(b, s), \qquad
    \sigma^2_b = \frac{1}{F}\sum_f \frac{1}{N}\sum_s \frac{|x_f(b, s) - \mu_{b,f}|^2}{D_f}, \qquad
    y_f(b) = w_f\, \frac{x_f(b) - \mu_{b,f}}{\sqrt{\sigma_b^2 + \epsilon}} + \sum_j \beta_{f,j}\, e_{f,j}.

The mean is taken per field over the pixels and removed only in the invariant subspace (the other components have
mean zero for an invariant distribution); the scale is one number per sample, the mean squared norm per component
averaged over the fields (each field counts once, whatever its order). Both are invariant under the group, so the
layer is exactly equivariant. There are no running statistics: train and eval mode compute the same thing.
"""
from __future__ import annotations

import math

import torch
from escnn.nn import FieldType, GeometricTensor
from torch.nn import Parameter

from ._norm_ops import FieldMapsModule, check_flag, check_real

__all__ = ["TensorLayerNorm"]


class TensorLayerNorm(FieldMapsModule):
    r"""Per-sample normalisation of a FieldType of tensor fields (2D or 3D, any orders and parities, mixed).

    Per sample: the mean of every field over the pixels, projected onto the field's invariant subspace, is
    subtracted; the result is divided by ``sqrt(var + eps)`` with ``var`` = the mean over fields of the mean over
    pixels of ``|x_f - mean_f|^2 / d**k_f``; then every field is multiplied by ``weight[f]`` and shifted by ``bias``
    along its invariant basis (formulas in the module docstring). On a single pixel every invariant component
    (e.g. a scalar) becomes its bias.

    Args:
        in_type: FieldType of tensor fields (:func:`escnn_tensor.tensor_type`); ``out_type = in_type``.
        eps: added to the variance (``>= 0``).
        affine: learn ``weight`` ``(F,)`` (one scale per field, initially 1) and ``bias`` ``(n_coefficients,)``
            (coefficients on the invariant basis field after field, initially 0; ``None`` if no field has an
            invariant subspace).

    Shapes: ``(B, C, N_1, .., N_d)`` in and out.
    """

    _any_orthogonal = True  # also symmetric tensors and escnn's orthogonal representations (TensorFieldModule)

    def __init__(self, in_type: FieldType, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        signature = self._set_types(in_type)
        self.eps = check_real(eps, "eps", 0.0)
        self.affine = check_flag(affine, "affine")
        self._build_field_maps(signature)
        n_f, n_c = self.n_fields, self.n_coefficients
        self.register_parameter("weight", Parameter(torch.ones(n_f)) if affine else None)
        self.register_parameter("bias", Parameter(torch.zeros(n_c)) if affine and n_c else None)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """``weight`` to 1, ``bias`` to 0."""
        if self.weight is not None:
            self.weight.fill_(1)
        if self.bias is not None:
            self.bias.zero_()

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """Normalise: ``GeometricTensor`` ``(B, C, N..)`` of ``in_type`` -> same shape and type."""
        x = self._check_input(input)
        self._check_dtype(x)  # a float32 layer refuses float64 input instead of returning float64
        spatial = tuple(range(2, x.dim()))
        shape = x.shape[:2] + (1,) * self.d
        n = math.prod(x.shape[2:])  # pixels per sample (from the shape: also for an empty batch)
        # two passes (mean, then squares of the centred input): no cancellation for large means; sums divided
        # afterwards, so their backward is a broadcast rather than a full-size division
        if self.n_coefficients:
            mu = self._invariant_vector(self._invariant_coefficients(x.sum(dim=spatial))) / n  # (B, C)
            x = x - mu.view(shape)
        var = (self._field_sum(x.square().sum(dim=spatial), dim=1) / (n * self._field_dim)).mean(dim=1, keepdim=True)
        # + 0 * var: a sample holding an infinite value (var = inf) gives NaN everywhere, as torch.nn.LayerNorm does,
        # instead of rsqrt(inf) = 0 zeroing its finite values (exact 0 added for a finite variance)
        a = torch.rsqrt(var + self.eps) + 0.0 * var
        if self.weight is not None:
            a = a * self._to_channels(self.weight, dim=0)
        else:
            a = a.expand(-1, x.shape[1])
        if self.bias is None:
            return self._wrap(x * a.reshape(shape))
        b = self._invariant_vector(self.bias).view((1, -1) + (1,) * self.d)
        return self._wrap(torch.addcmul(b, x, a.reshape(shape)))

    def extra_repr(self) -> str:
        return f"{self.in_type}, eps={self.eps}, affine={self.affine}"
