r"""``TensorBatchNorm`` followed by ``GatedNonLinearity`` on the same fields, in training, as one autograd node.

:func:`batch_norm_gate` ``(norm, gate, x)`` returns ``gate(norm(x))`` (a tensor ``(B, C, *S)`` in and out) and updates
``norm``'s running statistics as ``norm`` does. Where it can (:func:`can_fuse`: batch statistics on one process,
the gate's channels already grouped by type, a named scalar activation whose derivative torch has), it computes the
pair with :class:`_NormGate`, one ``autograd.Function`` with a closed-form backward: ~30 torch operations forward and
~30 backward where the two layers take ~170 calls (profiled: 346 profiler events per forward + backward of the pair
at 28 channels). Otherwise it calls the two layers. The values are those of the two layers up to float rounding
(tested in float64 to 1e-12, with ``gradcheck``); second derivatives (``create_graph=True``) go through the two
layers' autograd-traced reference formulas.

The models use it for every norm -> gated pair (``escnn_tensor.models._families.Chain``; a pair with forward
hooks runs layer by layer there).

Math (notation of :class:`~escnn_tensor.nn._batch_norm._TrainNormalise` and
:class:`~escnn_tensor.nn._gated._Gate`): the batch norm gives ``y = a c + shift`` (``c = x - mu``,
``a = w r`` on the channels of each field); the gate gives ``z_s = f(y_s)`` on the true scalars and
``z_v = y_v gamma`` on the other channels. Backward from ``g`` (gradient of ``z``): the gate's backward gives the
gradient ``dy`` of ``y`` (``dy_s = f'(y_s) g_s + dinv_s``, ``dy_v = g_v gamma + 2 y_v M^T(dinv_rho / (2 rho))``), then
the batch norm's:

.. math::

    \partial x = a \Big(dy - \frac{1}{n} P \sum_{b, s} dy\Big) - \frac{w_f r_f^3}{n D_f}
    \Big(\sum_{c \in f} \langle dy, c\rangle\Big) c,

(the ``P``-term of the centred input vanishes: ``P sum c = 0``), ``dw_f = r_f sum_{c in f} <dy, c>`` and
``d bias = C sum_{b,s} dy`` with ``C`` the invariant-coefficient matrix.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
from escnn.nn import GeometricTensor

from ._batch_norm import TensorBatchNorm
from ._field_ops import ACTIVATIONS
from ._gated import GatedNonLinearity

__all__ = ["batch_norm_gate", "can_fuse"]

# derivative of each named activation: (gradient of the output, input, output) -> gradient of the input
_ACTIVATION_BACKWARD: Dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "elu": lambda g, x, y: torch.ops.aten.elu_backward(g, 1.0, 1, 1, False, x),
    "silu": lambda g, x, y: torch.ops.aten.silu_backward(g, x),
    "relu": lambda g, x, y: torch.ops.aten.threshold_backward(g, y, 0),
    "leaky_relu": lambda g, x, y: torch.ops.aten.leaky_relu_backward(g, x, 0.01, False),
    "gelu": lambda g, x, y: torch.ops.aten.gelu_backward(g, x),
    "tanh": lambda g, x, y: torch.ops.aten.tanh_backward(g, y),
    "sigmoid": lambda g, x, y: torch.ops.aten.sigmoid_backward(g, y),
}


def can_fuse(norm, gate) -> bool:
    """Whether :func:`batch_norm_gate` can compute ``gate(norm(x))`` as one node (shape-independent conditions): a
    :class:`TensorBatchNorm` and a :class:`GatedNonLinearity` on the same FieldType, the gate with gates, its channels
    in grouped layout already, and a named scalar activation listed in ``_ACTIVATION_BACKWARD``."""
    if not (isinstance(norm, TensorBatchNorm) and isinstance(gate, GatedNonLinearity)):
        return False
    if gate.gate_weight is None or not gate.groups.identity:
        return False
    name = gate.function_name
    if name not in _ACTIVATION_BACKWARD or gate.function is not ACTIVATIONS[name]:
        return False
    return norm.in_type is gate.in_type or norm.in_type == gate.in_type


def batch_norm_gate(norm: TensorBatchNorm, gate: GatedNonLinearity, x: torch.Tensor) -> torch.Tensor:
    """``gate(norm(x))`` for a tensor ``x`` ``(B, C, *S)`` of ``norm.in_type`` (see the module docstring); ``norm``'s
    running statistics are updated as by ``norm(x)``. One autograd node where :func:`can_fuse` holds and ``norm``
    uses batch statistics on one process; the two layers otherwise (and for their errors on bad input)."""
    batch_stats = norm.training or not norm.track_running_stats
    if not (batch_stats and can_fuse(norm, gate)) or norm._sync():
        return gate(norm(GeometricTensor(x, norm.in_type))).tensor
    x = norm._check_input(GeometricTensor(x, norm.in_type))
    n = x.numel() // max(x.shape[1], 1)
    if norm.training and n < norm._min_values:
        return gate(norm(GeometricTensor(x, norm.in_type))).tensor  # (its ValueError)
    norm._check_dtype(x)
    gate._check_dtype(x, gate.gate_weight)
    y, coeff, var = _NormGate.apply(x, norm.weight, norm.bias, gate.gate_weight, gate.gate_bias, norm, gate)
    if norm.training and norm.track_running_stats:
        norm._update_running_stats(coeff, var, n)
    return y


class _NormGate(torch.autograd.Function):
    """``(x (B, C, *S), norm weight (F,) or None, norm bias (n_coefficients,) or None, gate weight (G, F'), gate bias
    (G,) or None, norm, gate) -> (z (B, C, *S), mean coefficients, var)``: training-mode batch norm then gate (module
    docstring); the statistics are non-differentiable outputs for the running averages."""

    @staticmethod
    def forward(ctx, x, weight, bias, gate_weight, gate_bias, norm, gate):
        shape, x_in = x.shape, x
        x = x.flatten(2)  # (B, C, L)
        B, C, L = x.shape
        n = B * L
        ns = gate._n_scalar_channels
        # batch norm: the mean's invariant projection, the fields' variances, y = a (x - mu) + shift
        if norm.n_coefficients:
            coeff = torch.mv(norm._coeff_matrix, x.sum((0, 2))).div_(n)
            centred = x - torch.mv(norm._coeff_matrix.t(), coeff).unsqueeze(1)
        else:
            coeff, centred = x.new_zeros(0), x
        var = torch.mv(norm._field_matrix, (centred * centred).sum((0, 2))).div_(norm._field_dim).div_(n)
        r = (var + norm.eps).rsqrt_()
        a_field = r if weight is None else r * weight
        a = a_field.index_select(0, norm._field_of_channel).unsqueeze(1)  # (C, 1)
        y = centred * a
        if bias is not None:
            y.add_(torch.mv(norm._coeff_matrix.t(), bias).unsqueeze(1))
        # gate: RMS norms of the gated fields, gates from all invariants, products
        ys, yv = y[:, :ns], y[:, ns:]
        tiny = torch.finfo(y.dtype).tiny
        ms = torch.bmm(gate._mean_square.unsqueeze(0).expand(B, -1, -1), yv * yv)  # (B, G, L)
        clamped = ms < tiny
        rms = ms.clamp_min_(tiny).sqrt_()
        inv = torch.cat([ys, rms], 1) if ns else rms  # (B, F', L)
        w = gate_weight.unsqueeze(0).expand(B, -1, -1)
        pre = torch.baddbmm(gate_bias.unsqueeze(1), w, inv) if gate_bias is not None else torch.bmm(w, inv)
        gamma = pre.sigmoid_()
        gc = gamma.index_select(1, gate._gate_of_channel)  # (B, C_v, L)
        z = torch.cat([gate.function(ys), yv * gc], 1) if ns else yv * gc
        ctx.norm, ctx.gate, ctx.n = norm, gate, n
        ctx.save_for_backward(x_in, weight, bias, gate_weight, gate_bias, centred, r, a_field, y, z, inv, rms, clamped,
                              gamma, gc)
        ctx.mark_non_differentiable(coeff, var)
        return z.view(shape), coeff, var

    @staticmethod
    def backward(ctx, g, _g_coeff, _g_var):
        (x, weight, bias, gate_weight, gate_bias, centred, r, a_field, y, z, inv, rms, clamped, gamma,
         gc) = ctx.saved_tensors
        norm, gate, n = ctx.norm, ctx.gate, ctx.n
        params = (x, weight, bias, gate_weight, gate_bias)
        if torch.is_grad_enabled():  # create_graph: differentiate the traced reference instead
            inputs = [t for t in params if t is not None and t.requires_grad]
            with torch.enable_grad():
                shift = norm._invariant_vector(bias) if bias is not None else None
                yr = norm._normalise_reference(x, weight, shift)[0]
                zr = _gate_reference(gate, yr, gate_weight, gate_bias)
            grads = iter(torch.autograd.grad(zr, inputs, g, create_graph=True, allow_unused=True))
            return tuple(next(grads) if t is not None and t.requires_grad else None for t in params) + (None, None)
        g = g.flatten(2)
        B = g.shape[0]
        ns = gate._n_scalar_channels
        ys, yv = y[:, :ns], y[:, ns:]
        gs, gv = g[:, :ns], g[:, ns:]
        # gate
        dpre = torch.ops.aten.sigmoid_backward(
            torch.bmm(gate._membership.unsqueeze(0).expand(B, -1, -1), gv * yv), gamma)  # (B, G, L)
        need = ctx.needs_input_grad
        grad_gw = torch.bmm(dpre, inv.transpose(1, 2)).sum(0) if need[3] else None
        grad_gb = dpre.sum((0, 2)) if gate_bias is not None and need[4] else None
        dinv = torch.bmm(gate_weight.t().unsqueeze(0).expand(B, -1, -1), dpre)  # (B, F', L)
        dms = dinv[:, ns:].div(rms).masked_fill_(clamped, 0.0)  # d rho / rho (the factor 1/2 of d rho below)
        back = torch.bmm(gate._mean_square.t().unsqueeze(0).expand(B, -1, -1), dms)  # (B, C_v, L)
        dyv = torch.addcmul(gv * gc, yv, back)
        if ns:
            dys = _ACTIVATION_BACKWARD[gate.function_name](gs, ys, z[:, :ns]).add_(dinv[:, :ns])
            dy = torch.cat([dys, dyv], 1)
        else:
            dy = dyv
        # batch norm
        gc_field = torch.mv(norm._field_matrix, (dy * centred).sum((0, 2)))  # (F,): sum over the field of <dy, c>
        grad_w = gc_field * r if weight is not None and need[1] else None
        grad_x = None
        sum_dy = dy.sum((0, 2)) if norm.n_coefficients else None
        grad_b = torch.mv(norm._coeff_matrix, sum_dy) if norm.n_coefficients else None
        if need[0]:
            k = (gc_field * a_field * r * r).div_(norm._field_dim).mul_(-1.0 / n)
            k = k.index_select(0, norm._field_of_channel).unsqueeze(1)
            a = a_field.index_select(0, norm._field_of_channel).unsqueeze(1)
            if grad_b is not None:
                dy.sub_(torch.mv(norm._coeff_matrix.t(), grad_b).div_(n).unsqueeze(1))
            grad_x = dy.mul_(a).addcmul_(centred, k).view(x.shape)
        if not (bias is not None and need[2]):
            grad_b = None
        return grad_x, grad_w, grad_b, grad_gw, grad_gb, None, None


def _gate_reference(gate: GatedNonLinearity, y: torch.Tensor, weight, bias) -> torch.Tensor:
    """The gate's output ``(B, C, *S)`` on ``y`` by autograd-traced operations (the scalar activation and
    :meth:`GatedNonLinearity._gate_reference`; the channels are in grouped layout, :func:`can_fuse`)."""
    y3 = y.flatten(2)
    ns = gate._n_scalar_channels
    parts = [gate.function(y3[:, :ns])] if ns else []
    parts.append(gate._gate_reference(y3[:, :ns], y3[:, ns:], weight, bias))
    return torch.cat(parts, 1).view(y.shape)
