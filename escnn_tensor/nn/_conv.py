r"""``GeometricConv``: the complete equivariant convolution between tensor fields, as an escnn module.

Math
----
A field of type ``(k, p)`` is an order-``k`` tensor of parity ``p`` at every pixel; the group element
:math:`g` with signed permutation matrix :math:`M` acts by :math:`\rho_{k,p}(g) = \det(M)^{(1-p)/2}
M^{\otimes k}` on the fibre (see :mod:`escnn_tensor.representations`) and moves pixels by :math:`a \mapsto Ma`.

For an input field ``(k_in, p_in)`` and an output field ``(k_out, p_out)`` the convolution kernel is a map
:math:`\kappa` from pixel offsets :math:`a` to :math:`d^{k_{out}} \times d^{k_{in}}` matrices, i.e. an order
:math:`k_{out}+k_{in}` tensor with indices ``(out_1..out_{k_out}, in_1..in_{k_in})``. The layer computes the
cross-correlation (as ``torch.nn.functional.conv2d`` / ``conv3d`` do)

.. math::

    y(x) = \sum_a \kappa(a)\, f(x + a),

which is equivariant, :math:`y[g \cdot f] = g \cdot y[f]`, if and only if
:math:`\kappa(Ma) = \rho_{out}(g)\, \kappa(a)\, \rho_{in}(g)^T` for every :math:`g`. Read on the flattened
indices, :math:`\rho_{out} \otimes \rho_{in} = \rho_{k_{out}+k_{in},\, p_{out} p_{in}}`, so this says exactly that
:math:`\kappa` is an *invariant filter* of order :math:`k_{out}+k_{in}` and parity :math:`p_{out} p_{in}`
(:func:`escnn_tensor.invariant_filters`); equivalently, :math:`\kappa` is the geometric convolution of the input with
an invariant filter, contracted over the :math:`k_{in}` input indices. The invariant filters are a basis of that
space, so each field pair gets one weight per invariant filter and the layer is *complete*: it reaches every
equivariant kernel of its size on the grid.

The bias of an output field lies in the invariant subspace of its representation (basis:
``invariant_filters(gspace, 1, k, p)``): a constant for scalars, :math:`\delta_{ij}` for true 2-tensors,
:math:`\epsilon_{ijk}` for 3D pseudo-3-tensors, nothing for vectors or pseudoscalars.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from escnn.group import GroupElement
from escnn.nn import FieldType, GeometricTensor
from escnn.nn.modules.equivariant_module import EquivariantModule
from torch.nn import Parameter

from .._pickling import gspace_recipe, rebuild_gspace
from ..grid import PADDING_MODES, conv_output_size, same_on_axes, stride_fits, symmetric_padding
from ..representations import field_signature, tensor_type
from ..testing import default_tolerance, equivariance_errors
from ._fields import FieldLayout, bias_basis, check_types, kernel_basis

__all__ = ["GeometricConv", "EquivarianceWarning"]

IntOrTuple = Union[int, Sequence[int]]


class EquivarianceWarning(UserWarning):
    """A layer was called in a way that makes its output not equivariant (e.g. a stride that does not fit)."""


class GeometricConv(EquivariantModule):
    r"""Complete :math:`G`-equivariant convolution between FieldTypes of tensor fields (2D or 3D).

    Same arguments and meaning as escnn's ``R2Conv`` / ``R3Conv`` (the dimension follows the gspace), but the
    kernel space is spanned by the exact invariant filters of the pixel grid (see :mod:`escnn_tensor.conv`),
    so it holds *every* equivariant kernel of size ``kernel_size`` and equivariance is exact up to round-off.

    Args:
        in_type: FieldType of the input, made of tensor fields (:func:`escnn_tensor.tensor_type`; the trivial
            representation counts as a scalar).
        out_type: FieldType of the output, on the same gspace.
        kernel_size: side ``K`` of the kernel (odd or even; the output grid stays centred).
        padding: zero-based padding on every side of every axis: an int, a tuple of ``d`` equal ints,
            ``'valid'`` (0) or ``'same'`` (``dilation*(K-1)/2``, when that is an integer).
        stride, dilation: as in ``torch.nn.Conv2d`` (equal on all axes).
        padding_mode: ``'zeros'``, ``'circular'``, ``'reflect'`` or ``'replicate'`` (all commute with the
            group, which maps the square/cubic padded grid onto itself).
        bias: add a learnable bias in the invariant subspace of each output field.
        initialize: draw the weights with the variance-preserving scheme of :meth:`reset_parameters`
            (otherwise they are zero).

    Shapes: ``GeometricTensor`` ``(B, in_type.size, N_1, .., N_d)`` in,
    ``(B, out_type.size, M_1, .., M_d)`` out with ``M = floor((N + 2 padding - dilation (K-1) - 1) / stride) + 1``.

    Parameters: ``weights`` (flat; for each pair of distinct field types ``(t_in, t_out)`` a block
    ``(m_out, m_in, n)`` with ``n`` = number of invariant filters of order ``k_in+k_out`` and parity
    ``p_in p_out``) and ``bias`` (flat; ``(m_out, n_b)`` per output type, or ``None``). The dense kernel
    ``(out_type.size, in_type.size, K, .., K)`` is expanded from them with one einsum per type pair in train mode,
    and cached in eval mode (recomputed when the weights change, or when gradients to the weights are needed).
    The state_dict holds only ``weights`` and ``bias``, in both modes.
    """

    def __init__(
        self,
        in_type: FieldType,
        out_type: FieldType,
        kernel_size: IntOrTuple,
        padding: Union[IntOrTuple, str] = 0,
        stride: IntOrTuple = 1,
        dilation: IntOrTuple = 1,
        padding_mode: str = "zeros",
        bias: bool = True,
        initialize: bool = True,
    ):
        super().__init__()
        d, sig_in, sig_out = check_types(in_type, out_type)
        self.d = d
        self.space = in_type.gspace
        self.in_type = in_type
        self.out_type = out_type
        self.kernel_size = same_on_axes(kernel_size, d, "kernel_size", 1)
        self.stride = same_on_axes(stride, d, "stride", 1)
        self.dilation = same_on_axes(dilation, d, "dilation", 1)
        self.padding = symmetric_padding(padding, d, self.kernel_size, self.dilation)
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        for name, flag in (("bias", bias), ("initialize", initialize)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        self._fields_in = FieldLayout(sig_in, d)
        self._fields_out = FieldLayout(sig_out, d)
        self._master: Dict[str, torch.Tensor] = {}  # float64 originals of the floating buffers
        self._cache = None
        self._build_kernel_plan()
        self._build_bias_plan(bias)
        if initialize:
            self.reset_parameters()

    # ---- construction -------------------------------------------------------------------------------------------

    def _add_basis(self, name: str, basis64: torch.Tensor) -> None:
        self._master[name] = basis64
        self.register_buffer(name, basis64.to(torch.get_default_dtype()), persistent=False)

    def _build_kernel_plan(self) -> None:
        """One basis buffer and one slice of ``weights`` per pair (in type, out type)."""
        fi, fo = self._fields_in, self._fields_out
        self._pairs = []  # per out type: list of (basis name or None, offset, m_out, m_in, n)
        offset = 0
        for to, t_out in enumerate(fo.types):
            row = []
            for ti, t_in in enumerate(fi.types):
                basis = kernel_basis(self.space, self.kernel_size, t_in, t_out)
                n = basis.shape[0]
                name = None
                if n > 0:
                    name = f"_basis_{to}_{ti}"
                    self._add_basis(name, basis)
                row.append((name, offset, fo.count[to], fi.count[ti], n))
                offset += fo.count[to] * fi.count[ti] * n
            self._pairs.append(row)
        if offset == 0:
            raise ValueError(
                f"there is no nonzero equivariant kernel of size {self.kernel_size} from in_type "
                f"{field_signature(self.in_type)} to out_type {field_signature(self.out_type)} (as (k, parity) "
                f"per field); the layer would be constant. Use a larger kernel_size or other field types."
            )
        self.weights = Parameter(torch.zeros(offset))
        for name, order in (("_order_in", self._fields_in), ("_order_out", self._fields_out)):
            self.register_buffer(name, torch.from_numpy(order.inverse.copy()), persistent=False)

    def _build_bias_plan(self, bias: bool) -> None:
        self._bias_blocks = []  # per out type: (basis name or None, offset, m_out, n)
        offset = 0
        fo = self._fields_out
        for to, t_out in enumerate(fo.types):
            basis = bias_basis(self.space, t_out) if bias else torch.zeros(0, fo.dim[to], dtype=torch.float64)
            n = basis.shape[0]
            name = None
            if n > 0:
                name = f"_bias_basis_{to}"
                self._add_basis(name, basis)
            self._bias_blocks.append((name, offset, fo.count[to], n))
            offset += fo.count[to] * n
        if offset > 0:
            self.bias = Parameter(torch.zeros(offset))
        else:
            self.register_parameter("bias", None)

    def _peak_gain(self, to: int) -> float:
        r"""Peak over frequencies of the expected kernel gain into out type ``to`` per unit weight variance.

        For weights i.i.d. with variance 1 the kernel's expected power spectrum, averaged over the output
        components, is :math:`S(\omega) = \frac{1}{d^{k_{out}}} \sum_{t_{in}} m_{in} \sum_n \|\hat B_n(\omega)\|^2
        = \phi(\omega)^H G \phi(\omega)` with :math:`G_{ss'} = \frac{1}{d^{k_{out}}}\sum m_{in} \sum_{n,a,i}
        B_n[a,i,s] B_n[a,i,s']` and :math:`\phi(\omega)_s = e^{i\omega\cdot s}`; this returns its maximum over a
        grid of ``max(16, 4K)**d`` frequencies (which holds 0 and pi on each axis).
        """
        K, d = self.kernel_size, self.d
        gram = np.zeros((K**d, K**d))
        for name, _, _, m_in, _ in self._pairs[to]:
            if name is not None:
                b = self._master[name].reshape(-1, K**d).numpy()
                gram += m_in * (b.T @ b)
        gram /= self._fields_out.dim[to]
        L = max(16, 4 * K)
        freqs = 2 * np.pi * np.arange(L) / L
        omega = np.stack(np.meshgrid(*([freqs] * d), indexing="ij"), -1).reshape(-1, d)
        pixels = np.stack(np.meshgrid(*([np.arange(K)] * d), indexing="ij"), -1).reshape(-1, d)
        phase = omega @ pixels.T  # (F, K^d)
        c, s = np.cos(phase), np.sin(phase)
        power = ((c @ gram) * c).sum(1) + ((s @ gram) * s).sum(1)
        return float(power.max())

    @torch.no_grad()
    def reset_parameters(self, gain: float = 1.0, generator: Optional[torch.Generator] = None) -> None:
        r"""Variance-preserving initialisation (no input frequency amplified); the bias is set to zero.

        All weights into output type ``t_out`` are drawn i.i.d. from :math:`N(0, \sigma^2_{t_{out}})` with
        :math:`\sigma^2_{t_{out}} = gain / \max_\omega S_{t_{out}}(\omega)` (see :meth:`_peak_gain`): for inputs
        independent across channels, the expected output power at each spatial frequency :math:`\omega` is
        :math:`\sigma^2 S(\omega)` times the input power there, i.e. at most ``gain`` and equal to it at the peak.
        (Normalising by the white-noise average of :math:`S` instead, as He's rule does, lets the smooth
        frequencies that weight-tied invariant kernels favour grow layer after layer.)
        """
        for to, row in enumerate(self._pairs):
            if all(name is None for name, *_ in row):
                continue
            std = math.sqrt(gain / self._peak_gain(to))
            for name, off, m_out, m_in, n in row:
                size = m_out * m_in * n
                if size:
                    w = torch.randn(size, generator=generator, dtype=torch.float64) * std
                    self.weights[off : off + size] = w.to(self.weights)
        if self.bias is not None:
            self.bias.zero_()

    # ---- expansion ----------------------------------------------------------------------------------------------

    def _expand_kernel(self) -> torch.Tensor:
        """Dense conv weight ``(out_type.size, in_type.size, K, .., K)`` from ``weights``: one einsum per type pair."""
        fi, fo = self._fields_in, self._fields_out
        w, S = self.weights, self.kernel_size**self.d
        # one split (a single autograd node) rather than one slice per pair
        coeffs = iter(w.split([m_out * m_in * n for row in self._pairs for _, _, m_out, m_in, n in row]))
        rows = []
        for to, row in enumerate(self._pairs):
            blocks = []
            for ti, (name, off, m_out, m_in, n) in enumerate(row):
                shape = (m_out * fo.dim[to], m_in * fi.dim[ti], S)
                coeff = next(coeffs).view(m_out, m_in, n)
                if name is None:
                    blocks.append(w.new_zeros(shape))
                    continue
                block = torch.einsum("oin,nabs->oaibs", coeff, getattr(self, name))
                blocks.append(block.reshape(shape))
            rows.append(torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0])
        kernel = torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]
        if not fo.identity:
            kernel = kernel.index_select(0, self._order_out)
        if not fi.identity:
            kernel = kernel.index_select(1, self._order_in)
        return kernel.reshape(kernel.shape[:2] + (self.kernel_size,) * self.d)

    def _expand_bias(self) -> Optional[torch.Tensor]:
        """Dense bias ``(out_type.size,)`` from ``bias``, or ``None``."""
        if self.bias is None:
            return None
        fo = self._fields_out
        parts = []
        for to, (name, off, m_out, n) in enumerate(self._bias_blocks):
            if name is None:
                parts.append(self.bias.new_zeros(m_out * fo.dim[to]))
            else:
                coeff = self.bias[off : off + m_out * n].view(m_out, n)
                parts.append((coeff @ getattr(self, name)).reshape(-1))
        b = torch.cat(parts)
        return b if fo.identity else b.index_select(0, self._order_out)

    def expand_parameters(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The dense kernel ``(C_out, C_in, K, .., K)`` and bias ``(C_out,)`` (or ``None``), freshly expanded."""
        return self._expand_kernel(), self._expand_bias()

    def _cache_key(self) -> tuple:
        tensors = [self.weights] + ([self.bias] if self.bias is not None else [])
        return tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in tensors)

    def _kernel_and_bias(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Train mode, or gradients to the weights wanted: expand. Eval mode otherwise: the cached expansion."""
        needs_graph = torch.is_grad_enabled() and (
            self.weights.requires_grad or (self.bias is not None and self.bias.requires_grad)
        )
        if self.training or needs_graph:
            self._cache = None
            return self.expand_parameters()
        key = self._cache_key()
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key,) + self.expand_parameters()
        return self._cache[1], self._cache[2]

    def train(self, mode: bool = True) -> "GeometricConv":
        """Set the mode; the eval-mode kernel cache is dropped either way (it is rebuilt on the next eval forward)."""
        self._cache = None
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        # .to() / .double() / .half() ...: the basis buffers are re-rounded from their float64 originals, so a
        # float32 -> float64 round trip gives the exact basis back.
        out = super()._apply(fn, *args, **kwargs)
        for name, master in self._master.items():
            buf = self._buffers[name]
            self._buffers[name] = master.to(device=buf.device, dtype=buf.dtype)
        self._cache = None
        return out

    # ---- forward ------------------------------------------------------------------------------------------------

    def _check_input(self, input) -> None:
        if not isinstance(input, GeometricTensor):
            raise TypeError(f"input must be an escnn GeometricTensor of type in_type, got {type(input).__name__}")
        if input.type is not self.in_type and input.type != self.in_type:
            raise ValueError(
                f"input has FieldType {input.type} ({input.type.size} channels) but this layer's in_type is "
                f"{self.in_type} ({self.in_type.size} channels)"
            )
        if input.tensor.dim() != 2 + self.d:
            raise ValueError(
                f"input tensor must have shape (batch, {self.in_type.size}" + ", N" * self.d
                + f"), got {tuple(input.tensor.shape)}"
            )

    def _check_stride(self, spatial: Sequence[int]) -> None:
        bad = [n for n in spatial if not stride_fits(n, self.kernel_size, self.stride, 2 * self.padding, self.dilation)]
        if bad:
            warnings.warn(
                f"stride={self.stride} does not fit the input size {tuple(spatial)}: the sampled output pixels are "
                f"not symmetric about the centre of the grid (needs (N + 2*padding - dilation*(kernel_size-1) - 1) "
                f"% stride == 0 on every axis, here padding={self.padding}, dilation={self.dilation}, "
                f"kernel_size={self.kernel_size}), so the output is NOT equivariant. Change the input size or "
                f"the padding.",
                EquivarianceWarning,
                stacklevel=3,
            )

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """Convolve: ``GeometricTensor`` of ``in_type`` ``(B, C_in, N..)`` -> of ``out_type`` ``(B, C_out, M..)``."""
        self._check_input(input)
        x = input.tensor
        if self.stride > 1:
            self._check_stride(x.shape[2:])
        kernel, bias = self._kernel_and_bias()
        conv = F.conv2d if self.d == 2 else F.conv3d
        if self.padding_mode == "zeros" or self.padding == 0:
            y = conv(x, kernel, bias, self.stride, self.padding, self.dilation)
        else:
            x = F.pad(x, (self.padding,) * (2 * self.d), mode=self.padding_mode)
            y = conv(x, kernel, bias, self.stride, 0, self.dilation)
        return GeometricTensor(y, self.out_type, coords=None)

    def evaluate_output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """``(B, in_type.size, N_1..N_d)`` -> ``(B, out_type.size, M_1..M_d)`` (formula in the class docstring)."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 2 + self.d or input_shape[1] != self.in_type.size:
            raise ValueError(
                f"input_shape must be (batch, {self.in_type.size}" + ", N" * self.d + f"), got {input_shape}"
            )
        out = [
            conv_output_size(n, self.kernel_size, self.stride, 2 * self.padding, self.dilation) for n in input_shape[2:]
        ]
        return (input_shape[0], self.out_type.size) + tuple(out)

    # ---- checks and export --------------------------------------------------------------------------------------

    def check_equivariance(
        self,
        rtol: Optional[float] = None,
        spatial: Optional[int] = None,
        dtype: torch.dtype = torch.float64,
        assertion: bool = True,
    ) -> List[Tuple[GroupElement, float]]:
        r"""Equivariance errors over **every** group element, on a random input; no downloads.

        Runs a float copy of the layer (``dtype``, default float64; the layer itself is not changed) on a random
        Gaussian input of side ``spatial`` (default: the smallest size >= kernel reach + 4 that fits the stride)
        and returns ``[(g, max|f(g.x) - g.f(x)| / max|f(x)|) for every g]``. With ``assertion=True`` it raises
        ``AssertionError`` if an error exceeds ``rtol`` (default 1e-10 for float64, 1e-5 for float32).
        """
        if spatial is None:
            span = self.dilation * (self.kernel_size - 1)
            spatial = max(span + 1 - 2 * self.padding, 1) + 4
            while not stride_fits(spatial, self.kernel_size, self.stride, 2 * self.padding, self.dilation):
                spatial += 1
        layer = copy.deepcopy(self).to(dtype=dtype)
        layer.eval()
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((2, self.in_type.size) + (spatial,) * self.d, generator=gen, dtype=dtype)
        x = GeometricTensor(x.to(self.weights.device), self.in_type)
        with torch.no_grad():
            errors = list(equivariance_errors(layer, x).items())
        tol = default_tolerance(dtype) if rtol is None else rtol
        bad = [(str(g), e) for g, e in errors if not e <= tol]
        if assertion and bad:
            raise AssertionError(f"GeometricConv not equivariant to rtol={tol:g} for {len(bad)} elements: {bad}")
        return errors

    def export(self) -> torch.nn.Module:
        """A ``torch.nn.Conv2d`` / ``Conv3d`` with the same output (padding, padding_mode, stride, dilation, bias).

        The weights are copied from the current parameters (same dtype and device); this layer's mode is unchanged.
        """
        conv_cls = torch.nn.Conv2d if self.d == 2 else torch.nn.Conv3d
        with torch.no_grad():
            kernel, bias = self.expand_parameters()
        conv = conv_cls(
            self.in_type.size,
            self.out_type.size,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=bias is not None,
            padding_mode=self.padding_mode,
            device=kernel.device,
            dtype=kernel.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(kernel)
            if bias is not None:
                conv.bias.copy_(bias)
        return conv

    # ---- copying and pickling -----------------------------------------------------------------------------------

    def __deepcopy__(self, memo):
        # FieldTypes and the gspace are immutable: the copy shares them (escnn compares them by identity of reps).
        for shared in (self.in_type, self.out_type, self.space):
            memo.setdefault(id(shared), shared)
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = copy.deepcopy(value, memo)
        new._cache = None
        return new

    def __getstate__(self):
        state = self.__dict__.copy()
        for key in ("in_type", "out_type", "space"):
            del state[key]
        state["_cache"] = None
        state["_recipe"] = (
            gspace_recipe(self.space),
            field_signature(self.in_type),
            field_signature(self.out_type),
        )
        return state

    def __setstate__(self, state):
        state = dict(state)
        gs_recipe, sig_in, sig_out = state.pop("_recipe")
        gs = rebuild_gspace(gs_recipe)
        state["space"] = gs
        state["in_type"] = tensor_type(gs, [(k, p, 1) for k, p in sig_in])
        state["out_type"] = tensor_type(gs, [(k, p, 1) for k, p in sig_out])
        super().__setstate__(state)

    def extra_repr(self) -> str:
        s = f"{self.in_type}, {self.out_type}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding:
            s += f", padding={self.padding}, padding_mode={self.padding_mode!r}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=None"
        return s + f", weights={self.weights.numel()}"
