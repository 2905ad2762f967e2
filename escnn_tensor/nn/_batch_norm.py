r"""``TensorBatchNorm``: batch normalisation of tensor fields that commutes with the group.

Math
----
A field ``x_f`` of type ``(k, p)`` has ``D = d**k`` components and transforms by the orthogonal
:math:`\rho_{k,p}(g)`. For a distribution invariant under the group, the mean of ``x_f`` is an invariant vector of
:math:`\rho_{k,p}`, so only the projection of the empirical mean onto the invariant subspace ``V_f`` (basis
:func:`escnn_tensor.nn._fields.bias_basis`: a scalar's mean, the trace part :math:`\delta_{ij}` of a true 2-tensor,
:math:`\epsilon_{ijk}` of a 3D pseudo-3-tensor, nothing for vectors or pseudoscalars) is an estimate of it; the other
components have mean zero and are not shifted. With ``n = batch * pixels`` samples:

.. math::

    \mu_f = P_{V_f} \frac{1}{n}\sum_{b, s} x_f(b, s), \qquad
    \sigma^2_f = \frac{1}{n}\sum_{b, s} \frac{|x_f(b, s) - \mu_f|^2}{D}, \qquad
    y_f = w_f\, \frac{x_f - \mu_f}{\sqrt{\sigma_f^2 + \epsilon}} + \sum_j \beta_{f,j}\, e_{f,j},

with one learnable scale :math:`w_f` per field and a learnable shift with coefficients :math:`\beta_{f,j}` on the
invariant basis :math:`e_{f,j}`. :math:`P_{V_f}` and the norm commute with :math:`\rho_{k,p}(g)`, and the statistics
are sums over all pixels, so they are invariant and the layer is exactly equivariant in both modes.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from escnn.nn import FieldType, GeometricTensor
from torch.nn import Parameter

from ._norm_ops import FieldMapsModule, check_flag, check_real

__all__ = ["TensorBatchNorm"]


class TensorBatchNorm(FieldMapsModule):
    r"""Batch normalisation of a FieldType of tensor fields (2D or 3D, any orders and parities, mixed).

    Per field ``f`` of type ``(k, p)`` with ``D = d**k`` components (see the module docstring for the formulas):
    the batch mean is removed only in the field's invariant subspace, the field is divided by
    ``sqrt(var_f + eps)`` with ``var_f`` = mean over batch and pixels of ``|x_f - mean_f|^2 / D`` (the mean
    per-component variance; no Bessel correction), then multiplied by ``weight[f]`` and shifted by
    ``bias`` along the invariant basis. For scalar fields this is exactly ``torch.nn.BatchNorm2d``/``3d``.

    Args:
        in_type: FieldType of tensor fields (:func:`escnn_tensor.tensor_type`); ``out_type = in_type``.
        eps: added to the variance (``>= 0``).
        momentum: factor of the running averages, as in torch (``running = (1 - momentum) running + momentum
            batch``); ``None`` for the cumulative average over ``num_batches_tracked`` batches.
        affine: learn ``weight`` (one scale per field, initially 1) and ``bias`` (coefficients on the invariant
            basis, initially 0; ``None`` if no field has an invariant subspace).
        track_running_stats: keep ``running_mean`` (invariant coefficients, like ``bias``) and ``running_var``
            (per field) and use them in eval mode; otherwise batch statistics are used in both modes.

    The running variance is updated with the batch variance times ``n D / (n D - m_f)`` (``n`` = batch * pixels,
    ``m_f`` = dimension of the invariant subspace), the unbiased estimate for i.i.d. isotropic samples since only
    ``m_f`` mean components were estimated; for scalars that is torch's ``n / (n - 1)``. In training, gradients flow
    through the batch statistics (as in torch; escnn's ``IIDBatchNorm`` detaches them). The statistics are taken in
    two passes (mean, then squares of the centred input), so large means do not cancel the variance in float32.
    Training needs ``n D_f > m_f`` for every field (more than one value per scalar field), else ``ValueError``.

    Parameters and buffers (the ``state_dict``, torch's names): ``weight (F,)``, ``bias (n_coefficients,)``,
    ``running_mean (n_coefficients,)``, ``running_var (F,)``, ``num_batches_tracked``; fields in channel order,
    coefficients field after field in the order of ``bias_basis``. Shapes: ``(B, C, N_1, .., N_d)`` in and out.
    """

    def __init__(
        self,
        in_type: FieldType,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__()
        signature = self._set_types(in_type)
        self.eps = check_real(eps, "eps", 0.0)
        self.momentum = check_real(momentum, "momentum", 0.0, 1.0, allow_none=True)
        self.affine = check_flag(affine, "affine")
        self.track_running_stats = check_flag(track_running_stats, "track_running_stats")
        self._build_field_maps(signature)
        n_f, n_c = self.n_fields, self.n_coefficients
        self.register_parameter("weight", Parameter(torch.ones(n_f)) if affine else None)
        self.register_parameter("bias", Parameter(torch.zeros(n_c)) if affine and n_c else None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(n_c))
            self.register_buffer("running_var", torch.ones(n_f))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Running statistics to (0, 1), ``weight`` to 1, ``bias`` to 0."""
        self.reset_running_stats()
        if self.weight is not None:
            self.weight.fill_(1)
        if self.bias is not None:
            self.bias.zero_()

    def _batch_statistics(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean coefficients (n_coefficients,), var (F,), x - mean)`` of a batch ``x`` ``(B, C, N..)``.

        Two passes (mean, then squares of the centred input), so no cancellation for large means.
        """
        dims = (0,) + tuple(range(2, x.dim()))
        n = x.numel() // x.shape[1]
        # sums divided afterwards: their backward is a broadcast, not a full-size division
        if self.n_coefficients:
            coeff = self._invariant_coefficients(x.sum(dim=dims)) / n
            centred = x - self._invariant_vector(coeff).view((1, -1) + (1,) * self.d)
        else:  # no invariant component: nothing to centre
            coeff, centred = x.new_zeros(0), x
        var = self._field_sum(centred.square().sum(dim=dims), dim=0) / (n * self._field_dim)
        return coeff, var, centred

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """Normalise: ``GeometricTensor`` ``(B, C, N..)`` of ``in_type`` -> same shape and type."""
        x = self._check_input(input)
        self._check_dtype(x)  # a float32 layer refuses float64 input instead of returning float64
        shape = (1, -1) + (1,) * self.d
        if self.training or not self.track_running_stats:
            n = x.numel() // max(x.shape[1], 1)
            if self.training and bool((n * self._field_dim <= self._field_n_invariant).any()):
                # n D - m <= 0: one sample of a field that is all invariant (a scalar): no variance to estimate
                raise ValueError(
                    f"TensorBatchNorm needs more than one value per field when training (batch * pixels > 1 for "
                    f"scalar fields), got input of shape {tuple(x.shape)}"
                )
            coeff, var, x = self._batch_statistics(x)
            if self.training and self.track_running_stats:
                self._update_running_stats(coeff, var, n)
            b = None
        else:
            coeff, var = self.running_mean, self.running_var
            b = -self._invariant_vector(coeff)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        a = self._to_channels(scale, dim=0)
        if b is not None:
            b = b * a  # eval: (x - mean) a + bias = x a + (bias - mean a), one pass over x
        if self.bias is not None:
            shift = self._invariant_vector(self.bias)
            b = shift if b is None else b + shift
        y = x * a.view(shape) if b is None else torch.addcmul(b.view(shape), x, a.view(shape))
        return self._wrap(y)

    @torch.no_grad()
    def _update_running_stats(self, coeff: torch.Tensor, var: torch.Tensor, n: int) -> None:
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        nd = n * self._field_dim
        unbiased = var * nd / (nd - self._field_n_invariant)
        self.running_mean.mul_(1 - factor).add_(coeff.detach(), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)

    def extra_repr(self) -> str:
        return (
            f"{self.in_type}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )
