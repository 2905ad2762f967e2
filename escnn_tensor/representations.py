r"""Tensor representations of :math:`B_d` (and its subgroups) as escnn ``Representation`` / ``FieldType``.

For a group element :math:`g` acting on :math:`\mathbb{R}^d` by the signed permutation matrix
:math:`M(g)` (:func:`escnn_tensor.group_matrix`), the representation on order-``k`` tensors of parity
``parity`` is

.. math::

    \rho_{k,\,parity}(g) = \det(M(g))^{(1 - parity)/2}\; M(g)^{\otimes k},

i.e. true tensors (``parity=+1``) transform by :math:`M^{\otimes k}` and pseudotensors (``parity=-1``)
pick up one extra factor :math:`\det M = \pm 1`. (ginjax writes the parity as ``p`` in ``{0, 1}`` and the
factor as :math:`\det(M)^p`: its ``0`` is our ``+1`` and its ``1`` our ``-1``.)

The representation acts on :math:`\mathbb{R}^{d^k}` in the *natural tensor basis*: component
``T[i_1, ..., i_k]`` (each index over ``x, y[, z]`` = 0, 1[, 2]) sits at position
:math:`\sum_j i_j d^{k-j}`, i.e. the row-major flattening of the tensor, which is also the basis of
``gspace.basespace_action``. Its matrices are exact (entries in ``{-1, 0, 1}``); its irreps are escnn's own
irreps of the group, joined by an orthogonal change of basis.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from escnn.group import Group, GroupElement, Representation
from escnn.gspaces import GSpace
from escnn.nn import FieldType

from .groups import _Action, _action, is_integer

__all__ = [
    "tensor_rep",
    "tensor_type",
    "tensor_matrix",
    "check_order",
    "check_parity",
    "canonical_order",
    "tensor_field_info",
    "field_signature",
    "SYMMETRIES",
    "symmetric_basis",
    "symmetric_size",
    "to_full_tensor",
    "from_full_tensor",
    "full_field_type",
    "tensor_symmetry_info",
]

FieldSpec = Union[Sequence[Tuple[int, int, int]], Mapping]

_ATTR = "escnn_tensor"  # key in Representation.attributes: (d, k, parity, action key)


def check_order(k, name: str = "k") -> int:
    """Validate a tensor order: a non-negative integer (bools are rejected). Returns it as ``int``."""
    if not is_integer(k):
        raise TypeError(f"{name} (tensor order) must be a non-negative integer, got {k!r} of type {type(k).__name__}")
    if k < 0:
        raise ValueError(f"{name} (tensor order) must be a non-negative integer, got {k}")
    return int(k)


def check_parity(parity, name: str = "parity") -> int:
    """Validate a parity: ``+1`` (true tensor) or ``-1`` (pseudotensor). Returns it as ``int``.

    ginjax's parities ``0`` and ``1`` are rejected with a message that says how they map (0 -> +1, 1 -> -1).
    """
    if not is_integer(parity):
        raise TypeError(
            f"{name} must be the integer +1 (tensor) or -1 (pseudotensor), got {parity!r} of type "
            f"{type(parity).__name__}"
        )
    if parity not in (1, -1):
        hint = ""
        if parity == 0:
            hint = " (ginjax writes parity as 0/1: its 0 is +1 here and its 1 is -1, so use +1)"
        raise ValueError(f"{name} must be +1 (tensor) or -1 (pseudotensor), got {parity}{hint}")
    return int(parity)


def canonical_order(keys: Iterable[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Sort ``(k, parity)`` keys canonically: by order ``k``, then tensors (+1) before pseudotensors (-1).

    E.g. ``(0, +1), (0, -1), (1, +1), (1, -1), (2, +1), ...``. This is the channel order of
    :func:`tensor_type` for a mapping and the key order of :class:`escnn_tensor.MultiImage`.
    """
    return sorted(keys, key=lambda kp: (kp[0], -kp[1]))


def tensor_matrix(matrix: np.ndarray, k: int, parity: int) -> np.ndarray:
    r"""The matrix :math:`\det(M)^{(1-parity)/2} M^{\otimes k}` of size ``d**k``, as an exact int64 array.

    Args:
        matrix: a ``(d, d)`` signed permutation matrix :math:`M`.
        k: tensor order (``k=0`` gives the ``1 x 1`` matrix ``[[1]]`` or ``[[det M]]``).
        parity: +1 or -1.
    """
    m = np.asarray(matrix).astype(np.int64)
    out = np.ones((1, 1), dtype=np.int64)
    for _ in range(k):
        out = np.kron(out, m)
    if parity == -1:
        out = out * int(round(np.linalg.det(m)))
    return out


# ----------------------------------------------------------------------------------------------------------------
# memory limit shared by tensor_rep and escnn_tensor.filters

MEMORY_LIMIT_BYTES: int = 2 * 2**30
"""Largest estimated memory (bytes) that :func:`tensor_rep` and :func:`escnn_tensor.invariant_filters` may allocate.

Both estimate their peak memory *before* building anything and raise ``ValueError`` naming the estimate and this
limit when it is larger. The default is 2 GiB; assign another value to this module attribute
(``escnn_tensor.representations.MEMORY_LIMIT_BYTES = ...``) to allow more.
"""


def _format_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _check_memory(call: str, nbytes: float, what: str) -> None:
    """Raise ``ValueError`` if the estimate ``nbytes`` exceeds :data:`MEMORY_LIMIT_BYTES`."""
    if nbytes > MEMORY_LIMIT_BYTES:
        raise ValueError(
            f"{call} would need about {_format_bytes(nbytes)} ({what}); limit {_format_bytes(MEMORY_LIMIT_BYTES)} "
            f"(escnn_tensor.representations.MEMORY_LIMIT_BYTES). Use a smaller tensor order or kernel size, or raise "
            f"the limit if the machine has the memory."
        )


# ----------------------------------------------------------------------------------------------------------------
# rho_{k,p} as signed permutations of the multi-indices


def _signed_action(matrices: np.ndarray, k: int, parity: int) -> Tuple[np.ndarray, np.ndarray]:
    r""":math:`\rho_{k,parity}(g)` of a stack of signed permutation matrices, as signed permutations of multi-indices.

    ``M e_i = s_i e_{\sigma(i)}`` gives :math:`M^{\otimes k} e_{i_1..i_k} = s_{i_1}..s_{i_k} e_{\sigma(i_1)..
    \sigma(i_k)}`. Returns ``(perm, sign)``, int64 and int8 arrays of shape ``(len(matrices), d**k)`` with
    ``rho(g_t) e_I = sign[t, I] e_{perm[t, I]}`` for the row-major flat multi-index ``I`` (the basis of
    :func:`tensor_matrix`, which is the same matrix written densely).
    """
    mats = np.asarray(matrices, dtype=np.int64)
    G, d = mats.shape[0], mats.shape[1]
    sigma = np.abs(mats).argmax(axis=1)  # (G, d): row of the nonzero entry of column i
    s = np.take_along_axis(mats, sigma[:, None, :], axis=1)[:, 0, :].astype(np.int8)
    perm = np.zeros((G, 1), dtype=np.int64)
    sign = np.ones((G, 1), dtype=np.int8)
    for _ in range(k):  # the first tensor index is the most significant digit, as in np.kron
        perm = (perm[:, :, None] * d + sigma[:, None, :]).reshape(G, -1)
        sign = (sign[:, :, None] * s[:, None, :]).reshape(G, -1)
    if parity == -1:
        det = np.rint(np.linalg.det(mats)).astype(np.int8)
        sign = sign * det[:, None]
    return perm, sign


def _orbit_minima(images: Iterable[Tuple[np.ndarray, np.ndarray]], n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Orbits of a group acting on the basis vectors ``e_0 .. e_{n-1}`` by signed permutations.

    ``images`` yields, for every group element ``g``, ``(img, sgn)`` (int64 / int8 arrays of length ``n``) with
    ``g e_x = sgn[x] e_{img[x]}``. Returns ``(rep, sign)``: ``rep[x]`` is the smallest index in the orbit of ``x``
    and ``sign[x] = sgn_g[x]`` for the first ``g`` (in iteration order) that maps ``x`` to ``rep[x]``. A vector
    ``v`` supported on one orbit is invariant iff ``v[x] = sign[x] v[rep[x]]`` and this is consistent (no element
    fixing ``rep`` with sign -1). Memory: a few arrays of length ``n``; time: one vectorised pass per element.
    """
    rep = np.arange(n, dtype=np.int64)
    sign = np.ones(n, dtype=np.int8)
    for img, sgn in images:
        better = img < rep
        np.copyto(rep, img, where=better)
        np.copyto(sign, sgn, where=better)
    return rep, sign


def _element_index(index, elements, g: GroupElement) -> int:
    """The position of ``g`` in ``elements``: from the ``index`` dict, else by comparison (an equal element that
    hashes differently)."""
    i = index.get(g)
    if i is None:
        i = next(j for j, h in enumerate(elements) if h == g)
    return i


class _ExactMatrices:
    """Picklable callable ``GroupElement -> rho(g)``: the exact matrix, built from the stored signed permutation."""

    def __init__(self, action: _Action, perm: np.ndarray, sign: np.ndarray):
        self._index = action.index
        self._elements = action.elements
        self._perm = perm
        self._sign = sign
        fixed = perm == np.arange(perm.shape[1])
        self._characters = np.where(fixed, sign, 0).sum(axis=1).astype(np.float64)

    def _i(self, g: GroupElement) -> int:
        return _element_index(self._index, self._elements, g)

    def __call__(self, g: GroupElement) -> np.ndarray:
        i = self._i(g)
        n = self._perm.shape[1]
        out = np.zeros((n, n))
        out[self._perm[i], np.arange(n)] = self._sign[i]
        return out

    def character(self, g: GroupElement) -> float:
        return float(self._characters[self._i(g)])


_IRREP_TABLES: dict = {}  # action key -> [(irrep id, size, matrices (|G|, r, r), characters (|G|,))]


def _irrep_tables(group: Group, elements: List[GroupElement], key: str) -> List[tuple]:
    """escnn's irreps of ``group`` evaluated once on every element (escnn's evaluation is slow; cached per action)."""
    tables = _IRREP_TABLES.get(key)
    if tables is None:
        tables = []
        for psi in group.irreps():
            P = np.stack([np.asarray(psi(g), dtype=np.float64) for g in elements])
            tables.append((psi.id, psi.size, P, np.trace(P, axis1=1, axis2=2)))
        _IRREP_TABLES[key] = tables
    return tables


def _decompose_orbit(
    lp: np.ndarray, ls: np.ndarray, tables: List[tuple], group_name: str
) -> List[Tuple[int, np.ndarray]]:
    """Split one orbit block (``rho(g) e_j = ls[g, j] e_{lp[g, j]}``, ``s`` basis vectors) into escnn irreps.

    Multiplicities come from characters. For an irrep ``psi`` of size ``r`` the intertwiners ``X`` (``s x r``,
    ``rho(g) X = X psi(g)``) are the range of the twirl ``T = mean_g psi(g) (x) rho(g)``, an ``(s r) x (s r)``
    matrix assembled from the signed permutations; copies are taken from its columns in order by Gram-Schmidt
    (projecting out the column spaces of earlier copies) and scaled so that ``X^T X = I``. Deterministic.
    Returns ``[(index into tables, X), ...]`` with the ``X`` together forming an orthogonal ``s x s`` matrix.
    """
    G, s = lp.shape
    chi = np.where(lp == np.arange(s), ls, 0).sum(axis=1).astype(np.float64)
    out: List[Tuple[int, np.ndarray]] = []
    for t, (pid, r, P, chi_psi) in enumerate(tables):
        m = (chi @ chi_psi) / (chi_psi @ chi_psi)
        mult = int(round(m))
        if abs(m - mult) > 1e-6:
            raise RuntimeError(
                f"irreps decomposition failed for {group_name}: multiplicity {m} of {pid} is not an integer"
            )
        if mult == 0:
            continue
        T = np.zeros((s, r, s, r))
        j = np.arange(s)[None, :, None, None]
        a = np.arange(r)[None, None, :, None]
        b = np.arange(r)[None, None, None, :]
        np.add.at(T, (lp[:, :, None, None], a, j, b), ls[:, :, None, None] * P[:, None, :, :])
        T = T.reshape(s * r, s * r) / G
        U = np.zeros((s, 0))
        found = 0
        for c in range(s * r):
            X = T[:, c].reshape(s, r)
            if np.abs(X).max() < 1e-9:
                continue
            Y = X - U @ (U.T @ X)
            Y = Y - U @ (U.T @ Y)  # second pass for numerical orthogonality
            nrm = np.trace(Y.T @ Y) / r
            if nrm < 1e-9:
                continue
            Y = Y / np.sqrt(nrm)
            out.append((t, Y))
            U = np.concatenate([U, Y], axis=1)
            found += 1
            if found == mult:
                break
        if found != mult:
            raise RuntimeError(
                f"irreps decomposition failed for {group_name}: found {found} of {mult} copies of irrep {pid}"
            )
    if sum(Y.shape[1] for _, Y in out) != s:
        raise RuntimeError(
            f"escnn has only built irreps of {group_name} that cover {sum(Y.shape[1] for _, Y in out)} of {s} "
            f"dimensions of an orbit block"
        )
    # verify exactly as escnn will use it: rho(g) Y = Y blockdiag(psi(g)), Y orthogonal
    Y = np.concatenate([X for _, X in out], axis=1)
    err = np.abs(Y.T @ Y - np.eye(s)).max()
    for g in range(G):
        left = np.empty_like(Y)
        left[lp[g]] = ls[g][:, None] * Y
        o = 0
        for t, X in out:
            r = X.shape[1]
            err = max(err, np.abs(left[:, o : o + r] - X @ tables[t][2][g]).max())
            o += r
    if err > 1e-9:
        raise RuntimeError(f"irreps decomposition failed for {group_name}: error {err:.2e}")
    return out


def _decompose(
    group: Group, elements: List[GroupElement], key: str, perm: np.ndarray, sign: np.ndarray
) -> Tuple[List[tuple], np.ndarray]:
    """Split the signed permutation representation ``rho(g_t) e_x = sign[t, x] e_{perm[t, x]}`` into escnn irreps.

    The basis vectors fall into orbits of at most ``|G|`` elements and rho is block diagonal over them, so each
    orbit block is decomposed on its own (:func:`_decompose_orbit`; blocks with identical action tables are
    decomposed once). Returns ``(irrep ids, Q)`` with ``rho(g) = Q blockdiag(psi(g) for psi in ids) Q^T`` and
    ``Q`` orthogonal; the irreps come in the order of ``group.irreps()``, copies of one irrep orbit by orbit
    (orbits ordered by their smallest index). Time and memory: ``O(n |G|)`` plus the ``n x n`` matrix ``Q``.
    """
    n = perm.shape[1]
    tables = _irrep_tables(group, elements, key)
    rep, _ = _orbit_minima(zip(perm, sign), n)
    order = np.argsort(rep, kind="stable")
    starts = np.flatnonzero(np.r_[True, rep[order][1:] != rep[order][:-1]])
    orbits = np.split(order, starts[1:])  # each sorted ascending; orbits ordered by their smallest index
    local = np.full(n, -1, dtype=np.int64)
    done: dict = {}
    per_irrep: List[List[Tuple[np.ndarray, np.ndarray]]] = [[] for _ in tables]
    for orb in orbits:
        local[orb] = np.arange(len(orb))
        lp = local[perm[:, orb]]
        ls = sign[:, orb]
        k = (lp.tobytes(), ls.tobytes())
        if k not in done:
            done[k] = _decompose_orbit(lp, ls, tables, group.name)
        for t, X in done[k]:
            per_irrep[t].append((orb, X))
    Q = np.zeros((n, n))
    ids: List[tuple] = []
    col = 0
    for t, copies in enumerate(per_irrep):
        for orb, X in copies:
            r = X.shape[1]
            Q[orb, col : col + r] = X
            ids.append(tables[t][0])
            col += r
    return ids, Q


# ----------------------------------------------------------------------------------------------------------------
# symmetric and symmetric traceless tensors

SYMMETRIES = (None, "symmetric", "symmetric_traceless")
"""The accepted values of ``symmetry``: all ``d**k`` components, symmetric tensors, symmetric traceless tensors."""

_SYM_ATTR = "escnn_tensor_symmetry"  # Representation.attributes key: (d, k, parity, symmetry, action key)


def check_symmetry(symmetry, k: int = None, name: str = "symmetry"):
    """Validate ``symmetry`` (one of :data:`SYMMETRIES`); ``'full'`` is accepted as ``None``."""
    if symmetry == "full":
        symmetry = None
    if symmetry not in SYMMETRIES:
        raise ValueError(f"{name} must be one of {SYMMETRIES} (or 'full' for None), got {symmetry!r}")
    return symmetry


def _multisets(d: int, k: int) -> List[Tuple[int, ...]]:
    """Sorted index tuples ``i_1 <= .. <= i_k`` in lexicographic order: the independent components of a symmetric
    tensor."""
    import itertools

    return list(itertools.combinations_with_replacement(range(d), k))


def symmetric_basis(d: int, k: int, symmetry) -> np.ndarray:
    r"""The documented orthonormal basis of the components of an order-``k`` tensor with ``symmetry``, as columns.

    Returns a float64 array ``E`` of shape ``(d**k, n)`` with orthonormal columns (``E^T E = I``), full tensors
    flattened row-major (as :func:`tensor_rep`):

    - ``symmetry=None``: the identity, ``n = d**k``.
    - ``'symmetric'``: one column per sorted multi-index ``I = (i_1 <= .. <= i_k)`` in lexicographic order (2D
      ``k=2``: ``xx, xy, yy``; 3D: ``xx, xy, xz, yy, yz, zz``), the normalised sum of the ``N_I`` distinct
      permutations of ``I``: the coordinate is ``c_I = sqrt(N_I) T[I]``, i.e. diagonal entries as they are and
      off-diagonal entries of a 2-tensor scaled by :math:`\sqrt 2` (order 3: :math:`\sqrt 3` for two equal indices,
      :math:`\sqrt 6` for three distinct ones). ``n = C(d+k-1, k)``.
    - ``'symmetric_traceless'``: Gram-Schmidt, in the order of the symmetric columns, of their projections onto the
      traceless subspace (contraction of any two indices zero), skipping dependent ones; ``n = C(d+k-1, k) -
      C(d+k-3, k-2)`` (3D ``k=2``: 5 components, the first ``(2 T_xx - T_yy - T_zz)/\sqrt 6``, then
      ``\sqrt 2 T_xy``, ``\sqrt 2 T_xz``, ``(T_yy - T_zz)/\sqrt 2``, ``\sqrt 2 T_yz``).

    The coordinates of a full tensor ``T`` are ``E^T T`` (:func:`from_full_tensor`, the orthogonal projection, exact
    for tensors with the symmetry) and the full tensor of coordinates ``c`` is ``E c`` (:func:`to_full_tensor`).
    """
    symmetry = check_symmetry(symmetry)
    k = check_order(k)
    n_full = d**k
    if symmetry is None:
        return np.eye(n_full)
    import itertools

    cols = []
    for I in _multisets(d, k):
        perms = set(itertools.permutations(I))
        col = np.zeros(n_full)
        for J in perms:
            col[int(np.ravel_multi_index(J, (d,) * k)) if k else 0] = 1.0
        cols.append(col / np.sqrt(len(perms)))
    E = np.stack(cols, axis=1) if cols else np.zeros((n_full, 0))
    if symmetry == "symmetric" or k < 2:
        return E
    # traceless: kernel of the contraction of the first two indices, inside the symmetric subspace
    C = np.zeros((d ** (k - 2), n_full))
    for rest in itertools.product(range(d), repeat=k - 2):
        r = int(np.ravel_multi_index(rest, (d,) * (k - 2))) if k > 2 else 0
        for i in range(d):
            C[r, int(np.ravel_multi_index((i, i) + rest, (d,) * k))] = 1.0
    A = C @ E  # trace of each symmetric column
    P = np.eye(E.shape[1]) - np.linalg.pinv(A) @ A  # projector onto the traceless coordinates
    basis = []
    for j in range(E.shape[1]):
        v = P[:, j].copy()
        for b in basis:
            v -= (b @ v) * b
        for b in basis:  # second pass
            v -= (b @ v) * b
        nv = np.linalg.norm(v)
        if nv > 1e-9:
            basis.append(v / nv)
    B = np.stack(basis, axis=1)
    out = E @ B
    out[np.abs(out) < 1e-15] = 0.0
    return out


def symmetric_size(d: int, k: int, symmetry) -> int:
    """Number of components of an order-``k`` tensor in ``d`` dimensions with ``symmetry`` (``d**k`` for None)."""
    from math import comb

    symmetry = check_symmetry(symmetry)
    if symmetry is None:
        return d**k
    n = comb(d + k - 1, k)
    if symmetry == "symmetric_traceless" and k >= 2:
        n -= comb(d + k - 3, k - 2)
    return n


def to_full_tensor(components, d=None, k: int = None, symmetry=None, dim: int = 1):
    """Embed coordinates in :func:`symmetric_basis` into full tensors (``E c``; exact up to the rounding of ``E``'s
    entries). Two forms:

    - ``to_full_tensor(components, d, k, symmetry, dim=1)``: one tensor type; axis ``dim`` of length ``n`` becomes
      ``d**k`` (row-major components).
    - ``to_full_tensor(x, field_type=None, dim=1)``: every field of a FieldType at once. ``x`` is an escnn
      ``GeometricTensor`` (``field_type`` omitted or ``x.type``; returns a ``GeometricTensor`` of
      :func:`full_field_type`) or a torch tensor / numpy array whose axis ``dim`` has ``field_type.size`` entries
      (returns the same kind, that axis of length ``full_field_type(field_type).size``). Symmetric (traceless)
      fields become full tensors in their place, in channel order; full tensor fields are copied as they are (bit
      for bit). Other fields (escnn's regular, irreps, ...) raise ``ValueError`` naming them.

    Works on torch tensors (any device, differentiable) and numpy arrays.
    """
    if _field_type_form(components, d):
        return _map_fields(components, d, dim, to_full=True)
    return _apply_basis(components, symmetric_basis(d, k, symmetry), dim)


def from_full_tensor(full, d=None, k: int = None, symmetry=None, dim: int = 1, *, rtol: Optional[float] = None):
    """Coordinates in :func:`symmetric_basis` of full tensors: the orthogonal projection ``E^T T``, which inverts
    :func:`to_full_tensor` and, for a tensor without the symmetry, gives the coordinates of its symmetric
    (traceless) part. Two forms, as :func:`to_full_tensor`:

    - ``from_full_tensor(full, d, k, symmetry, dim=1)``: axis ``dim`` of length ``d**k`` becomes ``n``.
    - ``from_full_tensor(x, field_type, dim=1, rtol=None)``: ``x`` holds the fields of
      ``full_field_type(field_type)`` (a ``GeometricTensor`` of that type, or a tensor / array with that many entries
      along ``dim``); returns the fields of ``field_type`` (a ``GeometricTensor`` of ``field_type``, or the same
      kind). With ``rtol`` a number, a field whose full tensors leave the symmetric (traceless) subspace by more than
      ``rtol`` times the largest ``|component|`` of that field (over the whole input) raises ``ValueError`` naming the
      field and the deviation, instead of being projected (this reads the values: not for a forward pass).
    """
    if _field_type_form(full, d):
        return _map_fields(full, d, dim, to_full=False, rtol=rtol)
    if rtol is not None:
        raise TypeError("from_full_tensor: rtol is for the field-type form from_full_tensor(x, field_type, ...)")
    return _apply_basis(full, symmetric_basis(d, k, symmetry).T, dim)


def _field_type_form(x, d) -> bool:
    from escnn.nn import GeometricTensor

    return isinstance(d, FieldType) or (d is None and isinstance(x, GeometricTensor))


def full_field_type(field_type: FieldType) -> FieldType:
    """The FieldType with every symmetric (traceless) tensor field of ``field_type`` replaced by the full tensor field
    of the same order and parity (``tensor_rep(gspace, k, parity)``), in place; ``field_type`` itself when it holds
    full tensor fields only. ``ValueError`` naming the fields that are not tensor fields."""
    if not isinstance(field_type, FieldType):
        raise TypeError(f"field_type must be an escnn FieldType, got {type(field_type).__name__}")
    gs = field_type.gspace
    infos = _tensor_infos(field_type)
    if all(info[2] is None for info in infos):
        return field_type
    return FieldType(gs, [tensor_rep(gs, k, p) if s is not None else rep
                          for rep, (k, p, s) in zip(field_type.representations, infos)])


def _tensor_infos(field_type: FieldType) -> List[Tuple[int, int, object]]:
    """``(k, parity, symmetry)`` of every field (:func:`tensor_symmetry_info`); ``ValueError`` naming the others."""
    return _field_infos(field_type, tensor_symmetry_info, "full, symmetric and symmetric traceless tensor fields "
                        "(escnn_tensor.tensor_rep / tensor_type on this gspace) and the trivial representation (a "
                        "scalar).")


def _field_infos(field_type: FieldType, info, accepted: str) -> list:
    """``info(rep, gspace)`` of every field of ``field_type`` in channel order; ``ValueError`` listing the fields for
    which it is ``None`` (by index, name and size; the first 8) and saying what is ``accepted``."""
    out, bad = [], []
    for i, rep in enumerate(field_type.representations):
        value = info(rep, field_type.gspace)
        if value is None:
            bad.append(f"field {i} ({rep.name}, size {rep.size})")
        out.append(value)
    if bad:
        raise ValueError(
            "FieldType holds fields that are not tensor fields: "
            + ", ".join(bad[:8])
            + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
            + ". Accepted: " + accepted
        )
    return out


def _map_fields(x, field_type, dim: int, to_full: bool, rtol: Optional[float] = None):
    """The field-type forms of :func:`to_full_tensor` / :func:`from_full_tensor`."""
    from escnn.nn import GeometricTensor

    wrap = isinstance(x, GeometricTensor)
    if wrap:
        if field_type is None and not to_full:
            raise TypeError("from_full_tensor(x, field_type): give the field_type of the coordinates wanted")
        if field_type is None:
            field_type = x.type
        full_type = full_field_type(field_type)
        have = x.type
        want = field_type if to_full else full_type
        if have != want:
            raise ValueError(
                f"x is a GeometricTensor of {have.size} channels ({have}), but the field type given needs "
                f"{'it' if to_full else 'the full tensor fields of it'}: {want.size} channels ({want})"
            )
        data, dim = x.tensor, 1
    else:
        full_type = full_field_type(field_type)
        data = x
    d = field_type.gspace.dimensionality
    infos = _tensor_infos(field_type)
    n_in = field_type.size if to_full else full_type.size
    ndim = data.dim() if hasattr(data, "dim") else np.ndim(data)
    if not -ndim <= dim < ndim or data.shape[dim] != n_in:
        raise ValueError(f"axis dim={dim} of x must have {n_in} entries (the fields' channels), got shape "
                         f"{tuple(data.shape)}")
    dim = dim % ndim
    pieces, start, run = [], 0, 0  # run: channels of consecutive full fields, copied as one slice

    def take(a, b):
        index = (slice(None),) * dim + (slice(a, b),)
        return data[index]

    for i, (rep, (k, p, s)) in enumerate(zip(field_type.representations, infos)):
        n_full, n_sym = d**k, rep.size
        if s is None:
            run += n_full
            continue
        if run:
            pieces.append(take(start, start + run))
            start += run
            run = 0
        E = symmetric_basis(d, k, s)
        if to_full:
            pieces.append(_apply_basis(take(start, start + n_sym), E, dim))
            start += n_sym
            continue
        block = take(start, start + n_full)
        coords = _apply_basis(block, E.T, dim)
        if rtol is not None:
            _check_in_subspace(block, _apply_basis(coords, E, dim), rtol, i, k, p, s)
        pieces.append(coords)
        start += n_full
    if run:
        pieces.append(take(start, start + run))
    if len(pieces) == 1:
        out = pieces[0]
    elif isinstance(data, np.ndarray):
        out = np.concatenate(pieces, axis=dim)
    else:
        import torch

        out = torch.cat(pieces, dim=dim)
    if wrap:
        return GeometricTensor(out, full_type if to_full else field_type, coords=x.coords)
    return out


def _check_in_subspace(block, back, rtol: float, i: int, k: int, p: int, symmetry: str) -> None:
    """``ValueError`` if the full tensors ``block`` differ from their projection ``back`` by more than ``rtol`` times
    the largest ``|component|`` of ``block``."""
    if isinstance(block, np.ndarray):
        dev, scale = float(np.abs(block - back).max(initial=0.0)), float(np.abs(block).max(initial=0.0))
    else:
        dev = float((block - back).abs().max()) if block.numel() else 0.0
        scale = float(block.abs().max()) if block.numel() else 0.0
    if not dev <= rtol * scale:  # (NaN deviations refused too)
        raise ValueError(
            f"field {i} (k={k}, parity={p:+d}, {symmetry}): the full tensors given are not {symmetry.replace('_', ' ')}: "
            f"they leave that subspace by up to {dev:.3g}, more than rtol={rtol:g} times their largest |component| "
            f"{scale:.3g}. To project onto it instead: from_full_tensor(x, field_type) without rtol, or "
            f"to_geometric_tensor(..., project=True); or use a full tensor type"
        )


def _apply_basis(x, M: np.ndarray, dim: int):
    if x.shape[dim] != M.shape[1]:
        raise ValueError(f"axis {dim} must have length {M.shape[1]}, got shape {tuple(x.shape)}")
    try:
        import torch

        if isinstance(x, torch.Tensor):
            Mt = torch.as_tensor(M, dtype=x.dtype, device=x.device)
            return torch.movedim(torch.tensordot(Mt, torch.movedim(x, dim, 0), dims=1), 0, dim)
    except ImportError:  # pragma: no cover
        pass
    return np.moveaxis(np.tensordot(M, np.moveaxis(np.asarray(x), dim, 0), axes=1), 0, dim)


class _DenseMatrices:
    """Picklable callable ``GroupElement -> rho(g)`` from stored dense matrices, one per element of an action."""

    def __init__(self, action: _Action, mats: np.ndarray):
        self._index = action.index
        self._elements = action.elements
        self._mats = mats
        self._characters = np.trace(mats, axis1=1, axis2=2)

    def _i(self, g: GroupElement) -> int:
        return _element_index(self._index, self._elements, g)

    def __call__(self, g: GroupElement) -> np.ndarray:
        return self._mats[self._i(g)].copy()

    def character(self, g: GroupElement) -> float:
        return float(self._characters[self._i(g)])


def _decompose_dense(mats: np.ndarray, tables: List[tuple], group_name: str) -> Tuple[List[tuple], np.ndarray]:
    """Split an orthogonal representation given by its matrices ``(|G|, n, n)`` into escnn irreps: ``(ids, Q)`` with
    ``rho(g) = Q blockdiag(psi(g)) Q^T``, ``Q`` orthogonal (intertwiners from the twirl, as :func:`_decompose_orbit`)."""
    G, n, _ = mats.shape
    chi = np.trace(mats, axis1=1, axis2=2)
    ids, cols = [], []
    for pid, r, P, chi_psi in tables:
        m = (chi @ chi_psi) / (chi_psi @ chi_psi)
        mult = int(round(m))
        if abs(m - mult) > 1e-6:
            raise RuntimeError(f"irreps decomposition failed for {group_name}: multiplicity {m} of {pid}")
        if mult == 0:
            continue
        # X (n x r) with rho(g) X = X psi(g): range of T = mean_g rho(g) (x) psi(g) on row-major vec(X)
        T = np.einsum("gij,gab->iajb", mats, P).reshape(n * r, n * r) / G
        U = np.zeros((n, 0))
        found = 0
        for c in range(n * r):
            X = T[:, c].reshape(n, r)
            Y = X - U @ (U.T @ X)
            Y = Y - U @ (U.T @ Y)
            nrm = np.trace(Y.T @ Y) / r
            if nrm < 1e-9:
                continue
            Y = Y / np.sqrt(nrm)
            ids.append(pid)
            cols.append(Y)
            U = np.concatenate([U, Y], axis=1)
            found += 1
            if found == mult:
                break
        if found != mult:
            raise RuntimeError(f"irreps decomposition failed for {group_name}: {found} of {mult} copies of {pid}")
    Q = np.concatenate(cols, axis=1)
    err = np.abs(Q.T @ Q - np.eye(n)).max()
    if err > 1e-9:
        raise RuntimeError(f"irreps decomposition failed for {group_name}: change of basis not orthogonal ({err:.1e})")
    return ids, Q


def _symmetric_rep(gspace: GSpace, act: _Action, k: int, parity: int, symmetry: str) -> Representation:
    group = gspace.fibergroup
    name = f"tensor[k={k},parity={parity:+d},{symmetry}]@{act.key}"
    rep = group.representations.get(name)
    if rep is not None:
        return rep
    n_full = act.d**k
    _check_memory(
        f"tensor_rep({gspace.name}, k={k}, parity={parity:+d}, symmetry={symmetry!r})",
        16.0 * n_full * symmetric_size(act.d, k, symmetry) + 8.0 * len(act.elements) * n_full,
        f"the {n_full} x n embedding into the full tensor and the matrices of every element",
    )
    E = symmetric_basis(act.d, k, symmetry)
    perm, sign = _signed_action(act.matrices, k, parity)  # rho_k(g) e_I = sign e_perm
    mats = np.empty((len(act.elements), E.shape[1], E.shape[1]))
    for t in range(len(act.elements)):
        moved = np.zeros_like(E)
        moved[perm[t]] = sign[t][:, None] * E  # rho_k(g) E
        mats[t] = E.T @ moved
    if symmetry == "symmetric":
        mats = np.rint(mats)  # a signed permutation of the symmetric basis (exact)
    mats.setflags(write=False)
    ids, Q = _decompose_dense(mats, _irrep_tables(group, act.elements, act.key), group.name)
    dense = _DenseMatrices(act, mats)
    nonlinearities = {"norm", "gated", "concatenated"}
    rep = Representation(
        group, name, ids, Q, nonlinearities, representation=dense, character=dense.character,
        change_of_basis_inv=Q.T.copy(), **{_SYM_ATTR: (act.d, k, parity, symmetry, act.key)},
    )
    group.representations[name] = rep
    return rep


def tensor_symmetry_info(rep: Representation, gspace: Optional[GSpace] = None) -> Optional[Tuple[int, int, object]]:
    """``(k, parity, symmetry)`` of a tensor representation from :func:`tensor_rep` (``symmetry`` None for full
    tensors), or ``None`` for any other representation."""
    info = tensor_field_info(rep, gspace)
    if info is not None:
        return info + (None,)
    sym = rep.attributes.get(_SYM_ATTR)
    if sym is None:
        return None
    d, k, p, symmetry, key = sym
    if gspace is not None and key != _action(gspace).key:
        return None
    return (k, p, symmetry)


def tensor_rep(gspace: GSpace, k: int, parity: int, symmetry=None) -> Representation:
    r"""The escnn representation :math:`\rho_{k,parity}` of ``gspace.fibergroup`` on order-``k`` tensors.

    Args:
        gspace: ``hyperoctahedral_gspace(d)`` or a gspace of a subgroup of :math:`B_d` (see
            :func:`escnn_tensor.check_gspace`).
        k: tensor order, an integer ``>= 0``.
        parity: ``+1`` for a true tensor, ``-1`` for a pseudotensor.
        symmetry: ``None`` (all ``d**k`` components), ``'symmetric'`` or ``'symmetric_traceless'``: the
            representation on the subspace of symmetric (traceless) tensors, in the orthonormal basis of
            :func:`symmetric_basis` (off-diagonal components scaled by :math:`\sqrt 2` for order 2), with matrices
            :math:`E^T \rho_{k,parity}(g) E`: orthogonal, signed permutations for ``'symmetric'``, named
            ``"tensor[k=K,parity=±1,<symmetry>]@<action key>"``; ``rep.attributes['escnn_tensor_symmetry']`` holds
            ``(d, k, parity, symmetry, action key)``. For ``k < 2`` the symmetric types are the full ones (and
            ``tensor_rep`` returns the full representation); ``k = 2`` traceless drops the trace, 3D sizes 6, 5 for
            order 2 and 10, 7 for order 3.

    Returns:
        An escnn ``Representation`` of size ``n = d**k`` in the natural tensor basis (see module docs): its
        matrices are exact, ``change_of_basis`` is orthogonal and its ``irreps`` are escnn's irreps of the
        group, listed in the order of ``group.irreps()``. For ``k=0, parity=+1`` this is
        ``group.trivial_representation`` itself, so escnn's scalar-only layers accept it.
        ``supported_nonlinearities`` holds ``'norm'``, ``'gated'`` and ``'concatenated'`` and, only when every
        matrix is a plain permutation (no signs, so a pointwise function commutes with it), ``'pointwise'``.
        The representation is registered in the group under the name ``"tensor[k=K,parity=±1]@<action key>"``;
        calling again with the same arguments returns the same object. ``rep.attributes['escnn_tensor']`` holds
        ``(d, k, parity, action key)``.

    Cost: the group permutes the ``n`` tensor components up to sign, so the decomposition is done orbit by orbit
    of components (blocks of at most ``|G|``), in time about linear in ``n``; the dense ``n x n``
    ``change_of_basis`` and escnn's own check of it (two ``n x n`` products, :math:`O(n^3)`) dominate for large
    ``k`` (3D ``k=6``: ``n = 729``). ``rep(g)`` builds the dense matrix on each call from a stored signed
    permutation.

    Raises:
        TypeError / ValueError: for a bad ``gspace``, ``k`` or ``parity``, naming the argument.
        ValueError: the estimated memory (about ``64 n^2`` bytes: ``Q``, its transpose and escnn's checks)
            exceeds :data:`MEMORY_LIMIT_BYTES` (with the default 2 GiB: 3D ``k <= 7``, 2D ``k <= 12``).
    """
    act = _action(gspace)
    k = check_order(k)
    parity = check_parity(parity)
    symmetry = check_symmetry(symmetry)
    group = gspace.fibergroup
    if symmetry is not None and k >= 2:
        return _symmetric_rep(gspace, act, k, parity, symmetry)
    if k == 0 and parity == 1:
        return group.trivial_representation
    name = f"tensor[k={k},parity={parity:+d}]@{act.key}"
    rep = group.representations.get(name)
    if rep is not None:
        return rep
    n = act.d**k
    _check_memory(
        f"tensor_rep({gspace.name}, k={k}, parity={parity:+d})",
        64.0 * n * n,
        f"a dense {act.d}^{k} x {act.d}^{k} = {n} x {n} change of basis, its inverse and escnn's checks of them",
    )
    perm, sign = _signed_action(act.matrices, k, parity)
    perm.setflags(write=False)
    sign.setflags(write=False)
    ids, Q = _decompose(group, act.elements, act.key, perm, sign)
    nonlinearities = {"norm", "gated", "concatenated"}
    if (sign > 0).all():
        nonlinearities.add("pointwise")
    exact = _ExactMatrices(act, perm, sign)
    rep = Representation(
        group,
        name,
        ids,
        Q,
        nonlinearities,
        representation=exact,
        character=exact.character,
        change_of_basis_inv=Q.T.copy(),
        **{_ATTR: (act.d, k, parity, act.key)},
    )
    group.representations[name] = rep
    return rep


def _parse_fields(fields: FieldSpec) -> List[Tuple[int, int, int]]:
    if isinstance(fields, Mapping):
        items = []
        for key, mult in fields.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(
                    f"fields: a mapping must have (k, parity) keys, got key {key!r}; e.g. {{(0, 1): 4, (1, -1): 2}}"
                )
            items.append((key[0], key[1], mult))
        triples = items
        ordered = True
    elif isinstance(fields, (str, bytes)) or not isinstance(fields, Iterable):
        raise TypeError(
            f"fields must be a sequence of (k, parity, multiplicity) triples or a mapping "
            f"{{(k, parity): multiplicity}}, got {type(fields).__name__}"
        )
    else:
        triples = []
        for i, t in enumerate(fields):
            if not (isinstance(t, (tuple, list)) and len(t) in (3, 4)):
                raise ValueError(
                    f"fields[{i}] must be a (k, parity, multiplicity) triple or a (k, parity, multiplicity, symmetry) "
                    f"tuple, got {t!r}; e.g. [(0, 1, 4), (1, -1, 2), (2, 1, 1, 'symmetric')]"
                )
            triples.append(tuple(t))
        ordered = False
    out = []
    for t in triples:
        k, p, m = t[:3]
        k = check_order(k, "k in fields")
        p = check_parity(p, "parity in fields")
        if not is_integer(m) or m < 0:
            raise ValueError(f"fields: multiplicity of (k={k}, parity={p:+d}) must be an integer >= 0, got {m!r}")
        if len(t) == 4 and check_symmetry(t[3], name="symmetry in fields") is not None and k >= 2:
            out.append((k, p, int(m), check_symmetry(t[3])))
        else:
            out.append((k, p, int(m)))
    if ordered:
        order = canonical_order([(k, p) for k, p, _ in out])
        mult = {(t[0], t[1]): t[2] for t in out}
        out = [(k, p, mult[(k, p)]) for k, p in order]
    if sum(t[2] for t in out) == 0:
        raise ValueError(f"fields must describe at least one field, got {fields!r}")
    return out


def tensor_type(gspace: GSpace, fields: FieldSpec) -> FieldType:
    """An escnn ``FieldType`` made of tensor fields.

    Args:
        gspace: an accepted gspace (see :func:`escnn_tensor.check_gspace`).
        fields: either a sequence of ``(k, parity, multiplicity)`` triples or ``(k, parity, multiplicity,
            symmetry)`` tuples (``symmetry`` as in :func:`tensor_rep`: ``None``, ``'symmetric'``,
            ``'symmetric_traceless'``), laid out in the order given, or a
            mapping ``{(k, parity): multiplicity}``, laid out in :func:`canonical_order` (``k`` ascending, +1
            before -1). Multiplicity 0 entries are skipped.

    Returns:
        ``FieldType(gspace, reps)``. Channel order: the fields one after the other (each ``(k, parity,
        m)`` entry contributes ``m`` consecutive fields), and inside one field the ``d**k`` components of the
        tensor in row-major order of its indices over ``(x, y[, z])``.

    Example:
        >>> gs = hyperoctahedral_gspace(2)
        >>> ft = tensor_type(gs, [(0, +1, 3), (1, +1, 2), (2, -1, 1)])   # 3 + 2*2 + 4 = 11 channels
    """
    _action(gspace)
    reps = []
    for t in _parse_fields(fields):
        reps.extend([tensor_rep(gspace, t[0], t[1], t[3] if len(t) == 4 else None)] * t[2])
    return FieldType(gspace, reps)


def tensor_field_info(rep: Representation, gspace: Optional[GSpace] = None) -> Optional[Tuple[int, int]]:
    """``(k, parity)`` if ``rep`` is a tensor representation (of ``gspace``'s action, if given), else ``None``.

    escnn's trivial representation counts as ``(0, +1)``.
    """
    if rep.is_trivial():
        return (0, 1)
    info = rep.attributes.get(_ATTR)
    if info is None:
        return None
    d, k, p, key = info
    if gspace is not None and key != _action(gspace).key:
        return None
    return (k, p)


def field_signature(field_type: FieldType, with_symmetry: bool = False) -> List[tuple]:
    """The ``(k, parity)`` of every field of ``field_type``, in channel order.

    With ``with_symmetry=True`` symmetric (traceless) tensor fields are accepted too, and their entries are
    ``(k, parity, symmetry)`` (``symmetry`` as in :func:`tensor_rep`: a field of :func:`symmetric_size` channels, the
    coordinates of :func:`symmetric_basis`); full tensor fields stay ``(k, parity)``, so a signature without
    symmetric fields is the same either way.

    Raises:
        TypeError: ``field_type`` is not an escnn ``FieldType``.
        ValueError: some fields are not tensor fields of this gspace (e.g. regular or irrep fields); the
            message lists them by index and name and says what is accepted.
    """
    if not isinstance(field_type, FieldType):
        raise TypeError(
            f"field_signature: field_type must be an escnn FieldType (e.g. from escnn_tensor.tensor_type), got "
            f"{type(field_type).__name__}"
        )
    if with_symmetry:
        return [(k, p) if s is None else (k, p, s) for k, p, s in _tensor_infos(field_type)]
    return _field_infos(field_type, tensor_field_info, "representations from escnn_tensor.tensor_rep / tensor_type "
                        "on this gspace, and the trivial representation (a scalar).")
