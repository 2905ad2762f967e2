r"""``TensorBatchNorm`` followed by ``GatedNonLinearity`` on the same fields, in training, as one autograd node.

:func:`batch_norm_gate` ``(norm, gate, x)`` returns ``gate(norm(x))`` (a tensor ``(B, C, *S)`` in and out) and updates
``norm``'s running statistics as ``norm`` does. Where it can (:func:`can_fuse`: batch statistics on one process,
the gate's channels already grouped by type, a named scalar activation whose derivative torch has), it computes the
pair with :class:`_NormGate`, one ``autograd.Function`` with a closed-form backward: ~30 torch operations forward and
~30 backward where the two layers take ~170 calls (profiled: 346 profiler events per forward + backward of the pair
at 28 channels). Otherwise it calls the two layers. The values are those of the two layers up to float rounding
(tested in float64 to 1e-12, with ``gradcheck``); second derivatives (``create_graph=True``) go through the two
layers' autograd-traced reference formulas.

**Native kernel.** On CPU float32/float64 tensors (not under ``torch.compile`` or autocast; see :func:`_use_native`)
the same node is :class:`_NormGateNative`: the forward and the closed-form backward below written as loops in C
(``csrc/norm_gate_kernels.h``: three passes over the input forward, two backward, sums accumulated in double), one
call each way, built at first use by :mod:`escnn_tensor._native` (a C compiler is all it needs; without one, or with
``ESCNN_TENSOR_NATIVE=0``, the PyTorch formulation runs). Its values equal the PyTorch formulation's to float
rounding (tested in float64 to 1e-12 and float32 to 1e-5). It removes the per-call costs of the ~75 small tensor
operations, which at small sizes are most of the pair's time: forward + backward at 8 x 28 x 16 x 16 values take
0.44 ms against 0.89 ms (``comparisons/bench_call_cost.py``, docs/speed_layers.md).

**GatedQuadratic.** ``batch_norm_gate(norm, layer, x)`` with a :class:`GatedQuadratic` fuses the norm with the
layer's gate; the node then also returns the norm's output ``y`` (differentiable: its gradient is added to ``dy``
before the batch norm's backward), which the layer's quadratic term reads.

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

from typing import Callable, Dict, Optional

import torch
from escnn.nn import GeometricTensor

from ._batch_norm import TensorBatchNorm
from ._field_ops import ACTIVATIONS
from ._gated import GatedNonLinearity
from ._gated_quadratic import GatedQuadratic
from ._native_kernels import ACTIVATION_ID, kernel, ptr, usable

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


def can_fuse(norm, layer) -> bool:
    """Whether :func:`batch_norm_gate` can compute ``layer(norm(x))`` with one node for the norm and the gate
    (shape-independent conditions): a :class:`TensorBatchNorm` and, on the same FieldType, a
    :class:`GatedNonLinearity` with gates, its channels in grouped layout already and a named scalar activation listed
    in ``_ACTIVATION_BACKWARD``; or a :class:`GatedQuadratic` whose gate is such a layer."""
    gate = layer.gate if isinstance(layer, GatedQuadratic) else layer
    if not (isinstance(norm, TensorBatchNorm) and isinstance(gate, GatedNonLinearity)):
        return False
    if gate.gate_weight is None or not gate.groups.identity:
        return False
    name = gate.function_name
    if name not in _ACTIVATION_BACKWARD or gate.function is not ACTIVATIONS[name]:
        return False
    return norm.in_type is gate.in_type or norm.in_type == gate.in_type


def batch_norm_gate(norm: TensorBatchNorm, layer, x: torch.Tensor) -> torch.Tensor:
    """``layer(norm(x))`` for a tensor ``x`` ``(B, C, *S)`` of ``norm.in_type`` and ``layer`` a
    :class:`GatedNonLinearity` or a :class:`GatedQuadratic` (see the module docstring); ``norm``'s running statistics
    are updated as by ``norm(x)``. The norm and the gate are one autograd node where :func:`can_fuse` holds and
    ``norm`` uses batch statistics on one process (a ``GatedQuadratic``'s quadratic term then reads the node's
    second output, the norm's output); the layers run one after the other otherwise (and for their errors on bad
    input)."""
    batch_stats = norm.training or not norm.track_running_stats
    if not (batch_stats and can_fuse(norm, layer)) or norm._sync():
        return layer(norm(GeometricTensor(x, norm.in_type))).tensor
    x = norm._check_input(GeometricTensor(x, norm.in_type))
    n = x.numel() // max(x.shape[1], 1)
    if norm.training and n < norm._min_values:
        return layer(norm(GeometricTensor(x, norm.in_type))).tensor  # (its ValueError)
    gate = layer.gate if isinstance(layer, GatedQuadratic) else layer
    quadratic = isinstance(layer, GatedQuadratic) and layer.product is not None
    norm._check_dtype(x)
    gate._check_dtype(x, gate.gate_weight)
    fn = _NormGateNative if _use_native(x, norm, gate) else _NormGate
    z, coeff, var, y = fn.apply(x, norm.weight, norm.bias, gate.gate_weight, gate.gate_bias, norm, gate, quadratic)
    if norm.training and norm.track_running_stats:
        norm._update_running_stats(coeff, var, n)
    if quadratic:
        z = z + layer._quadratic(GeometricTensor(y, layer.in_type)).tensor
    return z


class _NormGate(torch.autograd.Function):
    """``(x (B, C, *S), norm weight (F,) or None, norm bias (n_coefficients,) or None, gate weight (G, F'), gate bias
    (G,) or None, norm, gate, with_y) -> (z (B, C, *S), mean coefficients, var, y (B, C, *S) or None)``:
    training-mode batch norm then gate (module docstring); the statistics are non-differentiable outputs for the
    running averages; ``y``, the norm's output, is returned (and differentiable) when ``with_y``."""

    @staticmethod
    def forward(ctx, x, weight, bias, gate_weight, gate_bias, norm, gate, with_y=False):
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
        return z.view(shape), coeff, var, (y.view(shape) if with_y else None)

    @staticmethod
    def backward(ctx, g, _g_coeff, _g_var, gy):
        (x, weight, bias, gate_weight, gate_bias, centred, r, a_field, y, z, inv, rms, clamped, gamma,
         gc) = ctx.saved_tensors
        norm, gate, n = ctx.norm, ctx.gate, ctx.n
        params = (x, weight, bias, gate_weight, gate_bias)
        if torch.is_grad_enabled():  # create_graph: differentiate the traced reference instead
            return _reference_backward(norm, gate, params, g, gy)
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
        if gy is not None:  # the norm's output is also an output
            dy.add_(gy.reshape(dy.shape))
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
        return grad_x, grad_w, grad_b, grad_gw, grad_gb, None, None, None


def _reference_backward(norm: TensorBatchNorm, gate: GatedNonLinearity, params, g: torch.Tensor,
                        gy: Optional[torch.Tensor] = None) -> tuple:
    """The gradients of both autograd nodes with ``create_graph=True``: autograd through the two layers' traced
    reference formulas, so that second derivatives exist. ``params``: ``(x, weight, bias, gate weight, gate bias)``;
    ``g``, ``gy``: the gradients of the gate's output and of the norm's (``None``: not an output)."""
    x, weight, bias, gate_weight, gate_bias = params
    inputs = [t for t in params if t is not None and t.requires_grad]
    with torch.enable_grad():
        shift = norm._invariant_vector(bias) if bias is not None else None
        yr = norm._normalise_reference(x, weight, shift)[0]
        zr = _gate_reference(gate, yr, gate_weight, gate_bias)
    outputs, grads_out = ([zr, yr], [g, gy]) if gy is not None else ([zr], [g])
    grads = iter(torch.autograd.grad(outputs, inputs, grads_out, create_graph=True, allow_unused=True))
    return tuple(next(grads) if t is not None and t.requires_grad else None for t in params) + (None, None, None)


# ----------------------------------------------------------------------------------------------------------------
# the same node as one C kernel each way (csrc/norm_gate_kernels.h), where per-call costs dominate


def _use_native(x: torch.Tensor, norm: TensorBatchNorm, gate: GatedNonLinearity) -> bool:
    """Whether :class:`_NormGateNative` computes the pair: :func:`~escnn_tensor.nn._native_kernels.usable` for
    ``x``, the parameters and buffers of ``x``'s dtype on the CPU, and a named activation the kernel implements."""
    if gate.function_name not in ACTIVATION_ID or not usable(x):
        return False
    tensors = (norm.weight, norm.bias, gate.gate_weight, gate.gate_bias, norm._coeff_matrix, gate._mean_square)
    return not any(t is not None and (t.dtype != x.dtype or t.device.type != "cpu") for t in tensors)


class _NormGateNative(torch.autograd.Function):
    """:class:`_NormGate` (same inputs, outputs and values up to float rounding) computed by the C kernels of
    ``csrc/norm_gate_kernels.h``: three passes over the input forward and two backward, one call each way (see
    :func:`_use_native` for where it is used). Second derivatives go through the traced references, as there."""

    @staticmethod
    def forward(ctx, x, weight, bias, gate_weight, gate_bias, norm, gate, with_y=False):
        fwd = kernel("norm_gate_forward", x.dtype)
        shape = x.shape
        x3 = x.detach().flatten(2).contiguous()
        B, C, L = x3.shape
        G, F, NK, ns = gate.gate_weight.shape[0], norm.n_fields, norm.n_coefficients, gate._n_scalar_channels
        K, Fm, fdim = norm._coeff_matrix.contiguous(), norm._field_matrix.contiguous(), norm._field_dim.contiguous()
        w, gw = weight.detach() if weight is not None else None, gate_weight.detach().contiguous()
        z = torch.empty_like(x3)
        coeff, var = x3.new_empty(NK), x3.new_empty(F)
        saved = x3.new_empty(3 * C + 2 * F)
        gamma, ms = x3.new_empty(B, G, L), x3.new_empty(B, G, L)
        y = torch.empty_like(x3) if with_y else None
        err = fwd(x3.data_ptr(), B, C, L, K.data_ptr(), NK, Fm.data_ptr(), fdim.data_ptr(),
                  norm._field_of_channel.data_ptr(), F, ptr(w), ptr(bias), float(norm.eps), ns,
                  gate._mean_square.data_ptr(), gate._gate_of_channel.data_ptr(), G, gw.data_ptr(), ptr(gate_bias),
                  ACTIVATION_ID[gate.function_name], z.data_ptr(), coeff.data_ptr(), var.data_ptr(),
                  saved.data_ptr(), gamma.data_ptr(), ms.data_ptr(), ptr(y))
        if err:
            raise MemoryError("TensorBatchNorm -> GatedNonLinearity: out of memory in the native kernel")
        ctx.norm, ctx.gate = norm, gate
        ctx.save_for_backward(x, weight, bias, gate_weight, gate_bias, x3, saved, gamma, ms)
        ctx.mark_non_differentiable(coeff, var)
        return z.view(shape), coeff, var, (y.view(shape) if with_y else None)

    @staticmethod
    def backward(ctx, g, _g_coeff, _g_var, gy):
        x, weight, bias, gate_weight, gate_bias, x3, saved, gamma, ms = ctx.saved_tensors
        norm, gate = ctx.norm, ctx.gate
        if torch.is_grad_enabled():  # create_graph: differentiate the traced reference instead
            return _reference_backward(norm, gate, (x, weight, bias, gate_weight, gate_bias), g, gy)
        bwd = kernel("norm_gate_backward", x3.dtype)
        B, C, L = x3.shape
        G, F, NK, ns = gate_weight.shape[0], norm.n_fields, norm.n_coefficients, gate._n_scalar_channels
        g3 = g.reshape(B, C, L).contiguous()
        gy3 = gy.reshape(B, C, L).contiguous() if gy is not None else None
        need = ctx.needs_input_grad
        gx = torch.empty_like(x3)
        gw = x3.new_empty(F) if weight is not None and need[1] else None
        gb = x3.new_empty(NK) if bias is not None and need[2] else None
        ggw = x3.new_empty(gate_weight.shape)
        ggb = x3.new_empty(G) if gate_bias is not None else None
        err = bwd(g3.data_ptr(), x3.data_ptr(), B, C, L, norm._coeff_matrix.contiguous().data_ptr(), NK,
                  norm._field_matrix.contiguous().data_ptr(), norm._field_dim.contiguous().data_ptr(),
                  norm._field_of_channel.data_ptr(), F, ns, gate._mean_square.data_ptr(),
                  gate._gate_of_channel.data_ptr(), G, gate_weight.detach().contiguous().data_ptr(),
                  int(ggb is not None), ACTIVATION_ID[gate.function_name], saved.data_ptr(), gamma.data_ptr(),
                  ms.data_ptr(), ptr(gy3), gx.data_ptr(), ptr(gw), ptr(gb), ggw.data_ptr(), ptr(ggb))
        if err:
            raise MemoryError("TensorBatchNorm -> GatedNonLinearity: out of memory in the native kernel")
        return (gx.view(x.shape) if need[0] else None, gw, gb, ggw if need[3] else None,
                ggb if need[4] else None, None, None, None)


def _gate_reference(gate: GatedNonLinearity, y: torch.Tensor, weight, bias) -> torch.Tensor:
    """The gate's output ``(B, C, *S)`` on ``y`` by autograd-traced operations (the scalar activation and
    :meth:`GatedNonLinearity._gate_reference`; the channels are in grouped layout, :func:`can_fuse`)."""
    y3 = y.flatten(2)
    ns = gate._n_scalar_channels
    parts = [gate.function(y3[:, :ns])] if ns else []
    parts.append(gate._gate_reference(y3[:, :ns], y3[:, ns:], weight, bias))
    return torch.cat(parts, 1).view(y.shape)
