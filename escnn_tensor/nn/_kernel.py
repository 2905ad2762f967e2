r"""What ``GeometricConv`` and ``GeometricConvTransposed`` share: a dense kernel expanded from invariant filters.

Both layers hold, for every pair of distinct field types ``(t_in, t_out)``, one basis buffer (the invariant filters
of order ``k_in + k_out`` and parity ``p_in p_out`` read as ``d^k_out x d^k_in`` matrices per pixel,
:func:`escnn_tensor.nn._fields.kernel_basis`) and one block of the flat parameter ``weights``; the dense kernel
:math:`\kappa(a)` (an ``out x in`` matrix per kernel pixel ``a``) is their contraction. :class:`KernelExpansionModule`
holds the plan, the expansion (in torch's conv or conv-transpose weight layout), the bias in the invariant subspace,
the variance-preserving initialisation, the never-stale eval-mode cache, dtype/device handling, the offline
equivariance check and pickling; the subclasses add their argument parsing, ``forward``, shapes and ``export``.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from escnn.group import GroupElement
from escnn.nn import FieldType, GeometricTensor
from escnn.nn.modules.equivariant_module import EquivariantModule
from torch.nn import Parameter

from .._pickling import gspace_recipe, rebuild_gspace
from ..representations import field_signature, tensor_type
from ..testing import default_tolerance, equivariance_errors
from ._fields import FieldLayout, bias_basis, check_dtype, check_input, check_types, kernel_basis

__all__ = ["KernelExpansionModule", "ExpansionCache", "check_gain", "peak_kernel_gain"]

_GAIN_CHUNK = 2**22  # peak_kernel_gain: at most this many (frequency, pixel) phases at once (~32 MB per array)


def check_gain(gain) -> float:
    """``gain`` as a float if it is a finite real number >= 0 (not a bool); otherwise a ``TypeError``/``ValueError``."""
    if isinstance(gain, bool) or not isinstance(gain, (int, float, np.integer, np.floating)):
        raise TypeError(f"gain must be a finite real number >= 0, got {gain!r} of type {type(gain).__name__}")
    if not math.isfinite(gain) or gain < 0:
        raise ValueError(f"gain must be a finite real number >= 0, got {gain!r}")
    return float(gain)


def peak_kernel_gain(gram: np.ndarray, kernel_size: int, d: int, stride: int = 1, dilation: int = 1) -> float:
    r"""Peak over input frequencies of the expected power gain of a kernel with pixel Gram matrix ``gram``.

    ``gram`` (``K^d x K^d``, pixels row-major) is :math:`G_{ss'} = E[\sum \kappa(s) \kappa(s')]` per output
    component. For a convolution (``stride=1, dilation=1``) the gain at frequency :math:`\omega` is
    :math:`S(\omega) = \phi^H G \phi` with :math:`\phi_s = e^{i\omega\cdot s}`. For a *transposed* convolution with
    stride ``s`` and dilation ``D``, kernel pixel ``j`` carries input pixel ``q`` to output pixel ``s q + D j``: the
    output pixels of phase ``r = (D j) mod s`` form an ordinary convolution of the input with the sub-kernel of
    the pixels of that phase at offsets ``(D j - r) / s``, so the power per output pixel from an input tone at
    :math:`\omega` is the average over the :math:`s^d` phases, :math:`s^{-d} \sum_r \phi_r^H G_{rr} \phi_r`
    (equivalently :math:`s^{-2d} \sum_{k} S_D((\omega + 2\pi k)/s)`, summed over the :math:`s^d` aliases).
    Returns the maximum over a grid of ``max(16, 4K)**d`` frequencies (holding 0 and pi on every axis).
    """
    K = kernel_size
    L = max(16, 4 * K)
    freqs = 2 * np.pi * np.arange(L) / L
    omega = np.stack(np.meshgrid(*([freqs] * d), indexing="ij"), -1).reshape(-1, d)
    pos = dilation * np.stack(np.meshgrid(*([np.arange(K)] * d), indexing="ij"), -1).reshape(-1, d)
    phase_of = pos % stride
    power = np.zeros(len(omega))
    for r in np.unique(phase_of, axis=0):
        sel = np.flatnonzero((phase_of == r).all(1))
        offsets = (pos[sel] - r) // stride
        g = gram[np.ix_(sel, sel)]
        step = max(1, _GAIN_CHUNK // len(sel))
        for start in range(0, len(omega), step):
            phase = omega[start : start + step] @ offsets.T  # (F, P)
            c, s = np.cos(phase), np.sin(phase)
            power[start : start + step] += ((c @ g) * c).sum(1) + ((s @ g) * s).sum(1)
    return float(power.max()) / stride**d


# ----------------------------------------------------------------------------------------------------------------
# the eval-mode cache


def _same_values(saved: Optional[torch.Tensor], current: Optional[torch.Tensor]) -> bool:
    if saved is None or current is None:
        return saved is None and current is None
    return (
        saved.dtype == current.dtype
        and saved.device == current.device
        and saved.shape == current.shape
        and torch.equal(saved, current.detach())
    )


class ExpansionCache:
    """Tensors expanded from some parameters, kept while the parameters hold the same *values*.

    :meth:`get` compares the current parameters with a copy of those the cached value was built from (dtype, device,
    shape and ``torch.equal``: ``O(#parameters)``) and rebuilds on any difference. This sees every way of changing
    a parameter: in-place edits through ``.data`` (which bypass the parameter's version counter), ``torch.no_grad()``
    edits, optimiser steps, ``load_state_dict``, ``.to()``, and assigning a new ``Parameter``. A NaN parameter never
    compares equal, so it is rebuilt on every call (correct, only slower). A value built under
    ``torch.inference_mode()`` is rebuilt when used outside it (inference tensors cannot enter autograd, e.g. when
    gradients to the *input* are wanted).
    """

    def __init__(self):
        self._sources: Optional[Tuple[Optional[torch.Tensor], ...]] = None
        self._value = None
        self._inference = False

    def clear(self) -> None:
        self._sources = None
        self._value = None
        self._inference = False

    def get(self, sources: Sequence[Optional[torch.Tensor]], build: Callable[[], object]):
        """The cached value if ``sources`` equal the saved copies, else ``build()`` (run under ``no_grad``) cached."""
        sources = tuple(sources)
        saved = self._sources
        inference = torch.is_inference_mode_enabled()
        if (
            saved is None
            or (self._inference and not inference)
            or len(saved) != len(sources)
            or not all(map(_same_values, saved, sources))
        ):
            with torch.no_grad():
                value = build()
                self._sources = tuple(None if t is None else t.detach().clone() for t in sources)
            self._value = value
            self._inference = inference
        return self._value

    def __deepcopy__(self, memo):
        return ExpansionCache()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()


# ----------------------------------------------------------------------------------------------------------------


class KernelExpansionModule(EquivariantModule):
    r"""Base of the convolutions whose kernel is a complete expansion in invariant filters (not public).

    Subclasses call :meth:`_init_types` first, parse their own arguments, then :meth:`_build`; they implement
    ``forward``, ``evaluate_output_shape``, ``export`` and :meth:`_check_spatial`. Class attributes:
    ``_transposed`` (dense kernel in conv-transpose layout ``(C_in, C_out, K..)`` instead of conv layout
    ``(C_out, C_in, K..)``).
    """

    _transposed = False

    # ---- construction -------------------------------------------------------------------------------------------

    def _init_types(self, in_type: FieldType, out_type: FieldType) -> Tuple[int, list, list]:
        d, sig_in, sig_out = check_types(in_type, out_type)
        self.d = d
        self.space = in_type.gspace
        self.in_type = in_type
        self.out_type = out_type
        return d, sig_in, sig_out

    def _build(self, sig_in: list, sig_out: list, bias: bool, initialize: bool) -> None:
        for name, flag in (("bias", bias), ("initialize", initialize)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        self._fields_in = FieldLayout(sig_in, self.d)
        self._fields_out = FieldLayout(sig_out, self.d)
        self._master: Dict[str, torch.Tensor] = {}  # float64 originals of the floating buffers
        self._cache = ExpansionCache()
        self._build_kernel_plan()
        self._build_bias_plan(bias)
        if initialize:
            self.reset_parameters()

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

    # ---- initialisation -----------------------------------------------------------------------------------------

    def _gain_geometry(self) -> Tuple[int, int]:
        """``(stride, dilation)`` that :func:`peak_kernel_gain` needs: ``(1, 1)`` for a convolution (a dilation only
        rescales frequencies and a stride only samples the output, neither changes the peak power gain)."""
        return 1, 1

    def _peak_gain(self, to: int) -> float:
        r"""Peak over frequencies of the expected kernel gain into out type ``to`` per unit weight variance.

        For weights i.i.d. with variance 1 the kernel's expected power spectrum, averaged over the output
        components, is :math:`S(\omega) = \phi(\omega)^H G \phi(\omega)` with :math:`G_{ss'} = \frac{1}{d^{k_{out}}}
        \sum m_{in} \sum_{n,a,i} B_n[a,i,s] B_n[a,i,s']`; :func:`peak_kernel_gain` returns the peak of the power
        gain it gives (for the transposed layer, averaged over the output phases of the stride).
        """
        K, d = self.kernel_size, self.d
        gram = np.zeros((K**d, K**d))
        for name, _, _, m_in, _ in self._pairs[to]:
            if name is not None:
                b = self._master[name].reshape(-1, K**d).numpy()
                gram += m_in * (b.T @ b)
        gram /= self._fields_out.dim[to]
        stride, dilation = self._gain_geometry()
        return peak_kernel_gain(gram, K, d, stride, dilation)

    @torch.no_grad()
    def reset_parameters(self, gain: float = 1.0, generator: Optional[torch.Generator] = None) -> None:
        r"""Variance-preserving initialisation (no input frequency amplified); the bias is set to zero.

        All weights into output type ``t_out`` are drawn i.i.d. from :math:`N(0, \sigma^2_{t_{out}})` with
        :math:`\sigma^2_{t_{out}} = gain / \max_\omega S_{t_{out}}(\omega)` (see :meth:`_peak_gain`): for inputs
        independent across channels, the expected output power at each spatial frequency :math:`\omega` is
        :math:`\sigma^2 S(\omega)` times the input power there, i.e. at most ``gain`` and equal to it at the peak.
        (Normalising by the white-noise average of :math:`S` instead, as He's rule does, lets the smooth
        frequencies that weight-tied invariant kernels favour grow layer after layer.) ``gain`` must be a finite
        number >= 0.
        """
        gain = check_gain(gain)
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
        """Dense kernel from ``weights`` (one einsum per type pair): ``(C_out, C_in, K..)``, or ``(C_in, C_out, K..)``
        for a transposed layer (torch's ``conv_transpose`` weight layout)."""
        fi, fo = self._fields_in, self._fields_out
        w, S = self.weights, self.kernel_size**self.d
        out_dim = 1 if self._transposed else 0
        spec = "oin,nabs->iboas" if self._transposed else "oin,nabs->oaibs"
        # one split (a single autograd node) rather than one slice per pair
        coeffs = iter(w.split([m_out * m_in * n for row in self._pairs for _, _, m_out, m_in, n in row]))
        rows = []
        for to, row in enumerate(self._pairs):
            blocks = []
            for ti, (name, off, m_out, m_in, n) in enumerate(row):
                shape = [m_out * fo.dim[to], m_in * fi.dim[ti], S]
                if self._transposed:
                    shape[0], shape[1] = shape[1], shape[0]
                coeff = next(coeffs).view(m_out, m_in, n)
                if name is None:
                    blocks.append(w.new_zeros(shape))
                    continue
                block = torch.einsum(spec, coeff, getattr(self, name))
                blocks.append(block.reshape(shape))
            rows.append(torch.cat(blocks, dim=1 - out_dim) if len(blocks) > 1 else blocks[0])
        kernel = torch.cat(rows, dim=out_dim) if len(rows) > 1 else rows[0]
        if not fo.identity:
            kernel = kernel.index_select(out_dim, self._order_out)
        if not fi.identity:
            kernel = kernel.index_select(1 - out_dim, self._order_in)
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
        """The dense kernel (torch's weight layout of the layer) and bias ``(C_out,)`` (or ``None``), freshly
        expanded from the current parameters."""
        return self._expand_kernel(), self._expand_bias()

    def _kernel_and_bias(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Train mode, or gradients to the weights wanted: expand. Eval mode otherwise: the cached expansion, rebuilt
        whenever the values of ``weights`` / ``bias`` differ from those it was built from (:class:`ExpansionCache`)."""
        needs_graph = torch.is_grad_enabled() and (
            self.weights.requires_grad or (self.bias is not None and self.bias.requires_grad)
        )
        if self.training or needs_graph:
            self._cache.clear()
            return self.expand_parameters()
        return self._cache.get((self.weights, self.bias), self.expand_parameters)

    def train(self, mode: bool = True):
        """Set the mode; the eval-mode kernel cache is dropped either way (it is rebuilt on the next eval forward)."""
        self._cache.clear()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        # .to() / .double() / .half() ...: the basis buffers are re-rounded from their float64 originals, so a
        # float32 -> float64 round trip gives the exact basis back.
        out = super()._apply(fn, *args, **kwargs)
        for name, master in self._master.items():
            buf = self._buffers[name]
            self._buffers[name] = master.to(device=buf.device, dtype=buf.dtype)
        self._cache.clear()
        return out

    # ---- forward helpers ----------------------------------------------------------------------------------------

    def _check_input(self, input) -> torch.Tensor:
        """The tensor of ``input`` after checking type, shape and dtype (errors name the layer and what was given)."""
        x = check_input(input, self.in_type, self.d, type(self).__name__)
        check_dtype(x, self.weights, type(self).__name__)
        return x

    # ---- checks -------------------------------------------------------------------------------------------------

    def _check_spatial(self) -> int:
        """Default input side of :meth:`check_equivariance` (a size at which the layer is equivariant)."""
        raise NotImplementedError

    def check_equivariance(
        self,
        rtol: Optional[float] = None,
        spatial: Optional[int] = None,
        dtype: torch.dtype = torch.float64,
        assertion: bool = True,
    ) -> List[Tuple[GroupElement, float]]:
        r"""Equivariance errors over **every** group element, on a random input; no downloads.

        Runs a float copy of the layer (``dtype``, default float64; the layer itself is not changed) on a random
        Gaussian input of side ``spatial`` (default: a small size at which the layer is equivariant) and returns
        ``[(g, max|f(g.x) - g.f(x)| / max|f(x)|) for every g]``. With ``assertion=True`` it raises
        ``AssertionError`` if an error exceeds ``rtol`` (default 1e-10 for float64, 1e-5 for float32).
        """
        if spatial is None:
            spatial = self._check_spatial()
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
            raise AssertionError(
                f"{type(self).__name__} not equivariant to rtol={tol:g} for {len(bad)} elements: {bad}"
            )
        return errors

    # ---- copying and pickling -----------------------------------------------------------------------------------

    def __deepcopy__(self, memo):
        # FieldTypes and the gspace are immutable: the copy shares them (escnn compares them by identity of reps).
        for shared in (self.in_type, self.out_type, self.space):
            memo.setdefault(id(shared), shared)
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = copy.deepcopy(value, memo)
        new._cache = ExpansionCache()
        return new

    def __getstate__(self):
        state = self.__dict__.copy()
        for key in ("in_type", "out_type", "space"):
            del state[key]
        state["_cache"] = ExpansionCache()
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
        state["_cache"] = ExpansionCache()  # (states pickled before the cache class held ``_cache = None``)
        super().__setstate__(state)

    def _repr_tail(self) -> str:
        return (", bias=None" if self.bias is None else "") + f", weights={self.weights.numel()}"
