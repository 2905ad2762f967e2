r"""``TensorProductNonLinearity``: every equivariant quadratic pixelwise map between FieldTypes of tensor fields.

Math
----
For input fields :math:`a` of type :math:`(k_a, p_a)`, :math:`b` of type :math:`(k_b, p_b)` and an output field of
type :math:`(k_o, p_o)`, a bilinear map :math:`B: \mathbb{R}^{d^{k_a}} \times \mathbb{R}^{d^{k_b}} \to
\mathbb{R}^{d^{k_o}}` is an order :math:`k_o + k_a + k_b` tensor :math:`B[O, A, B']`, and it is equivariant,
:math:`B(\rho_a x, \rho_b y) = \rho_o B(x, y)`, iff :math:`B` is invariant under
:math:`\rho_o \otimes \rho_a \otimes \rho_b = \rho_{k_o + k_a + k_b,\, p_o p_a p_b}` (the representations are
orthogonal): the space is spanned by ``invariant_filters(gspace, 1, k_o + k_a + k_b, p_o p_a p_b)``.

A quadratic map of the input :math:`(x_1, .., x_F)` is a sum of bilinear maps of *unordered* pairs of fields, so a
complete and non-redundant parametrisation is:

- a pair of fields of different types, or two different fields of the same type (:math:`i < j`): every
  invariant tensor of order :math:`k_o + k_a + k_b`;
- a field with itself: only the part symmetric in :math:`(A, B')` matters; its invariant tensors span the
  equivariant maps on :math:`\mathrm{Sym}^2(\mathbb{R}^{d^k})`, whose dimension is
  :math:`\frac{1}{|G|}\sum_g \chi_o(g) \frac{\chi_a(g)^2 + \chi_a(g^2)}{2}`.

Symmetric and symmetric traceless fields (``tensor_rep(gspace, k, parity, symmetry)``) are subspaces of the full
tensors, embedded isometrically by :math:`E` (:func:`escnn_tensor.representations.symmetric_basis`,
:math:`E^T E = I`, :math:`\rho_{k,p}(g) E = E \rho'(g)`). For a type triple with such a field the invariant tensors
of the full types are restricted, :math:`B' = E_o^T B (E_a \otimes E_b)`, and an orthonormal basis of their span is
kept (Gram-Schmidt, dependent ones dropped). That span is every equivariant bilinear map between the subspaces: such
a :math:`B'` extends to the equivariant :math:`E_o B' (E_a^T \otimes E_b^T)` of the full tensors, which restricts back
to :math:`B'`. The counts above hold with the characters of the symmetric representations.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from escnn.nn import FieldType, GeometricTensor
from scipy.linalg import solve_triangular
from scipy.sparse.csgraph import connected_components
from torch.nn import Parameter

from .. import representations as _reps
from ..filters import invariant_filters, num_invariant_filters
from ._field_ops import TensorFieldModule, TypeGroups
from ._fields import bias_basis, check_any_types, check_tensor_fields
from ._kernel import ExpansionCache, check_gain

__all__ = ["TensorProductNonLinearity", "NoQuadraticMapError"]


class NoQuadraticMapError(ValueError):
    """Raised by :class:`TensorProductNonLinearity` when no nonzero equivariant quadratic map exists between its
    types (the layer would be zero); a ``ValueError``."""

_ENTRY_BYTES = 64  # working memory per (coefficient, weight) entry while the layer is built (8 int64/float64 arrays)
_CHUNK_BYTES = 2**22  # forward: pairwise products are formed for at most this many bytes (x3) at once, cache-sized


def _symmetric_basis(F: np.ndarray, symmetrize: bool = True) -> np.ndarray:
    """Orthonormal basis of the span of the parts of ``F`` (``(n, D_o, D, D)``) symmetric in the last two axes
    (``symmetrize=False``: of the rows of ``F`` themselves, ``(n, D_o, D_a, D_b)``).

    Gram-Schmidt in the order of ``F`` (as an incremental Cholesky factorisation of the Gram matrix that drops
    dependent rows), run separately on each group of rows connected by nonzero inner products: rows that are
    orthogonal or parallel (the orbit sums of ``invariant_filters``) give sparse results, fast. Returns
    ``(r, D_o, D, D)``, rows in the order of the first row of ``F`` they come from.
    """
    n = F.shape[0]
    S = 0.5 * (F + F.swapaxes(2, 3)) if symmetrize else F
    rows = sp.csr_matrix(S.reshape(n, -1))
    G = (rows @ rows.T).toarray()
    _, label = connected_components(sp.csr_matrix(np.abs(G) > 1e-12), directed=False)
    out: List[Tuple[int, np.ndarray]] = []
    for comp in np.unique(label):
        idx = np.flatnonzero(label == comp)
        kept: List[int] = []
        L = np.zeros((len(idx), len(idx)))
        for j in idx:
            if G[j, j] <= 1e-10:
                continue
            r = len(kept)
            l = solve_triangular(L[:r, :r], G[kept, j], lower=True) if r else np.zeros(0)
            res = G[j, j] - l @ l
            if res > 1e-10 * G[j, j]:
                L[r, :r] = l
                L[r, r] = math.sqrt(res)
                kept.append(j)
        if kept:
            r = len(kept)
            Linv = np.linalg.inv(L[:r, :r])  # r is the size of one group: tiny for orbit sums
            Q = np.asarray((rows[kept].T @ Linv.T).T)
            out.extend(zip(kept, Q))
    if not out:
        return np.zeros((0,) + F.shape[1:])
    out.sort(key=lambda t: t[0])
    Q = np.stack([q for _, q in out])
    Q[np.abs(Q) < 1e-14] = 0.0
    return Q.reshape((len(out),) + F.shape[1:])


def _describe(t) -> str:
    """``(k, parity)`` or ``(k, parity, symmetry)`` as text (for messages)."""
    return f"(k={t[0]}, parity={t[1]:+d}" + (f", {t[2]})" if len(t) == 3 else ")")


def _embedding(d: int, t) -> Optional[np.ndarray]:
    """The isometric embedding ``E`` (``(d**k, n)``, :func:`escnn_tensor.representations.symmetric_basis`) of a field
    type ``(k, parity, symmetry)`` into the full tensors; ``None`` for a full type ``(k, parity)``."""
    return None if len(t) == 2 else _reps.symmetric_basis(d, t[0], t[2])


def _restrict(F: np.ndarray, embeddings) -> np.ndarray:
    r"""An orthonormal basis of the bilinear maps ``E_o^T B (E_a x E_b)``, ``B`` in the span of the rows of ``F``
    (``(n, d^{k_o}, d^{k_a}, d^{k_b})``), for the embeddings ``(E_o, E_a, E_b)`` (``None``: the identity).

    ``F`` spans the equivariant bilinear maps of the full tensors, and the restriction is onto: an equivariant
    ``B'`` between the subspaces extends to ``E_o B' (E_a^T x E_b^T)``, equivariant since ``rho(g) E = E rho'(g)``
    and :math:`E^T 
ho(g) = 
ho'(g) E^T` (orthogonal representations), and restricts back to ``B'``. So the
    result spans the equivariant bilinear maps between the subspaces. Returns ``(r, n_o, n_a, n_b)``.
    """
    for axis, E in enumerate(embeddings, start=1):
        if E is not None:
            F = np.moveaxis(np.tensordot(F, E, axes=([axis], [0])), -1, axis)
    F[np.abs(F) < 1e-14] = 0.0
    return _symmetric_basis(F, symmetrize=False)


class TensorProductNonLinearity(TensorFieldModule):
    r"""Complete equivariant quadratic layer: :math:`y = Q(x)` (+ an optional invariant bias), pixel by pixel.

    :math:`Q` ranges over **every** equivariant quadratic map from the fields of ``in_type`` to those of
    ``out_type`` (see the module docs): for each output type :math:`o` and each pair of input types
    :math:`a \le b` (types numbered in order of first appearance in ``in_type``) the weights are

    - :math:`a < b`: ``(m_o, m_a, m_b, n)``, with :math:`n` invariant tensors of order :math:`k_o + k_a + k_b` and
      parity :math:`p_o p_a p_b`;
    - :math:`a = b` (:math:`m` fields): ``(m_o, m(m-1)/2, n)`` for the pairs :math:`i < j` (``numpy.triu_indices``
      order), then ``(m_o, m, r)`` for each field with itself, with :math:`r` the symmetric invariants;

    concatenated in that order into the flat parameter ``weights`` (``weight_layout`` lists the blocks as
    ``(out type, type a, type b, 'pairs' | 'self', offset, shape)``); their number equals the dimension of the space
    of equivariant quadratic maps (character formula), so the parametrisation is complete and free of redundancy.
    The optional ``bias`` lies in the invariant subspace of every output field (as in ``GeometricConv``).

    Computation: the weights are expanded (one ``index_add``) into the coefficients ``(C_out, npairs)`` of the
    monomials :math:`x_c x_{c'}` (:math:`c \le c'`) that can occur; the forward pass forms those products for a
    block of pixels (about 4 MiB of them, so the temporaries stay in cache) and multiplies by the coefficients:
    cost :math:`C_{out} \cdot npairs` multiply-adds per pixel, :math:`npairs \le C_{in}(C_{in}+1)/2`. The expansion
    is recomputed in train mode (or when gradients to the weights are needed) and cached in eval mode.

    Initialisation (:meth:`reset_parameters`): weights into output type :math:`o` i.i.d.
    :math:`N(0, \sigma_o^2)` with :math:`\sigma_o^2 = gain \cdot d^{k_o} / \sum_w g_w` (sum over the weights into
    one output field), :math:`g_w = \mathbb{E}|B_w(x, x')|^2 / v^2` for inputs with i.i.d. :math:`N(0, v)`
    components (:math:`g = 1` for a pair of distinct fields, :math:`2 + \sum_O (\mathrm{tr}\,S_O)^2` for a
    symmetric :math:`S` on one field). Then the expected mean square of every output component is
    :math:`gain \cdot v^2`: the input variance squared. The bias starts at 0.

    Size limit: building the layer takes the dense invariant tensors of one type triple at a time
    (:math:`n \cdot d^{k_o + k_a + k_b}` floats) and about 64 bytes per (coefficient, weight) entry (for the
    orbit-sum bases at most :math:`m_o \cdot (\text{field pairs}) \cdot d^{k_o + k_a + k_b}` per block); both are
    computed before they are allocated, and a ``ValueError`` naming the size is raised above
    ``escnn_tensor.representations.MEMORY_LIMIT_BYTES`` (2 GiB by default). With :math:`B_3` every combination of
    fields up to order 3 fits (order-9 invariants: 813 tensors of :math:`3^9` entries, 128 MB), and with :math:`B_2`
    fields up to order 4; refused are e.g. :math:`B_3` with order-4 fields (88 GiB), :math:`B_2` with order-6 fields
    (128 GiB) and the trivial group in 3D with order-3 fields (order 9: 2.9 GiB).

    Args:
        in_type: FieldType of tensor fields: full, symmetric or symmetric traceless (``tensor_rep(..., symmetry)``),
            mixed; escnn's other fields (regular, irreps, ...) raise ``ValueError`` naming
            ``escnn.nn.TensorProductModule``.
        out_type: FieldType of such tensor fields on the same gspace (default: ``in_type``).
        bias: learn an invariant bias (default ``False``: a pure quadratic map).
        initialize: draw the weights as above (otherwise they are zero).

    Shapes: ``(B, in_type.size, *S)`` -> ``(B, out_type.size, *S)``.
    """

    def __init__(
        self,
        in_type: FieldType,
        out_type: Optional[FieldType] = None,
        bias: bool = False,
        initialize: bool = True,
    ):
        super().__init__()
        if out_type is None:
            out_type = in_type
        d, sig_in, sizes = check_tensor_fields(in_type, "in_type", "TensorProductNonLinearity")
        _, sig_out, sizes_out = check_tensor_fields(out_type, "out_type", "TensorProductNonLinearity")
        check_any_types(in_type, out_type)  # the same gspace
        sizes.update(sizes_out)
        self._sizes = None
        self.d, self.in_type, self.out_type = d, in_type, out_type
        for name, flag in (("bias", bias), ("initialize", initialize)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        self.space = in_type.gspace
        gi = TypeGroups(sig_in, d, sizes=sizes)
        go = TypeGroups(sig_out, d, sizes=sizes)
        self._build(gi, go)
        self._build_bias(go, bias)
        self._cache = ExpansionCache()
        if initialize:
            self.reset_parameters()

    # ---- construction -----------------------------------------------------------------------------------------------

    def _call(self) -> str:
        return f"TensorProductNonLinearity({self.in_type.gspace.name}, {self.in_type.size} -> {self.out_type.size} channels)"

    def _build(self, gi: TypeGroups, go: TypeGroups) -> None:
        d, C = self.d, self.in_type.size
        gs = self.in_type.gspace
        parts = []  # per weight block: (rows, c1, c2, weight index, value) entry arrays (broadcast views)
        gains: List[np.ndarray] = []  # per weight: E|B_w(x, x')|^2 / v^2
        std_groups = []  # (weight offset, size, out type)
        n_entries = 0
        offset = 0
        self.weight_layout: List[Tuple] = []  # (out type, in type a, in type b, kind, offset, shape)

        def add(o, a, b, kind, ch_o, c1, c2, basis, gain, shape):
            """One weight block ``(m_o, pairs, n)``: field pair ``q`` has channels ``c1[q]`` (first argument) and
            ``c2[q]``; the coefficient of ``x_c1 x_c2`` in output channel ``ch_o[f, O]`` gets ``w * basis[O, A, B]``."""
            nonlocal offset, n_entries
            z = np.nonzero(basis)
            m_o, pairs, n = ch_o.shape[0], c1.shape[0], basis.shape[0]
            size = m_o * pairs * len(z[0])
            _reps._check_memory(
                self._call(), float(_ENTRY_BYTES) * (n_entries + size),
                f"{_ENTRY_BYTES} bytes for each of {n_entries + size} (coefficient, weight) entries so far",
            )
            idx = offset + np.arange(m_o * pairs * n).reshape(m_o, pairs, n)
            full = (m_o, pairs, len(z[0]))
            parts.append((
                np.broadcast_to(ch_o[:, z[1]][:, None, :], full),
                np.broadcast_to(c1[:, z[2]][None], full),
                np.broadcast_to(c2[:, z[3]][None], full),
                idx[..., z[0]],
                np.broadcast_to(basis[z], full),
            ))
            gains.append(np.broadcast_to(gain, idx.shape).reshape(-1))
            self.weight_layout.append((o, a, b, kind, offset, shape))
            offset += idx.size
            n_entries += size

        for o, t_o in enumerate(go.types):
            ko, po = t_o[:2]
            ch_o = go.channels(o)  # (m_o, D_o)
            m_o, D_o = ch_o.shape
            start_o = offset
            for a, t_a in enumerate(gi.types):
                ka, pa = t_a[:2]
                for b in range(a, len(gi.types)):
                    t_b = gi.types[b]
                    kb, pb = t_b[:2]
                    K, p = ko + ka + kb, po * pa * pb
                    n = num_invariant_filters(gs, 1, K, p)
                    if n == 0:
                        continue
                    _reps._check_memory(
                        self._call(), 8.0 * n * d**K,
                        f"{n} dense invariant tensors of order {K} ({d}^{K} entries each) for output type "
                        f"{_describe(t_o)} from input types {_describe(t_a)} x {_describe(t_b)}",
                    )
                    F = invariant_filters(gs, 1, K, p).numpy().reshape(n, d**ko, d**ka, d**kb)
                    if len(t_o) + len(t_a) + len(t_b) > 6:  # a symmetric field: restrict to its subspace
                        F = _restrict(F, [_embedding(d, t) for t in (t_o, t_a, t_b)])
                        n = F.shape[0]
                        if n == 0:
                            continue
                    norms = (F.reshape(n, -1) ** 2).sum(1)  # 1: the invariant tensors are orthonormal
                    ch_a, ch_b = gi.channels(a), gi.channels(b)
                    m_a, m_b = ch_a.shape[0], ch_b.shape[0]
                    if a < b:  # every pair of fields (i, j), i of type a, j of type b, i major
                        i, j = np.divmod(np.arange(m_a * m_b), m_b)
                        add(o, a, b, "pairs", ch_o, ch_a[i], ch_b[j], F, norms, (m_o, m_a, m_b, n))
                        continue
                    if m_a >= 2:  # two different fields of the same type, i < j
                        i, j = np.triu_indices(m_a, 1)
                        add(o, a, b, "pairs", ch_o, ch_a[i], ch_a[j], F, norms, (m_o, len(i), n))
                    S = _symmetric_basis(F)  # a field with itself
                    if S.shape[0]:
                        tr = np.einsum("roaa->ro", S)
                        g = 2.0 * (S.reshape(len(S), -1) ** 2).sum(1) + (tr**2).sum(1)
                        add(o, a, b, "self", ch_o, ch_a, ch_a, S, g, (m_o, m_a, len(S)))
            if offset > start_o:
                std_groups.append((start_o, offset - start_o, o))
        if offset == 0:
            raise NoQuadraticMapError(
                f"there is no nonzero equivariant quadratic map from in_type {gi.types} to out_type {go.types} "
                f"(distinct (k, parity) types); the layer would be zero. Use other field types."
            )
        row, c1, c2, w, val = (np.concatenate([part[i].reshape(-1) for part in parts]) for i in range(5))
        parts.clear()
        lo, hi = np.minimum(c1, c2), np.maximum(c1, c2)
        # merge repeated (output channel, monomial, weight) entries, then drop those that cancel
        if float(self.out_type.size) * C * C * offset >= 2**62:
            raise ValueError(f"{self._call()}: {offset} weights on {C} input channels is too large to index")
        key = (row * C + lo) * C + hi
        uk, inv = np.unique(key * offset + w, return_inverse=True)
        val = np.bincount(inv, weights=val, minlength=len(uk))
        keep = np.abs(val) > 1e-13
        uk, val = uk[keep], val[keep]
        w = uk % offset
        key = uk // offset
        pair_key, pair_id = np.unique(key % (C * C), return_inverse=True)
        self.n_pairs = len(pair_key)
        row = key // (C * C)
        self.register_buffer("_flat", torch.from_numpy(row * self.n_pairs + pair_id), persistent=False)
        self.register_buffer("_widx", torch.from_numpy(w), persistent=False)
        self._add_exact_buffer("_vals", torch.from_numpy(val))
        self.register_buffer("_pi", torch.from_numpy(pair_key // C), persistent=False)
        self.register_buffer("_pj", torch.from_numpy(pair_key % C), persistent=False)
        self.weights = Parameter(torch.zeros(offset))
        # initialisation scale per output type
        gain = np.concatenate(gains)
        std = np.zeros(offset)
        for start, size, o in std_groups:
            total = gain[start : start + size].sum() / go.count[o]  # weights into one output field
            std[start : start + size] = math.sqrt(go.dim[o] / total)
        self._std = std

    def _build_bias(self, go: TypeGroups, bias: bool) -> None:
        rows, cols, vals = [], [], []
        offset = 0
        gs = self.in_type.gspace
        if bias:
            for o, t in enumerate(go.types):
                if len(t) == 2:
                    basis = bias_basis(gs, t).numpy()  # (n_b, D_o)
                else:
                    basis = bias_basis(gs, ("rep", None), _reps.tensor_rep(gs, *t)).numpy()
                n_b = basis.shape[0]
                if n_b == 0:
                    continue
                ch = go.channels(o)
                z = np.nonzero(basis)
                idx = offset + np.arange(ch.shape[0] * n_b).reshape(ch.shape[0], n_b)
                rows.append(ch[:, z[1]].reshape(-1))
                cols.append(idx[:, z[0]].reshape(-1))
                vals.append(np.broadcast_to(basis[z], (ch.shape[0], len(z[0]))).reshape(-1))
                offset += idx.size
        if offset:
            self.bias = Parameter(torch.zeros(offset))
            self.register_buffer("_brow", torch.from_numpy(np.concatenate(rows)), persistent=False)
            self.register_buffer("_bcol", torch.from_numpy(np.concatenate(cols)), persistent=False)
            self._add_exact_buffer("_bvals", torch.from_numpy(np.concatenate(vals).astype(np.float64)))
        else:
            self.register_parameter("bias", None)

    @torch.no_grad()
    def reset_parameters(self, gain: float = 1.0, generator: Optional[torch.Generator] = None) -> None:
        """Weights ``N(0, gain * sigma_o^2)`` (class docstring: output mean square ``gain * v^2``); bias 0."""
        std = torch.from_numpy(self._std) * math.sqrt(check_gain(gain))  # NaN / negative / non-number refused
        w = torch.randn(self.weights.shape, generator=generator, dtype=torch.float64) * std
        self.weights.copy_(w.to(self.weights))
        if self.bias is not None:
            self.bias.zero_()

    # ---- expansion --------------------------------------------------------------------------------------------------

    def expand_parameters(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(coefficients (C_out, n_pairs), bias (C_out,) or None)``: output channel ``p`` is
        ``sum_q coefficients[p, q] * x[pi[q]] * x[pj[q]] + bias[p]`` with ``pi <= pj`` the monomials' channels."""
        P = self.out_type.size
        w = self.weights
        coef = w.new_zeros(P * self.n_pairs).index_add(0, self._flat, self._vals * w.index_select(0, self._widx))
        b = None
        if self.bias is not None:
            b = w.new_zeros(P).index_add(0, self._brow, self._bvals * self.bias.index_select(0, self._bcol))
        return coef.view(P, self.n_pairs), b

    def _expanded(self):
        """Train mode, or gradients to the parameters wanted: expand. Eval mode otherwise: the cached expansion,
        rebuilt whenever ``weights`` / ``bias`` change
        (:class:`escnn_tensor.nn._kernel.ExpansionCache`: version counters, no value read)."""
        return self._cache.expand_or_reuse(self, self.expand_parameters)

    def train(self, mode: bool = True) -> "TensorProductNonLinearity":
        self._cache.clear()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._cache.clear()
        return out

    # ---- forward ----------------------------------------------------------------------------------------------------

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """``GeometricTensor`` of ``in_type`` ``(B, C_in, *S)`` -> of ``out_type`` ``(B, C_out, *S)``."""
        x = self._check_input(input)
        self._check_dtype(x, self.weights)
        coef, bias = self._expanded()
        B, C, spatial = x.shape[0], x.shape[1], x.shape[2:]
        L = math.prod(spatial)
        xt = x.flatten(2).transpose(0, 1).reshape(C, B * L)  # (C, B*L): one pixel per column
        N = xt.shape[1]
        chunk = max(64, _CHUNK_BYTES // (3 * self.n_pairs * xt.element_size()))
        outs = []
        for s in range(0, max(N, 1), chunk):  # (one empty chunk for an empty batch)
            xs = xt[:, s : s + chunk]
            outs.append(coef @ (xs.index_select(0, self._pi) * xs.index_select(0, self._pj)))
        y = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
        if bias is not None:
            y = y + bias[:, None]
        y = y.view(y.shape[0], B, L).transpose(0, 1)
        return self._wrap(y.reshape((B, y.shape[1]) + tuple(spatial)))

    def extra_repr(self) -> str:
        s = f"{self.in_type} -> {self.out_type}, weights={self.weights.numel()}, monomials={self.n_pairs}"
        return s + ("" if self.bias is None else f", bias={self.bias.numel()}")
