r"""Invariant filters: a basis of all tensor filters on the pixel grid that the group leaves unchanged.

A filter of order ``k`` and parity ``parity`` on a ``kernel_size**d`` grid is a map :math:`C` from pixel
offsets :math:`a` (coordinates centred on the kernel's centre: ``a_i = j_i - (kernel_size - 1)/2``, which
is half-integer for even sizes) to order-``k`` tensors. A group element :math:`g` acts by

.. math::

    (g \cdot C)(a) = \rho_{k,parity}(g)\, C(M(g)^{-1} a),

and :math:`C` is *invariant* when :math:`g \cdot C = C` for all :math:`g`.

Construction (by orbits). :math:`M(g)` maps :math:`e_i` to :math:`\pm e_{\sigma(i)}`, so :math:`g` maps each basis
filter :math:`e_a \otimes e_{i_1..i_k}` to :math:`\pm e_{Ma} \otimes e_{\sigma(i_1)..\sigma(i_k)}` (times
:math:`\det M` for ``parity=-1``): the group acts on the ``N = kernel_size**d * d**k`` basis filters by signed
permutations. For each orbit of basis filters, either an element fixing a representative does so with sign -1
(then no invariant filter lives on the orbit) or the signed orbit sum is invariant; orbit sums of distinct orbits
have disjoint supports. The normalised orbit sums are therefore an orthonormal basis of the invariant filters,
computed with one vectorised pass over the ``N`` basis filters per group element: time ``O(|G| N)``, memory
``O(N)`` for the sparse basis (about 80 bytes per basis filter while building, at most 24 kept), plus the
dense result if one is asked for.

Layout: dense filters are returned in *grid layout* (array axis ``i`` runs along ``+x_i``; see
:mod:`escnn_tensor.groups`), shape ``(n_filters,) + (kernel_size,)*d + (d,)*k``; the sparse form indexes the
row-major flattening of the same array.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple, Optional

import numpy as np
import torch
from escnn.gspaces import GSpace

from .groups import _action, is_integer
from .representations import _check_memory, _format_bytes, _orbit_minima, _signed_action, check_order, check_parity

__all__ = [
    "invariant_filters",
    "invariant_filters_sparse",
    "invariant_filter_index",
    "num_invariant_filters",
    "irrep_pair_filters",
    "irrep_matrices",
    "CACHE_LIMIT_BYTES",
]

CACHE_LIMIT_BYTES: int = 256 * 2**20
"""Bound (bytes) on the memory held by the cache of sparse bases (least recently used entries are evicted).

Each cached basis takes 24 bytes per nonzero entry, at most 24 bytes per basis filter ``e_a (x) e_I``
(3D order 8 at kernel size 3: 2.4 MiB). A basis larger than the bound is built but not cached.
"""

_WORK_BYTES_PER_ENTRY = 80  # peak working memory per basis filter (measured about 70: int64 arrays + temporaries)


def _check_kernel_size(kernel_size) -> int:
    if not is_integer(kernel_size):
        raise TypeError(
            f"kernel_size must be a positive integer, got {kernel_size!r} of type {type(kernel_size).__name__}"
        )
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive integer, got {kernel_size}")
    return int(kernel_size)


class _SparseBasis(NamedTuple):
    """Orthonormal invariant filters as COO entries of the ``(n, K**d * d**k)`` matrix (read-only arrays)."""

    n: int
    shape: tuple  # (K,)*d + (d,)*k
    rows: np.ndarray  # int64, filter index, ascending
    cols: np.ndarray  # int64, row-major position in (K,)*d + (d,)*k, ascending within a row
    vals: np.ndarray  # float64, +-1/sqrt(orbit size)

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + self.cols.nbytes + self.vals.nbytes


class _BoundedCache:
    """Least-recently-used cache of ``_SparseBasis`` results, bounded by :data:`CACHE_LIMIT_BYTES` (thread-safe)."""

    def __init__(self, fn):
        self._fn = fn
        self._store: "OrderedDict[tuple, _SparseBasis]" = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = 0
        self._lock = threading.Lock()
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__

    def __call__(self, *key):
        with self._lock:
            hit = self._store.get(key)
            if hit is not None:
                self._store.move_to_end(key)
                self._hits += 1
                return hit
            self._misses += 1
        value = self._fn(*key)
        with self._lock:
            if key not in self._store and value.nbytes <= CACHE_LIMIT_BYTES:
                self._store[key] = value
                self._bytes += value.nbytes
                while self._bytes > CACHE_LIMIT_BYTES:
                    _, old = self._store.popitem(last=False)
                    self._bytes -= old.nbytes
        return value

    def cache_clear(self) -> None:
        with self._lock:
            self._store.clear()
            self._bytes = 0
            self._hits = self._misses = 0

    def cache_info(self) -> dict:
        with self._lock:
            return {"hits": self._hits, "misses": self._misses, "entries": len(self._store), "bytes": self._bytes}


def _pixel_images(mats: np.ndarray, K: int) -> tuple:
    """``(images, radius2)``: ``images[t, p]`` = grid index of ``M_t a_p`` for every pixel ``p`` (row-major, axis i
    = x_i), and the squared doubled distance of every pixel from the centre."""
    d = mats.shape[1]
    idx = np.indices((K,) * d).reshape(d, -1).T  # (K^d, d), row-major
    off2 = 2 * idx - (K - 1)  # doubled centred offsets: integers for even K too
    img = (np.einsum("tij,pj->tpi", mats, off2) + (K - 1)) // 2  # (|G|, K^d, d) grid indices of M a
    strides = K ** np.arange(d - 1, -1, -1)
    return img @ strides, (off2**2).sum(axis=1)


def _tensor_actions(mats: np.ndarray, k: int, parity: int):
    """``(perm, sign)`` of rho_{k,parity}(g) on the multi-indices for every element in turn (see
    ``representations._signed_action``): computed for all elements at once when that takes at most 64 MiB."""
    T = mats.shape[1] ** k
    if len(mats) * T * 9 <= 64 * 2**20:
        perm, sign = _signed_action(mats, k, parity)
        yield from zip(perm, sign)
    else:
        for t in range(len(mats)):
            perm, sign = _signed_action(mats[t : t + 1], k, parity)
            yield perm[0], sign[0]


def _build(key: str, matrices_bytes: bytes, d: int, K: int, k: int, parity: int) -> _SparseBasis:
    mats = np.frombuffer(matrices_bytes, dtype=np.int64).reshape(-1, d, d)
    P, T = K**d, d**k
    N = P * T
    pix, radius2 = _pixel_images(mats, K)

    def images():
        for pix_g, (tp, ts) in zip(pix, _tensor_actions(mats, k, parity)):
            yield (pix_g[:, None] * T + tp[None, :]).ravel(), np.broadcast_to(ts, (P, T)).ravel()

    rep, sign = _orbit_minima(images(), N)
    reps = np.flatnonzero(rep == np.arange(N))
    # an orbit carries an invariant filter iff no element fixes its representative with sign -1
    rp, ri = np.divmod(reps, T)
    alive = np.ones(len(reps), dtype=bool)
    for pix_g, (tp, ts) in zip(pix, _tensor_actions(mats, k, parity)):
        alive &= ~((pix_g[rp] * T + tp[ri] == reps) & (ts[ri] < 0))
    reps = reps[alive]
    order = np.lexsort((reps, radius2[reps // T]))  # centre outwards, then by smallest position in the orbit
    reps = reps[order]
    fid = np.full(N, -1, dtype=np.int64)
    fid[reps] = np.arange(len(reps))
    rows = fid[rep]
    keep = np.flatnonzero(rows >= 0)
    rows = rows[keep]
    size = np.bincount(rows, minlength=len(reps))
    vals = sign[keep] / np.sqrt(size[rows])
    perm = np.argsort(rows, kind="stable")  # rows ascending, positions ascending within a row
    out = _SparseBasis(len(reps), (K,) * d + (d,) * k, rows[perm], keep[perm], vals[perm])
    for a in (out.rows, out.cols, out.vals):
        a.setflags(write=False)
    return out


_filters_np = _BoundedCache(_build)


def _sparse(
    gspace: GSpace, kernel_size, k, parity, call: str, dense_dtype: Optional[torch.dtype] = None
) -> _SparseBasis:
    """Check the arguments and the memory estimates, then return the (cached) sparse basis."""
    act = _action(gspace)
    K = _check_kernel_size(kernel_size)
    k = check_order(k)
    parity = check_parity(parity)
    d = act.d
    N = K**d * d**k
    call = f"{call}({gspace.name}, kernel_size={K}, k={k}, parity={parity:+d})"
    _check_memory(
        call,
        float(_WORK_BYTES_PER_ENTRY) * N,
        f"{_WORK_BYTES_PER_ENTRY} bytes for each of the {K}^{d} x {d}^{k} = {N} basis filters",
    )
    basis = _filters_np(act.key, act.matrices.tobytes(), d, K, k, parity)
    if dense_dtype is not None:
        item = torch.empty((), dtype=dense_dtype).element_size()
        _check_memory(
            call,
            float(basis.n) * N * item,
            f"a dense {basis.n} x {K}^{d} x {d}^{k} array of {dense_dtype}, {item} bytes per entry; "
            f"invariant_filters_sparse holds the same basis in {_format_bytes(basis.nbytes)}",
        )
    return basis


def invariant_filters(
    gspace: GSpace,
    kernel_size: int,
    k: int,
    parity: int,
    dtype: torch.dtype = torch.float64,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    r"""A basis of all filters invariant under ``gspace``'s group.

    Args:
        gspace: ``hyperoctahedral_gspace(d)`` or an accepted subgroup gspace.
        kernel_size: side of the filter, odd or even (for even sizes the centre lies between pixels).
        k: tensor order of the filter values.
        parity: +1 (tensor filters) or -1 (pseudotensor filters).
        dtype, device: of the returned tensor.

    Returns:
        A new tensor of shape ``(n_filters,) + (kernel_size,)*d + (d,)*k`` in grid layout (array axis ``i``
        along ``+x_i``, tensor index ``i`` = component along ``x_i``). Every filter is a normalised signed sum
        over one orbit of the basis filters :math:`e_a \otimes e_{i_1..i_k}` (module docs): entries are 0 or
        :math:`\pm 1/\sqrt{\text{orbit size}}`, supports are disjoint, so the filters are orthonormal in the
        Frobenius inner product, and every one satisfies :math:`g \cdot C = C` exactly. ``n_filters`` is the
        dimension of the space of invariant filters. Order (deterministic): by the distance from the centre
        of the orbit's pixels, then by the orbit's smallest row-major position; the entry at that position is
        positive.

    Cost and limits: the sparse basis is built in ``O(|G| N)`` time and ``O(N)`` memory for
    ``N = kernel_size**d * d**k`` and cached (:func:`invariant_filters_sparse`); the dense result takes
    ``n_filters * N`` entries (about ``N**2 / |G|``). Both sizes are estimated before they are allocated, and a
    ``ValueError`` naming the size is raised if one exceeds ``escnn_tensor.representations.MEMORY_LIMIT_BYTES``
    (2 GiB by default), e.g. 3D order 8 at ``kernel_size=3`` (5.1 GiB dense in float64): use
    :func:`invariant_filters_sparse` there.

    Raises:
        TypeError / ValueError: bad ``gspace``, ``kernel_size``, ``k`` or ``parity`` (naming the argument), or a
        memory estimate above the limit.
    """
    basis = _sparse(gspace, kernel_size, k, parity, "invariant_filters", dense_dtype=dtype)
    N = int(np.prod(basis.shape, dtype=np.int64))
    out = torch.zeros(basis.n * N, dtype=dtype, device=device)
    flat = torch.from_numpy(basis.rows * N + basis.cols)
    vals = torch.tensor(basis.vals, dtype=dtype)
    if out.device.type != "cpu":
        flat, vals = flat.to(out.device), vals.to(out.device)
    out[flat] = vals
    return out.view((basis.n,) + basis.shape)


def invariant_filters_sparse(
    gspace: GSpace,
    kernel_size: int,
    k: int,
    parity: int,
    dtype: torch.dtype = torch.float64,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    r"""The basis of :func:`invariant_filters` as a sparse matrix, for sizes whose dense basis would not fit.

    Returns:
        A coalesced torch sparse COO tensor of shape ``(n_filters, kernel_size**d * d**k)``: row ``j`` is filter
        ``j`` of :func:`invariant_filters` (same order and signs) flattened row-major over
        ``(kernel_size,)*d + (d,)*k`` (grid layout), i.e. ``invariant_filters(...).reshape(n_filters, -1)``.
        Each column holds at most one nonzero, so there are at most ``kernel_size**d * d**k`` entries in total
        (memory linear in the grid and tensor size). A kernel ``sum_j w_j C_j`` is ``w @ basis`` (or
        ``torch.sparse.mm(basis.t(), w[:, None])``).

    Raises:
        as :func:`invariant_filters` (only the sparse construction's memory is checked).
    """
    basis = _sparse(gspace, kernel_size, k, parity, "invariant_filters_sparse")
    N = int(np.prod(basis.shape, dtype=np.int64))
    idx = torch.from_numpy(np.stack([basis.rows, basis.cols]))
    vals = torch.tensor(basis.vals, dtype=dtype)
    return torch.sparse_coo_tensor(
        idx, vals, (basis.n, N), dtype=dtype, device=device, is_coalesced=True, check_invariants=False
    )


def invariant_filter_index(gspace: GSpace, kernel_size: int, k: int, parity: int) -> tuple:
    r"""The basis of :func:`invariant_filters` as one (filter, value) pair per basis filter ``e_a (x) e_I``.

    The invariant filters have disjoint supports (one orbit each), so every position of the flattened
    ``(kernel_size,)*d + (d,)*k`` grid (row-major, grid layout) belongs to at most one filter.

    Returns:
        ``(n, filt, vals)``: ``n`` the number of filters; ``filt`` int64 ``(K**d * d**k,)``, the filter holding
        each position or ``-1`` (no filter there); ``vals`` float64 of the same shape, the entry of that filter at
        that position (``0`` where ``filt == -1``). Hence ``invariant_filters(...).reshape(n, -1)[filt[j], j] ==
        vals[j]`` and a kernel ``sum_j w_j C_j`` is ``where(filt >= 0, w[filt] * vals, 0)``: a gather, no matmul.
        Memory ``16 * K**d * d**k`` bytes (checked before building, as :func:`invariant_filters_sparse`).
    """
    basis = _sparse(gspace, kernel_size, k, parity, "invariant_filter_index")
    N = int(np.prod(basis.shape, dtype=np.int64))
    filt = np.full(N, -1, dtype=np.int64)
    vals = np.zeros(N, dtype=np.float64)
    filt[basis.cols] = basis.rows
    vals[basis.cols] = basis.vals
    return basis.n, filt, vals


def num_invariant_filters(gspace: GSpace, kernel_size: int, k: int, parity: int) -> int:
    """The number of invariant filters, ``invariant_filters(...).shape[0]`` (from the cached sparse basis)."""
    return _sparse(gspace, kernel_size, k, parity, "num_invariant_filters").n


# ----------------------------------------------------------------------------------------------------------------
# equivariant kernels between escnn irreps (any representation, through its change of basis)

_IRREP_MATRICES: dict = {}  # (action key, irrep id) -> read-only float64 (|G|, r, r) in the action's element order
_IRREP_FILTERS: dict = {}  # (action key, K, in id, out id) -> read-only float64 (n, r_out, r_in, K**d)


def irrep_matrices(gspace: GSpace, irrep_id) -> np.ndarray:
    """escnn's irrep ``gspace.fibergroup.irrep(*irrep_id)`` on every element (in the order of
    :func:`escnn_tensor.group_elements`): a read-only float64 array ``(|G|, r, r)``, cached per action (shared with
    the tables :func:`escnn_tensor.tensor_rep` evaluates once per group)."""
    from .representations import _irrep_tables

    act = _action(gspace)
    key = (act.key, tuple(irrep_id))
    out = _IRREP_MATRICES.get(key)
    if out is None:
        for pid, _, P, _ in _irrep_tables(gspace.fibergroup, act.elements, act.key):
            m = np.ascontiguousarray(P)
            m.setflags(write=False)
            _IRREP_MATRICES[(act.key, tuple(pid))] = m
        out = _IRREP_MATRICES.get(key)
        if out is None:  # an irrep escnn did not list in group.irreps()
            psi = gspace.fibergroup.irrep(*irrep_id)
            out = np.stack([np.asarray(psi(g), dtype=np.float64) for g in act.elements])
            out.setflags(write=False)
            _IRREP_MATRICES[key] = out
    return out


_PIXEL_ORBITS: dict = {}  # (action key, K) -> [(a, stabiliser, members, element carrying a to each member)]


def _pixel_orbits(act, K: int) -> list:
    """Orbits of the kernel pixels (grid layout), ordered by distance from the centre then smallest pixel: for each,
    its representative ``a`` (smallest pixel), the stabiliser of ``a`` (element indices), the member pixels and, for
    each member ``b``, the first element ``t`` with ``M_t a = b``."""
    key = (act.key, K)
    out = _PIXEL_ORBITS.get(key)
    if out is None:
        pix, radius2 = _pixel_images(act.matrices, K)
        orbit_min = pix.min(axis=0)
        reps = np.unique(orbit_min)
        reps = reps[np.lexsort((reps, radius2[reps]))]
        out = []
        for a in reps:
            members, first = np.unique(pix[:, a], return_index=True)
            out.append((int(a), np.flatnonzero(pix[:, a] == a), members, first))
        _PIXEL_ORBITS[key] = out
    return out


def _inverse_index(mats: np.ndarray) -> np.ndarray:
    """``inv[t]``: the index of the inverse of element ``t`` (signed permutations: ``M^{-1} = M^T``)."""
    flat = {m.tobytes(): t for t, m in enumerate(mats)}
    if len(flat) != len(mats):
        raise ValueError("the gspace's group does not act faithfully on the grid (two elements share a matrix)")
    return np.array([flat[np.ascontiguousarray(m.T).tobytes()] for m in mats], dtype=np.int64)


def irrep_pair_filters(gspace: GSpace, kernel_size: int, in_irrep, out_irrep) -> np.ndarray:
    r"""An orthonormal basis of the equivariant kernels from escnn irrep ``in_irrep`` to ``out_irrep`` on the grid.

    A kernel :math:`\kappa` maps pixel offsets :math:`a` (centred, as in :func:`invariant_filters`) to
    ``r_out x r_in`` matrices and is equivariant iff :math:`\kappa(Ma) = \psi_{out}(g)\, \kappa(a)\,
    \psi_{in}(g)^{-1}` for every ``g``. Construction (by pixel orbits): for the representative ``a`` of an orbit
    (its smallest row-major pixel) the value :math:`\kappa(a)` ranges over the intertwiners of the stabiliser
    :math:`H_a`, the range of the projector :math:`X \mapsto |H_a|^{-1} \sum_h \psi_{out}(h) X \psi_{in}(h)^{-1}`
    (an orthonormal basis of it from an SVD; its rank is the character sum
    :math:`|H_a|^{-1}\sum_h \chi_{out}(h)\chi_{in}(h^{-1})`); each basis matrix :math:`X` is carried to the orbit by
    :math:`\kappa(g a) = \psi_{out}(g) X \psi_{in}(g)^{-1}` and scaled by :math:`1/\sqrt{|orbit|}`. Distinct orbits
    have disjoint supports, so the filters are orthonormal (Frobenius) for orthogonal irreps (escnn's irreps of
    finite groups are). The count is :math:`|G|^{-1} \sum_g \chi_{out}(g) \chi_{in}(g^{-1}) \#\{a: Ma = a\}`.

    Returns:
        A read-only float64 array ``(n, r_out, r_in, kernel_size**d)``, pixels row-major in grid layout (axis ``i``
        along ``+x_i``). Order: by distance of the orbit from the centre, then by the orbit's smallest pixel.
        Cached per (action, ``kernel_size``, irreps). Time ``O(|G| K^d r^2 + orbits (r_out r_in)^3)``.
    """
    act = _action(gspace)
    K = _check_kernel_size(kernel_size)
    in_irrep, out_irrep = tuple(in_irrep), tuple(out_irrep)
    key = (act.key, K, in_irrep, out_irrep)
    out = _IRREP_FILTERS.get(key)
    if out is not None:
        return out
    Pi = irrep_matrices(gspace, in_irrep)
    Po = irrep_matrices(gspace, out_irrep)
    ri, ro = Pi.shape[1], Po.shape[1]
    inv = _inverse_index(act.matrices)
    S = K**act.d
    filters = []
    for a, stab, members, first in _pixel_orbits(act, K):
        # row-major vec(A X B) = (A kron B^T) vec(X); averaged over the stabiliser of a
        proj = np.einsum("hxu,hvy->xyuv", Po[stab], Pi[inv[stab]]).reshape(ro * ri, ro * ri) / len(stab)
        rank = int(round(np.trace(proj)))
        if rank == 0:
            continue
        U, _, _ = np.linalg.svd(proj)
        X = U[:, :rank].T.reshape(rank, ro, ri)
        F = np.zeros((rank, ro, ri, S))
        F[..., members] = np.einsum("bxu,nuv,bvy->nxyb", Po[first], X, Pi[inv[first]])
        filters.append(F / np.sqrt(len(members)))
    out = np.concatenate(filters) if filters else np.zeros((0, ro, ri, S))
    out.setflags(write=False)
    _IRREP_FILTERS[key] = out
    return out
