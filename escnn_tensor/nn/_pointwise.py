r"""``PointwiseNonLinearity``: an elementwise function on the scalars of a FieldType of tensor fields.

A group element acts on a true scalar (``k=0, parity=+1``) trivially and on a pseudoscalar (``k=0, parity=-1``)
by :math:`x \mapsto \det(M) x = \pm x`, so any function commutes with the first and exactly the *odd* functions
with the second. For fields of order :math:`k \ge 1` only functions of the invariant norm may scale them.
"""
from __future__ import annotations

import math
from typing import Callable, Union

import torch
from escnn.nn import FieldType, GeometricTensor

from ._field_ops import TensorFieldModule, TypeGroups, field_norms, resolve_activation
from ._native_kernels import ACTIVATION_ID, FIELD_KIND, kernel, usable

__all__ = ["PointwiseNonLinearity"]

_NONSCALARS = ("unchanged", "norm")


class PointwiseNonLinearity(TensorFieldModule):
    r"""Elementwise nonlinearity on true scalars, its odd soft-threshold version on pseudoscalars (2D and 3D).

    With :math:`f` = ``function`` and :math:`b` = ``threshold``, let
    :math:`\varphi(r) = f(r - b) - f(-b)` for :math:`r \ge 0` (so :math:`\varphi(0) = 0`). Per pixel:

    - true scalar :math:`x` (``k=0, parity=+1``): :math:`f(x)`;
    - pseudoscalar :math:`x` (``k=0, parity=-1``): :math:`\operatorname{sign}(x)\,\varphi(|x|)`, an odd, continuous
      function, so it commutes with :math:`x \mapsto -x`. For ``relu`` it is the soft threshold
      :math:`\operatorname{sign}(x) \max(|x| - b, 0)`; for an odd :math:`f` (``tanh``, ``softsign``) and
      :math:`b = 0` it is :math:`f` itself. (With :math:`b = 0` and ``relu``/``leaky_relu``/``elu``/``selu``/``celu``
      it is the identity: keep :math:`b > 0` for those.)
    - every other field :math:`x` (order :math:`k \ge 1`), ``nonscalars='unchanged'`` (default): unchanged;
      ``nonscalars='norm'``: :math:`x\, \varphi(|x|) / \max(|x|, \epsilon)`, i.e. its norm mapped by
      :math:`\varphi` and its direction kept (:math:`|x|` the Euclidean norm over all :math:`d^k` components; the
      pseudoscalar rule is this rule for a one-component field; :math:`\epsilon` = ``eps`` only keeps the
      gradient finite at :math:`x = 0`).

    Every factor is a function of an invariant, so the layer is exactly equivariant for every FieldType of tensor
    fields on :math:`B_d` or an accepted subgroup, in 2D and 3D (escnn's own ``PointwiseNonLinearity`` refuses
    even the scalars of ``fullOctaOnR3``). No parameters.

    Args:
        in_type: FieldType of tensor fields (:func:`escnn_tensor.tensor_type`); ``out_type`` is ``in_type``.
        function: a name in :data:`escnn_tensor.nn._field_ops.ACTIVATIONS` (``'relu'``, ``'elu'``, ``'silu'``,
            ``'gelu'``, ``'tanh'``, ``'sigmoid'``, ``'softplus'``, ...) or an elementwise callable.
        threshold: :math:`b \ge 0` (default 0.5).
        nonscalars: ``'unchanged'`` or ``'norm'`` (see above).
        eps: :math:`\epsilon > 0` of the norm rule (default 1e-6).

    Shapes: ``(B, C, *S)`` -> ``(B, C, *S)``.
    """

    _any_orthogonal = True  # also symmetric tensors and escnn's orthogonal representations (TensorFieldModule)

    def __init__(
        self,
        in_type: FieldType,
        function: Union[str, Callable] = "relu",
        threshold: float = 0.5,
        nonscalars: str = "unchanged",
        eps: float = 1e-6,
    ):
        super().__init__()
        sig = self._set_types(in_type)
        self.function, self.function_name = resolve_activation(function)
        for name, value, low in (("threshold", threshold, "0"), ("eps", eps, "0 (exclusive)")):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a real number >= {low}, got {value!r} of type {type(value).__name__}")
        if not (math.isfinite(threshold) and threshold >= 0):
            raise ValueError(f"threshold must be a finite real number >= 0, got {threshold}")
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a finite real number > 0, got {eps}")
        if nonscalars not in _NONSCALARS:
            raise ValueError(f"nonscalars must be one of {_NONSCALARS}, got {nonscalars!r}")
        self.threshold = float(threshold)
        self.nonscalars = nonscalars
        self.eps = float(eps)
        # f(-b), once in float64 (a Python float: the same constant in every dtype)
        self._offset = float(self.function(torch.tensor(-self.threshold, dtype=torch.float64)))
        self.groups = TypeGroups(sig, self.d, first=[(0, 1), (0, -1)], sizes=self._sizes)
        self._kinds = []
        for t, dim in zip(self.groups.types, self.groups.dim):
            if t[0] == "rep" and dim == 1:  # a one-dimensional orthogonal representation: +-1, as a pseudoscalar
                self._kinds.append("pseudo")
            elif t[0] == 0:
                self._kinds.append("scalar" if t[1] == 1 else "pseudo")
            else:
                self._kinds.append(nonscalars)
        self.register_buffer("_native_fields", self._field_table(), persistent=False)

    def _field_table(self):
        """``(3, F)`` int64: every field's first channel, number of channels and kind
        (:data:`~escnn_tensor.nn._native_kernels.FIELD_KIND`), for the native kernel; ``None`` when a field's channels
        are not consecutive (then the PyTorch formulation runs)."""
        rows = []
        for t, kind in enumerate(self._kinds):
            for channels in self.groups.channels(t):
                start = int(channels.min())
                if sorted(channels.tolist()) != list(range(start, start + len(channels))):
                    return None
                rows.append((start, len(channels), FIELD_KIND[kind]))
        return torch.tensor(sorted(rows), dtype=torch.int64).reshape(-1, 3).t().contiguous()

    def _phi(self, r: torch.Tensor) -> torch.Tensor:
        return self.function(r - self.threshold) - self._offset

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """``GeometricTensor`` of ``in_type`` ``(B, C, *S)`` -> the same type and shape. On CPU float32/float64
        inputs with a named activation it computes the same values by the C kernel of
        ``csrc/pointwise_kernels.h`` (one call each way; :mod:`escnn_tensor.nn._native_kernels`)."""
        x = self._check_input(input)
        if getattr(self, "_native_fields", None) is not None and self.function_name in ACTIVATION_ID and usable(x):
            return self._wrap(_PointwiseNative.apply(x, self))
        return self._wrap(self._reference(x))

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        """The layer on a tensor ``(B, C, *S)`` by PyTorch operations (also the native kernel's path for second
        derivatives)."""
        blocks = []
        for kind, blk in zip(self._kinds, self.groups.split(self.groups.gather(x))):
            if kind == "scalar":
                blk = self.function(blk)
            elif kind == "pseudo":
                blk = blk.sign() * self._phi(blk.abs())
            elif kind == "norm":
                n = field_norms(blk)
                blk = blk * (self._phi(n) / n.clamp_min(self.eps)).unsqueeze(2)
            blocks.append(blk)
        return self.groups.merge(blocks, x.shape[2:])

    def extra_repr(self) -> str:
        return (
            f"{self.in_type}, function={self.function_name!r}, threshold={self.threshold}, "
            f"nonscalars={self.nonscalars!r}"
        )


class _PointwiseNative(torch.autograd.Function):
    """``(x (B, C, *S), layer) -> layer(x)`` by the C kernels of ``csrc/pointwise_kernels.h`` (the formulas of
    :meth:`PointwiseNonLinearity._reference` and their derivative, in one pass each way); second derivatives
    (``create_graph=True``) go through :meth:`PointwiseNonLinearity._reference`."""

    @staticmethod
    def forward(ctx, x, layer):
        x3 = x.detach().flatten(2).contiguous()
        z = torch.empty_like(x3)
        _call(kernel("pointwise_forward", x.dtype), x3, layer, z)
        ctx.layer = layer
        ctx.save_for_backward(x, x3)
        return z.view(x.shape)

    @staticmethod
    def backward(ctx, g):
        x, x3 = ctx.saved_tensors
        layer = ctx.layer
        if torch.is_grad_enabled():  # create_graph: differentiate the PyTorch formulation instead
            with torch.enable_grad():
                return torch.autograd.grad(layer._reference(x), x, g, create_graph=True)[0], None
        gx = torch.empty_like(x3)
        _call(kernel("pointwise_backward", x3.dtype), x3, layer, gx, g.reshape(x3.shape).contiguous())
        return gx.view(x.shape), None


def _call(fn, x3: torch.Tensor, layer: PointwiseNonLinearity, out: torch.Tensor, g=None) -> None:
    """One kernel call on ``x3`` ``(B, C, L)`` (forward, or backward with the output's gradient ``g``) into ``out``."""
    fields = layer._native_fields
    B, C, L = x3.shape
    args = (B, C, L, fields[0].data_ptr(), fields[1].data_ptr(), fields[2].data_ptr(), fields.shape[1],
            ACTIVATION_ID[layer.function_name], layer.threshold, layer._offset, layer.eps, out.data_ptr())
    err = fn(x3.data_ptr(), *args) if g is None else fn(g.data_ptr(), x3.data_ptr(), *args)
    if err:
        raise MemoryError("PointwiseNonLinearity: out of memory in the native kernel")
