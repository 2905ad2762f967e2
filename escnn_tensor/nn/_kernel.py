r"""What ``GeometricConv`` and ``GeometricConvTransposed`` share: a dense kernel expanded from invariant filters.

Both layers hold, for every pair of distinct field types ``(t_in, t_out)``, one block of the flat parameter ``weights``
(one weight per field pair and invariant filter of order ``k_in + k_out`` and parity ``p_in p_out``); the dense
kernel :math:`\kappa(a)` (an ``out x in`` matrix per kernel pixel ``a``) is their contraction. Because the invariant
filters are signed orbit sums with disjoint supports (:mod:`escnn_tensor.filters`), every entry of the dense kernel
is ``+-weights[j] / sqrt(orbit size)`` for exactly one weight ``j``, or zero: the expansion is a *gather*
``kernel = weights[index] * value`` with an index and a value per kernel entry, precomputed once per layer (16 bytes
per kernel entry; no basis tensor of size ``n x kernel``), whose backward is one scatter-add (``index_select``'s).
Zero entries of the kernel read ``weights[0]`` with value 0 (so a non-finite ``weights[0]`` makes them NaN too). :class:`KernelExpansionModule`
holds the plan, the expansion (in torch's conv or conv-transpose weight layout), the bias in the invariant subspace,
the variance-preserving initialisation, the eval-mode cache (keyed on the parameters' version counters), dtype/device handling, the offline
equivariance check and pickling; the subclasses add their argument parsing, ``forward``, shapes and ``export``.
"""
from __future__ import annotations

import copy
import json
import math
import weakref
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from escnn.group import GroupElement
from escnn.nn import FieldType, GeometricTensor
from escnn.nn.modules.equivariant_module import EquivariantModule
from torch.nn import Parameter

from .._pickling import gspace_recipe, rebuild_gspace
from ..filters import invariant_filter_index, irrep_pair_filters
from ..groups import grid_to_escnn
from ..representations import _check_memory, tensor_rep, tensor_type
from ..testing import default_tolerance, equivariance_errors
from ._fields import (
    FieldLayout,
    adopt_legacy_masters,
    check_any_types,
    check_dtype,
    check_input,
    describe_keys,
    refresh_exact_buffers,
    register_exact_buffer,
)

__all__ = ["KernelExpansionModule", "ExpansionCache", "check_gain", "peak_kernel_gain"]



def check_gain(gain) -> float:
    """``gain`` as a float if it is a finite real number >= 0 (not a bool); otherwise a ``TypeError``/``ValueError``."""
    if isinstance(gain, bool) or not isinstance(gain, (int, float, np.integer, np.floating)):
        raise TypeError(f"gain must be a finite real number >= 0, got {gain!r} of type {type(gain).__name__}")
    if not math.isfinite(gain) or gain < 0:
        raise ValueError(f"gain must be a finite real number >= 0, got {gain!r}")
    return float(gain)


def peak_kernel_gain(gram, kernel_size: int, d: int, stride: int = 1, dilation: int = 1) -> float:
    r"""Peak over input frequencies of the expected power gain of a kernel with pixel Gram matrix ``gram``.

    ``gram`` (``K^d x K^d``, pixels row-major; a numpy array or a scipy sparse matrix, symmetric) is
    :math:`G_{ss'} = E[\sum \kappa(s) \kappa(s')]` per output component. For a convolution (``stride=1,
    dilation=1``) the gain at frequency :math:`\omega` is :math:`S(\omega) = \phi^H G \phi` with
    :math:`\phi_s = e^{i\omega\cdot s}`. For a *transposed* convolution with stride ``s`` and dilation ``D``, kernel
    pixel ``j`` carries input pixel ``q`` to output pixel ``s q + D j``: the output pixels of phase
    ``r = (D j) mod s`` form an ordinary convolution of the input with the sub-kernel of the pixels of that phase
    at offsets ``(D j - r) / s``, so the power per output pixel from an input tone at :math:`\omega` is the average
    over the :math:`s^d` phases, :math:`s^{-d} \sum_r \phi_r^H G_{rr} \phi_r` (equivalently
    :math:`s^{-2d} \sum_{k} S_D((\omega + 2\pi k)/s)`, summed over the :math:`s^d` aliases).
    Returns the maximum over a grid of ``L**d`` frequencies ``2 pi m / L``, ``L = max(16, 4K)`` (holding 0 and pi
    on every axis).

    Computed exactly as the real part of the FFT of the autocorrelation :math:`A(\delta) = \sum_{r}
    \sum_{s - s' = \delta} G_{ss'}` (on a grid of side a multiple of ``L`` that holds every offset difference
    without wrapping): time ``O(nnz(G) + L^d log L)``, memory ``O(nnz(G) + L^d)``, never a frequency-by-pixel
    array.
    """
    import scipy.sparse

    K = kernel_size
    L = max(16, 4 * K)
    coo = scipy.sparse.coo_matrix(gram)
    pos = dilation * np.stack(np.meshgrid(*([np.arange(K)] * d), indexing="ij"), -1).reshape(-1, d)
    phase = pos % stride
    offsets = (pos - phase) // stride
    phase_id = phase @ (stride ** np.arange(d))
    same = phase_id[coo.row] == phase_id[coo.col]
    delta = offsets[coo.row[same]] - offsets[coo.col[same]]  # (E, d) in [-span, span]
    span = int(offsets.max()) if len(offsets) else 0
    side = L * -(-(2 * span + 1) // L)
    flat = np.ravel_multi_index(tuple((delta % side).T), (side,) * d) if len(delta) else np.zeros(0, np.int64)
    acc = np.bincount(flat, weights=coo.data[same], minlength=side**d).reshape((side,) * d)
    power = np.fft.fftn(acc).real[(slice(None, None, side // L),) * d]
    return float(power.max()) / stride**d


# ----------------------------------------------------------------------------------------------------------------
# the eval-mode cache


def _stamp(t: Optional[torch.Tensor]):
    """What identifies the current values of a parameter without reading them (no host synchronisation):
    the tensor object (weakly), its storage address, autograd's version counter, dtype, device and shape."""
    if t is None:
        return None
    return (weakref.ref(t), t.data_ptr(), t._version, t.dtype, t.device, t.shape)


def _same_stamp(saved, current: Optional[torch.Tensor]) -> bool:
    if saved is None or current is None:
        return saved is None and current is None
    ref, ptr, version, dtype, device, shape = saved
    return (
        ref() is current
        and current._version == version
        and current.data_ptr() == ptr
        and current.dtype == dtype
        and current.device == device
        and current.shape == shape
    )


class ExpansionCache:
    """Tensors expanded from some parameters, kept while the parameters are unchanged, decided without a host sync.

    :meth:`get` compares a *stamp* of each parameter with the one taken when the cached value was built: the tensor
    object itself, its storage address, autograd's version counter (``p._version``, bumped by every in-place
    operation), dtype, device and shape; it rebuilds on any difference. No value is read, so the check costs no
    device synchronisation (and works on the ``meta`` device). It sees optimiser steps, ``torch.no_grad()`` in-place
    edits, ``load_state_dict``, ``vector_to_parameters``, ``.to()`` / ``.double()`` (which also clear the cache),
    assigning a new ``Parameter`` and assigning new storage through ``p.data = ...``. It does **not** see in-place
    edits made through ``p.data`` (``p.data.mul_(2)``): ``.data`` is a tensor with its own version counter, invisible
    to autograd by design. After such an edit call ``module.eval()`` (or ``.train()``) again, which drops the cache,
    or edit under ``torch.no_grad()`` instead. A value built under ``torch.inference_mode()`` is rebuilt when used
    outside it (inference tensors cannot enter autograd, e.g. when gradients to the *input* are wanted). Inside
    ``torch.compile`` nothing is cached (the expansion is traced into the graph).
    """

    def __init__(self):
        self._stamps = None
        self._value = None
        self._inference = False

    def clear(self) -> None:
        self._stamps = None
        self._value = None
        self._inference = False

    def get(self, sources: Sequence[Optional[torch.Tensor]], build: Callable[[], object]):
        """The cached value if ``sources`` are unchanged since it was built (see the class docstring), else
        ``build()`` (run under ``no_grad``), cached."""
        sources = tuple(sources)
        saved = self._stamps
        inference = torch.is_inference_mode_enabled()
        if (
            saved is None
            or (self._inference and not inference)
            or len(saved) != len(sources)
            or not all(map(_same_stamp, saved, sources))
        ):
            with torch.no_grad():
                value = build()
            self._stamps = tuple(map(_stamp, sources))
            self._value = value
            self._inference = inference
        return self._value

    def expand_or_reuse(self, module: torch.nn.Module, expand: Callable[[], object]):
        """``expand()`` in train mode, when gradients to ``module.weights`` / ``module.bias`` are wanted (and the
        cache is dropped) or inside ``torch.compile``; otherwise the cached expansion, rebuilt whenever the
        parameters change (:meth:`get`)."""
        if torch.compiler.is_compiling():
            return expand()
        weights, bias = module.weights, module.bias
        needs_graph = torch.is_grad_enabled() and (weights.requires_grad or (bias is not None and bias.requires_grad))
        if module.training or needs_graph:
            self.clear()
            return expand()
        return self.get((weights, bias), expand)

    def __deepcopy__(self, memo):
        return ExpansionCache()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()


# ----------------------------------------------------------------------------------------------------------------
# the expansion as a gather


def pair_index(space, kernel_size: int, t_in, t_out) -> Tuple[int, np.ndarray, np.ndarray]:
    """The invariant filters of a field-type pair as kernels in escnn's layout, one (filter, value) per entry.

    ``t_in = (k_in, p_in)``, ``t_out = (k_out, p_out)``: the filters of order ``k_out + k_in`` (output indices first)
    and parity ``p_out p_in``. Returns ``(n, filt, vals)`` with ``filt`` int64 and ``vals`` float64, both of shape
    ``(d**k_out, d**k_in, kernel_size**d)`` (pixels in escnn's row-major ``(-y, x)`` / ``(-z, -y, x)`` layout, as
    torch's conv weight): basis filter ``filt[o, i, s]`` (``-1``: none) has entry ``vals[o, i, s]`` there, every other
    filter has 0. Memory ``O(kernel entries)``, never ``n x kernel``.
    """
    d = space.dimensionality
    (k_in, p_in), (k_out, p_out) = t_in, t_out
    k = k_in + k_out
    n, filt, vals = invariant_filter_index(space, kernel_size, k, p_in * p_out)
    S, T = kernel_size**d, d**k
    # escnn layout -> grid position: the relayout is a permutation of pixels, applied to the position numbers
    where = grid_to_escnn(torch.arange(S * T).view((kernel_size,) * d + (d,) * k), d, n_trailing=k)
    where = where.reshape(S, T).T.reshape(d**k_out, d**k_in, S).numpy()
    return n, filt[where], vals[where]


def _escnn_pixels(K: int, d: int) -> np.ndarray:
    """``where[s]``: the grid-layout (row-major, axis ``i`` along ``+x_i``) pixel at escnn-layout pixel ``s``."""
    return grid_to_escnn(torch.arange(K**d).view((K,) * d), d).reshape(-1).numpy()


def _rep_of(space, key, reps) -> object:
    """The escnn representation of a field key (:func:`escnn_tensor.nn._fields.field_keys`)."""
    if key[0] == "rep":
        return reps[key]
    return tensor_rep(space, key[0], key[1])


def general_pair_plan(space, kernel_size: int, rep_in, rep_out) -> dict:
    r"""The complete equivariant kernels between two escnn representations of a finite group, as an expansion plan.

    escnn writes every representation as :math:`\rho(g) = Q\, (\oplus_c \psi_c(g))\, Q^{-1}` (``change_of_basis``
    ``Q``, irreps :math:`\psi_c` in the order of ``rep.irreps``). A kernel is equivariant from ``rep_in`` to
    ``rep_out`` iff :math:`\kappa = Q_{out}\, \kappa'\, Q_{in}^{-1}` with :math:`\kappa'` equivariant between the
    direct sums of irreps, i.e. every block of :math:`\kappa'` between an input copy of :math:`\psi_u` and an output
    copy of :math:`\psi_v` is an equivariant kernel between the two irreps, whose orthonormal basis is
    :func:`escnn_tensor.filters.irrep_pair_filters` (``n_uv`` filters). Hence the basis of the pair is the union over
    copy pairs of these filters, conjugated by the changes of basis, and it is complete: ``n = sum_{copies} n_uv``
    equals :math:`|G|^{-1}\sum_g \chi_{out}(g)\chi_{in}(g) \#\{a: Ma=a\}`.

    Weights of one field pair are ordered by irrep pair ``(u, v)`` (order of first appearance of ``v`` in
    ``rep_out.irreps``, then of ``u`` in ``rep_in.irreps``), then output copy, input copy, filter.

    Returns a dict: ``n`` (weights per field pair), ``blocks`` (list of ``(start, c_out, c_in, n_uv, F)`` with
    ``F`` float64 ``(n_uv, r_out, r_in, K**d)`` in escnn's pixel layout), ``perm`` (int64 ``(D_out * D_in * K**d,)``:
    where each entry of :math:`\kappa'` sits in the concatenation of the blocks' expansions, or at its end, a zero),
    ``Q_out`` and ``Q_in_inv`` (float64) and ``gram`` (``(K**d, K**d)``, the pixel Gram matrix
    :math:`\sum_n \sum_{x,y} B_n[x,y,s] B_n[x,y,s']` of the basis in irrep coordinates).
    """
    d = space.dimensionality
    K = kernel_size
    S = K**d
    where = _escnn_pixels(K, d)
    ids_out, ids_in = [tuple(i) for i in rep_out.irreps], [tuple(i) for i in rep_in.irreps]
    size = lambda i: space.fibergroup.irrep(*i).size
    off_out = np.cumsum([0] + [size(i) for i in ids_out])
    off_in = np.cumsum([0] + [size(i) for i in ids_in])
    Dout, Din = int(off_out[-1]), int(off_in[-1])
    copies_out: Dict[tuple, List[int]] = {}
    for c, i in enumerate(ids_out):
        copies_out.setdefault(i, []).append(c)
    copies_in: Dict[tuple, List[int]] = {}
    for c, i in enumerate(ids_in):
        copies_in.setdefault(i, []).append(c)
    blocks = []
    pos = np.full((Dout, Din, S), -1, dtype=np.int64)
    gram = np.zeros((S, S))
    start = 0  # weight offset within a field pair
    length = 0  # offset in the concatenation of the blocks' expansions
    for v, cv in copies_out.items():
        for u, cu in copies_in.items():
            F = irrep_pair_filters(space, K, u, v)[..., where]
            n_uv, rv, ru = F.shape[:3]
            if n_uv == 0:
                continue
            blocks.append((start, len(cv), len(cu), n_uv, np.ascontiguousarray(F)))
            flat = F.reshape(n_uv, rv * ru, S)
            gram += len(cv) * len(cu) * np.einsum("nas,nat->st", flat, flat)
            # position of entry (copy a of v, copy b of u, p, q, s) in the block's flattened expansion
            local = np.arange(len(cv) * len(cu) * rv * ru * S).reshape(len(cv), len(cu), rv, ru, S) + length
            for a, ca in enumerate(cv):
                for b, cb in enumerate(cu):
                    pos[off_out[ca] : off_out[ca] + rv, off_in[cb] : off_in[cb] + ru] = local[a, b]
            start += len(cv) * len(cu) * n_uv
            length += local.size
    pos[pos < 0] = length  # the zero appended at the end
    Q_out = np.asarray(rep_out.change_of_basis, dtype=np.float64)
    Q_in_inv = np.asarray(rep_in.change_of_basis_inv, dtype=np.float64)
    return {"n": start, "blocks": blocks, "perm": pos.reshape(-1), "Q_out": Q_out, "Q_in_inv": Q_in_inv,
            "gram": gram, "dims": (Dout, Din)}


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
        d, sig_in, sig_out, reps = check_any_types(in_type, out_type)
        self._reps = reps  # key -> escnn representation, for fields that are not tensor fields (field_keys)
        self._all_tensor = all(key[0] != "rep" for key in list(sig_in) + list(sig_out))
        self.d = d
        self.space = in_type.gspace
        self.in_type = in_type
        self.out_type = out_type
        return d, sig_in, sig_out

    def _build(self, sig_in: list, sig_out: list, bias: bool, initialize: bool) -> None:
        for name, flag in (("bias", bias), ("initialize", initialize)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        sizes = {key: _rep_of(self.space, key, self._reps).size for key in set(sig_in) | set(sig_out)}
        self._fields_in = FieldLayout(sig_in, self.d, sizes)
        self._fields_out = FieldLayout(sig_out, self.d, sizes)
        self._cache = ExpansionCache()
        self._build_kernel_plan()
        self._build_bias_plan(bias)
        if initialize:
            self.reset_parameters()

    def _add_basis(self, name: str, basis64: torch.Tensor) -> None:
        """A non-persistent floating buffer with its float64 original kept as a buffer (:func:`register_exact_buffer`)."""
        register_exact_buffer(self, name, basis64)

    def _build_kernel_plan(self) -> None:
        """One slice of ``weights`` per pair (in type, out type); the gather index/value of every kernel entry.

        Buffers: ``_kernel_index`` int64 and ``_kernel_value`` (float; float64 master) of the dense kernel's shape
        ``(C_out, C_in, K^d)`` (``(C_in, C_out, K^d)`` for a transposed layer), channels in the FieldTypes' order;
        a zero entry has index 0 and value 0. Also the pixel Gram matrix per output type (sparse) for
        :meth:`_peak_gain`.
        """
        import scipy.sparse

        fi, fo = self._fields_in, self._fields_out
        K, d = self.kernel_size, self.d
        S = K**d
        C_out, C_in = len(fo.order), len(fi.order)
        call = f"{type(self).__name__}({self._describe()}, K={K})"
        _check_memory(call, 24.0 * C_out * C_in * S, f"index, value and kernel for {C_out} x {C_in} x {K}^{d} entries")
        index = np.full((C_out, C_in, S), -1, dtype=np.int64)
        value = np.zeros((C_out, C_in, S), dtype=np.float64)
        out_start = np.cumsum([0] + [m * dim for m, dim in zip(fo.count, fo.dim)])
        in_start = np.cumsum([0] + [m * dim for m, dim in zip(fi.count, fi.dim)])
        self._pairs = []  # per out type: list of (has filters, offset, m_out, m_in, n)
        self._grams = []  # per out type: sparse (K^d, K^d) pixel Gram matrix, sum over in types of m_in B^T B / dim
        self._general = []  # per pair with a field that is not a tensor field: names of its buffers (_expand_general)
        offset = 0
        for to, t_out in enumerate(fo.types):
            row = []
            gram = scipy.sparse.csr_matrix((S, S))
            rows = fo.order[out_start[to] : out_start[to + 1]]
            for ti, t_in in enumerate(fi.types):
                m_out, m_in = fo.count[to], fi.count[ti]
                cols = fi.order[in_start[ti] : in_start[ti + 1]]
                if t_in[0] == "rep" or t_out[0] == "rep":
                    n = self._add_general_pair(to, ti, t_in, t_out, offset, m_out, m_in, rows, cols)
                    if n > 0:
                        gram = gram + scipy.sparse.csr_matrix(m_in * self._general[-1]["gram"])
                    row.append((n > 0, offset, m_out, m_in, n))
                    offset += m_out * m_in * n
                    continue
                n, filt, vals = pair_index(self.space, K, t_in, t_out)  # (do, di, S)
                if n > 0:
                    do, di = filt.shape[:2]
                    a = np.arange(m_out).reshape(-1, 1, 1, 1, 1)
                    b = np.arange(m_in).reshape(1, 1, -1, 1, 1)
                    f = filt[None, :, None]  # (1, do, 1, di, S)
                    idx = np.where(f >= 0, offset + (a * m_in + b) * n + f, -1)
                    index[rows[:, None], cols[None, :]] = idx.reshape(m_out * do, m_in * di, S)
                    value[rows[:, None], cols[None, :]] = np.broadcast_to(
                        vals[None, :, None], (m_out, do, m_in, di, S)
                    ).reshape(m_out * do, m_in * di, S)
                    o, i, s_ = np.nonzero(filt >= 0)
                    # one row per (o, i, filter) that has entries: B[n, o, i, :] over the pixels
                    keys, key_row = np.unique((o * di + i) * n + filt[o, i, s_], return_inverse=True)
                    mat = scipy.sparse.csr_matrix((vals[o, i, s_], (key_row.reshape(-1), s_)), shape=(len(keys), S))
                    gram = gram + m_in * (mat.T @ mat)
                row.append((n > 0, offset, m_out, m_in, n))
                offset += m_out * m_in * n
            self._pairs.append(row)
            self._grams.append(gram / fo.dim[to])
        if offset == 0:
            raise ValueError(
                f"there is no nonzero equivariant kernel of size {self.kernel_size} from in_type to out_type "
                f"({self._describe()}); the layer would be constant. Use a larger kernel_size or other field types."
            )
        index[index < 0] = 0  # value 0 there
        self.weights = Parameter(torch.zeros(offset))
        if self._transposed:
            index, value = index.transpose(1, 0, 2), value.transpose(1, 0, 2)
        self._kernel_shape = index.shape[:2] + (K,) * d
        self.register_buffer("_kernel_index", torch.from_numpy(np.ascontiguousarray(index).reshape(-1)), persistent=False)
        self._add_basis("_kernel_value", torch.from_numpy(np.ascontiguousarray(value)).view(self._kernel_shape))

    def _describe(self) -> str:
        """``'<in fields> -> <out fields>'`` in runs (for messages)."""
        from ._fields import field_keys

        return f"{describe_keys(field_keys(self.in_type)[0])} -> {describe_keys(field_keys(self.out_type)[0])}"

    def _add_general_pair(self, to, ti, t_in, t_out, offset, m_out, m_in, rows, cols) -> int:
        """Plan and buffers of a field-type pair with a field that is not a tensor field (:func:`general_pair_plan`);
        returns the number of weights per field pair. Its kernel block is written by :meth:`_expand_general`."""
        K, d = self.kernel_size, self.d
        rep_in, rep_out = _rep_of(self.space, t_in, self._reps), _rep_of(self.space, t_out, self._reps)
        Dout, Din = rep_out.size, rep_in.size
        _check_memory(
            f"{type(self).__name__}({self._describe()}, K={K})",
            32.0 * (m_out * m_in + 1) * Dout * Din * K**d,
            f"a {rep_in.name} -> {rep_out.name} kernel block and its plan, {m_out} x {m_in} x {Dout} x {Din} x {K}^{d}",
        )
        plan = general_pair_plan(self.space, K, rep_in, rep_out)
        if plan["n"] == 0:
            return 0
        g = len(self._general)
        names = {"offset": offset, "m_out": m_out, "m_in": m_in, "n": plan["n"], "dims": (Dout, Din),
                 "gram": plan["gram"], "blocks": []}
        for b, (start, c_out, c_in, n_uv, F) in enumerate(plan["blocks"]):
            name = f"_general_{g}_F{b}"
            self._add_basis(name, torch.from_numpy(F))
            names["blocks"].append((start, c_out, c_in, n_uv, name))
        for key, arr in (("Q_out", plan["Q_out"]), ("Q_in_inv", plan["Q_in_inv"])):
            self._add_basis(f"_general_{g}_{key}", torch.from_numpy(np.ascontiguousarray(arr)))
        self.register_buffer(f"_general_{g}_perm", torch.from_numpy(plan["perm"]), persistent=False)
        r, c = (cols, rows) if self._transposed else (rows, cols)
        self.register_buffer(f"_general_{g}_rows", torch.from_numpy(np.ascontiguousarray(r[:, None])), persistent=False)
        self.register_buffer(f"_general_{g}_cols", torch.from_numpy(np.ascontiguousarray(c[None, :])), persistent=False)
        self._general.append(names)
        return plan["n"]

    def _expand_general(self, kernel: torch.Tensor) -> torch.Tensor:
        """Write the kernel blocks of the pairs with fields that are not tensor fields into ``kernel``:
        :math:`Q_{out} \kappa' Q_{in}^{-1}`, :math:`\kappa'` expanded in the irrep-pair filters
        (:func:`general_pair_plan`; one small einsum per irrep pair, one gather, two products)."""
        S = self.kernel_size**self.d
        for g, p in enumerate(self._general):
            m_out, m_in, n = p["m_out"], p["m_in"], p["n"]
            Dout, Din = p["dims"]
            W = self.weights[p["offset"] : p["offset"] + m_out * m_in * n].view(m_out, m_in, n)
            parts = []
            for start, c_out, c_in, n_uv, name in p["blocks"]:
                w = W[:, :, start : start + c_out * c_in * n_uv].reshape(m_out, m_in, c_out, c_in, n_uv)
                parts.append(torch.einsum("abvun,npqs->abvupqs", w, getattr(self, name)).reshape(m_out, m_in, -1))
            parts.append(W.new_zeros(m_out, m_in, 1))
            irr = torch.cat(parts, -1).index_select(2, getattr(self, f"_general_{g}_perm"))
            irr = irr.view(m_out, m_in, Dout, Din, S)
            Q_out, Q_in_inv = getattr(self, f"_general_{g}_Q_out"), getattr(self, f"_general_{g}_Q_in_inv")
            block = torch.einsum("xX,abXYs,Yy->axbys", Q_out, irr, Q_in_inv)
            block = block.reshape((m_out * Dout, m_in * Din) + (self.kernel_size,) * self.d)
            if self._transposed:
                block = block.transpose(0, 1)
            kernel = kernel.index_put((getattr(self, f"_general_{g}_rows"), getattr(self, f"_general_{g}_cols")), block)
        return kernel

    def _build_bias_plan(self, bias: bool) -> None:
        """``bias`` (flat, ``(m_out, n_b)`` per out type) and the gather index/value of the dense bias ``(C_out,)``."""
        self._bias_blocks = []  # per out type: (has a bias, offset, m_out, n)
        fo = self._fields_out
        C_out = len(fo.order)
        index = np.full(C_out, -1, dtype=np.int64)
        value = np.zeros(C_out, dtype=np.float64)
        start = np.cumsum([0] + [m * dim for m, dim in zip(fo.count, fo.dim)])
        offset = 0
        self._general_bias = []  # (offset, m_out, n, name of Q[:, trivial copies], name of the rows)
        for to, t_out in enumerate(fo.types):
            m_out = fo.count[to]
            if t_out[0] == "rep":
                rep = self._reps[t_out]
                sizes = [self.space.fibergroup.irrep(*i).size for i in rep.irreps]
                starts_ = np.cumsum([0] + sizes)
                triv = [int(starts_[c]) for c, i in enumerate(rep.irreps)
                        if self.space.fibergroup.irrep(*i).is_trivial()] if bias else []
                n = len(triv)
                if n > 0:
                    g = len(self._general_bias)
                    Q = np.asarray(rep.change_of_basis, dtype=np.float64)[:, triv]
                    self._add_basis(f"_general_bias_{g}_Q", torch.from_numpy(np.ascontiguousarray(Q)))
                    rows = fo.order[start[to] : start[to + 1]]
                    self.register_buffer(f"_general_bias_{g}_rows", torch.from_numpy(rows.copy()), persistent=False)
                    self._general_bias.append((offset, m_out, n))
                self._bias_blocks.append((n > 0, offset, m_out, n))
                offset += m_out * n
                continue
            n, filt, vals = invariant_filter_index(self.space, 1, t_out[0], t_out[1]) if bias else (0, None, None)
            if n > 0:
                rows = fo.order[start[to] : start[to + 1]]
                a = np.arange(m_out)[:, None]
                index[rows] = np.where(filt[None] >= 0, offset + a * n + filt[None], -1).reshape(-1)
                value[rows] = np.broadcast_to(vals[None], (m_out, len(vals))).reshape(-1)
            self._bias_blocks.append((n > 0, offset, m_out, n))
            offset += m_out * n
        if offset > 0:
            self.bias = Parameter(torch.zeros(offset))
            index[index < 0] = 0  # value 0 there
            self.register_buffer("_bias_index", torch.from_numpy(index), persistent=False)
            self._add_basis("_bias_value", torch.from_numpy(value))
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
        gram = self._grams[to]
        stride, dilation = self._gain_geometry()
        return peak_kernel_gain(gram, self.kernel_size, self.d, stride, dilation)

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
            if not any(has for has, *_ in row):
                continue
            std = math.sqrt(gain / self._peak_gain(to))
            for _, off, m_out, m_in, n in row:
                size = m_out * m_in * n
                if size:
                    w = torch.randn(size, generator=generator, dtype=torch.float64) * std
                    self.weights[off : off + size] = w.to(self.weights)
        if self.bias is not None:
            self.bias.zero_()

    # ---- expansion ----------------------------------------------------------------------------------------------

    def _expand_kernel(self) -> torch.Tensor:
        """Dense kernel from ``weights`` (one gather and one product): ``(C_out, C_in, K..)``, or
        ``(C_in, C_out, K..)`` for a transposed layer (torch's ``conv_transpose`` weight layout). Blocks of fields
        that are not tensor fields are written by :meth:`_expand_general`."""
        kernel = self.weights.index_select(0, self._kernel_index).view(self._kernel_shape) * self._kernel_value
        if getattr(self, "_general", None):
            kernel = self._expand_general(kernel)
        return kernel

    def _expand_bias(self) -> Optional[torch.Tensor]:
        """Dense bias ``(out_type.size,)`` from ``bias`` (one gather; fields that are not tensor fields: ``Q b`` on
        the trivial copies of their irreps), or ``None``."""
        if self.bias is None:
            return None
        out = self.bias.index_select(0, self._bias_index) * self._bias_value
        for g, (offset, m_out, n) in enumerate(getattr(self, "_general_bias", ())):
            b = self.bias[offset : offset + m_out * n].view(m_out, n)
            vals = (b @ getattr(self, f"_general_bias_{g}_Q").t()).reshape(-1)
            out = out.index_put((getattr(self, f"_general_bias_{g}_rows"),), vals)
        return out

    def expand_parameters(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The dense kernel (torch's weight layout of the layer) and bias ``(C_out,)`` (or ``None``), freshly
        expanded from the current parameters."""
        return self._expand_kernel(), self._expand_bias()

    def _export_as(self, conv_cls: type, **options) -> torch.nn.Module:
        """A ``conv_cls(C_in, C_out, kernel_size, **options)`` torch layer holding the current expanded kernel and
        bias (same dtype and device); this layer's mode is unchanged."""
        with torch.no_grad():
            kernel, bias = self.expand_parameters()
            conv = conv_cls(self.in_type.size, self.out_type.size, self.kernel_size, bias=bias is not None,
                            device=kernel.device, dtype=kernel.dtype, **options)
            conv.weight.copy_(kernel)
            if bias is not None:
                conv.bias.copy_(bias)
        return conv

    def _kernel_and_bias(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Train mode, or gradients to the weights wanted: expand. Eval mode otherwise: the cached expansion, rebuilt
        whenever ``weights`` / ``bias`` change (:class:`ExpansionCache`: version counters, no value read)."""
        return self._cache.expand_or_reuse(self, self.expand_parameters)

    def train(self, mode: bool = True):
        """Set the mode; the eval-mode kernel cache is dropped either way (it is rebuilt on the next eval forward)."""
        self._cache.clear()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        # .to() / .double() / .half() ...: the basis buffers are re-rounded from their float64 originals (buffers on
        # the same device), so a float32 -> float64 round trip gives the exact basis back.
        out = super()._apply(fn, *args, **kwargs)
        refresh_exact_buffers(self)
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

    # ---- the state dict records what the weights are coefficients of ------------------------------------------------

    def _state_description(self) -> dict:
        """What ``weights`` / ``bias`` are coefficients of: the layer class, gspace, kernel size and field types."""
        def fields(field_type):
            return [f"k={key[0]},p={key[1]:+d}" if key[0] != "rep" else key[1] for key in self._signature(field_type)]

        return {"layer": type(self).__name__, "gspace": self.space.name, "kernel_size": self.kernel_size,
                "in_fields": fields(self.in_type), "out_fields": fields(self.out_type)}

    def get_extra_state(self) -> torch.Tensor:
        """The state dict's ``_extra_state``: :meth:`_state_description` as JSON in a uint8 tensor (a tensor, so every
        consumer of state dicts that expects tensors keeps working)."""
        text = json.dumps(self._state_description(), sort_keys=True)
        return torch.tensor(list(text.encode()), dtype=torch.uint8)

    def set_extra_state(self, state) -> None:
        """Refuse (``ValueError``) a state dict made for another layer class, gspace, kernel size or field types: the
        weights are coefficients of a basis specific to them, so they would load without error and mean something
        else (e.g. a vector layer's weights in a pseudovector layer, fields reordered, a transposed convolution's
        weights in a convolution)."""
        saved = json.loads(bytes(torch.as_tensor(state).to("cpu", torch.uint8).tolist()).decode())
        mine = self._state_description()
        if saved != mine:
            diff = [f"{key}: saved {saved.get(key)!r}, this layer {mine[key]!r}" for key in mine
                    if saved.get(key) != mine[key]]
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state dict was made for a different layer ("
                + "; ".join(diff) + "). Its weights are coefficients of a basis specific to the layer class, kernel "
                "size and field types, so they cannot be loaded here; build the layer with the types it was saved "
                "with."
            )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # state dicts saved before the field types were stored have no _extra_state: load them as before
        key = prefix + "_extra_state"
        had = key in state_dict
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if not had and key in missing_keys:
            missing_keys.remove(key)

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
        if not getattr(self, "_all_tensor", True):  # escnn's types pickle through escnn_tensor._pickling
            state["_types"] = (self.space, self.in_type, self.out_type)
            return state
        state["_recipe"] = (
            gspace_recipe(self.space),
            [tuple(key) for key in self._signature(self.in_type)],
            [tuple(key) for key in self._signature(self.out_type)],
        )
        return state

    @staticmethod
    def _signature(field_type):
        from ._fields import field_keys

        return field_keys(field_type)[0]

    def __setstate__(self, state):
        state = dict(state)
        if "_types" in state:
            state["space"], state["in_type"], state["out_type"] = state.pop("_types")
            state["_cache"] = ExpansionCache()
            super().__setstate__(state)
            return
        gs_recipe, sig_in, sig_out = state.pop("_recipe")
        gs = rebuild_gspace(gs_recipe)
        state["space"] = gs
        state["in_type"] = tensor_type(gs, [(k, p, 1) for k, p in sig_in])
        state["out_type"] = tensor_type(gs, [(k, p, 1) for k, p in sig_out])
        state["_cache"] = ExpansionCache()  # (states pickled before the cache class held ``_cache = None``)
        legacy = state.pop("_master", None)  # pickled before the float64 originals were buffers
        super().__setstate__(state)
        if legacy:
            adopt_legacy_masters(self, legacy)

    def _repr_tail(self) -> str:
        return (", bias=None" if self.bias is None else "") + f", weights={self.weights.numel()}"
