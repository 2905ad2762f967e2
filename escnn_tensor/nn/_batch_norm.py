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

from typing import Optional, Tuple, Union

import torch
from escnn.nn import FieldType, GeometricTensor
from torch.nn import Parameter

from ._fields import distributed_world
from ._norm_ops import FieldMapsModule, check_flag, check_real

__all__ = ["TensorBatchNorm"]


class TensorBatchNorm(FieldMapsModule):
    process_group = None  # (the default of instances pickled before the argument existed)

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
        process_group: the ``torch.distributed`` group whose processes share the statistics in training (default
            ``None``: the world, when initialised; a single process takes its own batch's statistics).

    The running variance is updated with the batch variance times ``n D / (n D - m_f)`` (``n`` = batch * pixels,
    ``m_f`` = dimension of the invariant subspace), the unbiased estimate for i.i.d. isotropic samples since only
    ``m_f`` mean components were estimated; for scalars that is torch's ``n / (n - 1)``. In training, gradients flow
    through the batch statistics (as in torch; escnn's ``IIDBatchNorm`` detaches them). The statistics are taken in
    two passes (mean, then squares of the centred input), so large means do not cancel the variance in float32.
    Training needs ``n D_f > m_f`` for every field (more than one value per scalar field), else ``ValueError``
    (decided from the input's shape: no tensor is read, so the layer never synchronises with the device).

    **Several processes.** In training, when ``torch.distributed`` is initialised and ``process_group`` (default: the
    world) has more than one process, the statistics are those of the *global* batch, as ``torch.nn.SyncBatchNorm``
    computes them: the sums of the input and the counts, then the sums of the squared centred input, are
    all-reduced (two all-reduces forward), and the closed-form backward all-reduces its three sums (one all-reduce),
    so the input gradient is that of the sum of every process's loss. Parameter gradients stay per process (DDP
    averages them). Each process then computes exactly what one process computes on the concatenated batch
    (tested to 1e-9 in float64 with 2 processes). Every process must call the layer the same number of times.

    Parameters and buffers (the ``state_dict``, torch's names): ``weight (F,)``, ``bias (n_coefficients,)``,
    ``running_mean (n_coefficients,)``, ``running_var (F,)``, ``num_batches_tracked``; fields in channel order,
    coefficients field after field in the order of ``bias_basis``. Shapes: ``(B, C, N_1, .., N_d)`` in and out.
    """

    _any_orthogonal = True  # also symmetric tensors and escnn's orthogonal representations (TensorFieldModule)

    def __init__(
        self,
        in_type: FieldType,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group=None,
    ):
        super().__init__()
        self.process_group = process_group
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

    def _sync(self) -> bool:
        """Whether the statistics are taken over every process of ``process_group`` (training, world size > 1)."""
        return self.training and distributed_world(self.process_group) > 1

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over the processes of ``process_group`` (differentiable when autograd records)."""
        group = self.process_group if self.process_group is not None else torch.distributed.group.WORLD
        if torch.is_grad_enabled() and t.requires_grad:
            from torch.distributed.nn.functional import all_reduce

            return all_reduce(t, group=group)
        t = t.clone()
        torch.distributed.all_reduce(t, group=group)
        return t

    def _batch_statistics(
        self, x: torch.Tensor, sync: bool = False
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Union[int, torch.Tensor]]:
        """``(mean coefficients (n_coefficients,), var (F,), x - mean, n)`` of a batch ``x`` ``(B, C, N..)``.

        ``n`` is the number of values per channel (batch * pixels): an int, or with ``sync`` (statistics over every
        process of ``process_group``) a 0-d tensor of the global count. Two passes (mean, then squares of the
        centred input), so no cancellation for large means. Written with differentiable torch operations:
        :class:`_TrainNormalise` takes its values in forward, and :meth:`_normalise_reference` traces it for second
        derivatives.
        """
        dims = (0,) + tuple(range(2, x.dim()))
        n = x.numel() // max(x.shape[1], 1)
        total = x.sum(dim=dims)
        if sync:
            total = self._all_reduce(torch.cat([total, total.new_full((1,), n)]))
            total, n = total[:-1], total[-1]
        # sums divided afterwards: their backward is a broadcast, not a full-size division
        if self.n_coefficients:
            coeff = self._invariant_coefficients(total) / n
            centred = x - self._invariant_vector(coeff).view((1, -1) + (1,) * self.d)
        else:  # no invariant component: nothing to centre
            coeff, centred = x.new_zeros(0), x
        squares = (centred * centred).sum(dim=dims)
        if sync:
            squares = self._all_reduce(squares)
        var = self._field_sum(squares, dim=0) / (n * self._field_dim)
        return coeff, var, centred, n

    def _normalise_reference(
        self, x: torch.Tensor, weight: Optional[torch.Tensor], shift: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training-mode ``(y, mean coefficients, var)`` by autograd-traced operations (reference of
        :class:`_TrainNormalise`, and its path for second derivatives)."""
        coeff, var, centred, _ = self._batch_statistics(x, self._sync())
        scale = torch.rsqrt(var + self.eps)
        if weight is not None:
            scale = scale * weight
        a = self._to_channels(scale, dim=0).view((1, -1) + (1,) * self.d)
        y = centred * a if shift is None else torch.addcmul(shift.view_as(a), centred, a)
        return y, coeff, var

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """Normalise: ``GeometricTensor`` ``(B, C, N..)`` of ``in_type`` -> same shape and type."""
        x = self._check_input(input)
        self._check_dtype(x)  # a float32 layer refuses float64 input instead of returning float64
        shape = (1, -1) + (1,) * self.d
        if self.training or not self.track_running_stats:
            sync = self._sync()
            n = x.numel() // max(x.shape[1], 1)
            if self.training and not sync and n < self._min_values:
                # n D - m <= 0: one sample of a field that is all invariant (a scalar): no variance to estimate
                raise ValueError(
                    f"TensorBatchNorm needs more than one value per field when training (batch * pixels > 1 for "
                    f"scalar fields, >= 1 for the others), got input of shape {tuple(x.shape)}"
                )
            shift = self._invariant_vector(self.bias) if self.bias is not None else None
            y, coeff, var, n_all = _TrainNormalise.apply(x, self.weight, shift, self, sync)
            if self.training and self.track_running_stats:
                self._update_running_stats(coeff, var, n_all if sync else n)
            return self._wrap(y)
        else:
            coeff, var = self.running_mean, self.running_var
            b = -self._invariant_vector(coeff)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        a = self._to_channels(scale, dim=0)
        b = b * a  # running statistics: (x - mean) a + bias = x a + (bias - mean a), one pass over x
        if self.bias is not None:
            b = b + self._invariant_vector(self.bias)
        return self._wrap(torch.addcmul(b.view(shape), x, a.view(shape)))

    @torch.no_grad()
    def _update_running_stats(self, coeff: torch.Tensor, var: torch.Tensor, n) -> None:
        """Running averages updated on the device (``n``: values per channel, an int or a 0-d tensor; with
        ``momentum=None`` the factor ``1 / num_batches_tracked`` stays a tensor: nothing is read to the host)."""
        self.num_batches_tracked.add_(1)
        nd = n * self._field_dim
        unbiased = var * nd / (nd - self._field_n_invariant)
        if self.momentum is None:
            factor = 1.0 / self.num_batches_tracked.to(self.running_var.dtype)
        else:
            factor = self.momentum
        # running + factor (batch - running): one operation per statistic
        self.running_mean.lerp_(coeff.detach(), factor)
        self.running_var.lerp_(unbiased.detach(), factor)

    def extra_repr(self) -> str:
        return (
            f"{self.in_type}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class _TrainNormalise(torch.autograd.Function):
    r"""Training-mode batch normalisation of :class:`TensorBatchNorm` with a closed-form backward.

    ``(x (B, C, N..), weight (F,) or None, shift (C,) or None, module, sync) -> (y, mean coefficients, var, n)``
    (``n``: values per channel, summed over the processes with ``sync``), the same values as :meth:`TensorBatchNorm._normalise_reference` (tested to float64 rounding), in 5 passes over ``x``
    forward and 7 backward where autograd's trace of the reference takes ~16. With ``c = x - mu``,
    ``r_f = (var_f + eps)^{-1/2}``, ``a = w r`` on the channels of each field, ``y = a c + shift`` and ``g`` the
    gradient of ``y``:

    .. math::

        \partial_{w_f} = r_f \sum_{c \in f} \langle g, c\rangle, \quad
        \partial_{c} = a g - \frac{w_f r_f^3}{n D_f} \Big(\sum_{c \in f} \langle g, c\rangle\Big) c, \quad
        \partial_x = \partial_c - \frac{1}{n} P \sum_{b, s} \partial_c ,

    with ``P`` the projection onto the fields' invariant subspaces and ``<., .>`` sums over batch and pixels.
    Second derivatives (``create_graph=True``) go through the reference, traced by autograd.
    """

    @staticmethod
    def forward(ctx, x, weight, shift, module, sync):
        dims = (0,) + tuple(range(2, x.dim()))
        view = (1, -1) + (1,) * (x.dim() - 2)
        coeff, var, centred, n = module._batch_statistics(x, sync)  # autograd is off inside forward: values only
        r = torch.rsqrt(var + module.eps)
        a = module._to_channels(r if weight is None else r * weight, dim=0).view(view)
        y = centred * a if shift is None else torch.addcmul(shift.view(view), centred, a)
        ctx.module, ctx.dims, ctx.sync = module, dims, sync
        if sync:
            ctx.n = None
            ctx.save_for_backward(x, weight, shift, centred, r, a, n)
        else:
            ctx.n = n
            ctx.save_for_backward(x, weight, shift, centred, r, a)
        if not torch.is_tensor(n):
            n = x.new_full((), float(n))  # (made on the device: no host-to-device copy)
        ctx.mark_non_differentiable(coeff, var, n)
        return y, coeff, var, n

    @staticmethod
    def backward(ctx, g, _g_coeff, _g_var, _g_n):
        module, dims, sync = ctx.module, ctx.dims, ctx.sync
        if sync:
            x, weight, shift, centred, r, a, n = ctx.saved_tensors
        else:
            (x, weight, shift, centred, r, a), n = ctx.saved_tensors, ctx.n
        if torch.is_grad_enabled():  # create_graph: differentiate the traced reference instead
            inputs = [t for t in (x, weight, shift) if t is not None and t.requires_grad]
            with torch.enable_grad():
                y = module._normalise_reference(x, weight, shift)[0]
            grads = iter(torch.autograd.grad(y, inputs, g, create_graph=True, allow_unused=True))
            return tuple(next(grads) if t is not None and t.requires_grad else None for t in (x, weight, shift)) + (
                None,
                None,
            )
        view = a.shape
        gc_channels = (g * centred).sum(dim=dims)  # (C,): <g, c> per channel
        grad_w = module._field_sum(gc_channels, dim=0) * r if weight is not None and ctx.needs_input_grad[1] else None
        sum_g = g.sum(dim=dims)
        grad_shift = sum_g if shift is not None and ctx.needs_input_grad[2] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            w = 1.0 if weight is None else weight
            if sync:
                # the sums of every process: <g, c> per field, and the sums of a g and of c for the mean's term
                C = gc_channels.shape[0]
                sums = module._all_reduce(torch.cat([gc_channels, sum_g, centred.sum(dim=dims)]))
                gc, sum_g_all, sum_c_all = module._field_sum(sums[:C], dim=0), sums[C : 2 * C], sums[2 * C :]
            else:
                gc = module._field_sum(gc_channels, dim=0)  # (F,): sum over the field of <g, c>
            k = module._to_channels(-(w * r**3) * gc / (n * module._field_dim), dim=0).view(view)
            grad_x = torch.addcmul(g * a, centred, k)
            if module.n_coefficients:
                if sync:  # the global sum of grad_x over batch and pixels, from the reduced sums
                    total = a.view(-1) * sum_g_all + k.view(-1) * sum_c_all
                else:
                    total = grad_x.sum(dim=dims)
                back = module._invariant_vector(module._invariant_coefficients(total)) / n
                grad_x = grad_x - back.view(view)
        return grad_x, grad_w, grad_shift, None, None
