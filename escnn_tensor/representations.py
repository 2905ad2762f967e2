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


class _ExactMatrices:
    """Picklable callable ``GroupElement -> rho(g)``, looking the exact matrix up by element."""

    def __init__(self, action: _Action, matrices: np.ndarray):
        self._index = action.index
        self._elements = action.elements
        self._matrices = matrices

    def _i(self, g: GroupElement) -> int:
        i = self._index.get(g)
        if i is None:
            i = next(j for j, h in enumerate(self._elements) if h == g)
        return i

    def __call__(self, g: GroupElement) -> np.ndarray:
        return self._matrices[self._i(g)].astype(np.float64)

    def character(self, g: GroupElement) -> float:
        return float(np.trace(self._matrices[self._i(g)]))


def _decompose(group: Group, elements: List[GroupElement], mats: np.ndarray) -> Tuple[List[tuple], np.ndarray]:
    """Split the representation ``g -> mats[i]`` into escnn irreps of ``group`` with an orthogonal basis change.

    Returns ``(irrep ids, Q)`` with ``mats[i] = Q @ blockdiag(psi(g_i) for psi in irreps) @ Q.T``. For each irrep
    ``psi`` the intertwiners ``X`` (``rho(g) X = X psi(g)``) are the range of the twirl projector
    ``T = mean_g psi(g) (x) rho(g)``; orthonormal copies are taken from its columns in order (Gram-Schmidt), so
    the result is the same on every run.
    """
    n = mats.shape[1]
    G = len(elements)
    rho = mats.astype(np.float64)
    ids: List[tuple] = []
    cols: List[np.ndarray] = []
    U = np.zeros((n, 0))
    for psi in group.irreps():
        r = psi.size
        P = np.stack([np.asarray(psi(g), dtype=np.float64) for g in elements])
        # (rho X psi^T)[i, a] = sum_{j, b} rho[i, j] X[j, b] psi[a, b]: the twirl as an (n r) x (n r) matrix
        T = np.einsum("gij,gab->iajb", rho, P).reshape(n * r, n * r) / G
        for c in range(n * r):
            X = T[:, c].reshape(n, r)
            if np.abs(X).max() < 1e-9:
                continue
            Y = X - U @ (U.T @ X)
            a = np.trace(Y.T @ Y) / r
            if a < 1e-9:
                continue
            Y = Y / np.sqrt(a)
            ids.append(psi.id)
            cols.append(Y)
            U = np.concatenate([U, Y], axis=1)
            if U.shape[1] == n:
                break
        if U.shape[1] == n:
            break
    if U.shape[1] != n:
        raise RuntimeError(
            f"escnn has only built irreps of {group.name} that cover {U.shape[1]} of {n} dimensions"
        )
    Q = U
    # verify the decomposition exactly as escnn will use it
    for g, m in zip(elements, rho):
        block = np.zeros((n, n))
        o = 0
        for pid in ids:
            psi = group.irrep(*pid)
            block[o : o + psi.size, o : o + psi.size] = psi(g)
            o += psi.size
        err = np.abs(Q @ block @ Q.T - m).max()
        if err > 1e-9:
            raise RuntimeError(f"irreps decomposition failed for {group.name}: error {err:.2e} at {g}")
    return ids, Q


def tensor_rep(gspace: GSpace, k: int, parity: int) -> Representation:
    r"""The escnn representation :math:`\rho_{k,parity}` of ``gspace.fibergroup`` on order-``k`` tensors.

    Args:
        gspace: ``hyperoctahedral_gspace(d)`` or a gspace of a subgroup of :math:`B_d` (see
            :func:`escnn_tensor.check_gspace`).
        k: tensor order, an integer ``>= 0``.
        parity: ``+1`` for a true tensor, ``-1`` for a pseudotensor.

    Returns:
        An escnn ``Representation`` of size ``d**k`` in the natural tensor basis (see module docs): its
        matrices are exact, ``change_of_basis`` is orthogonal and its ``irreps`` are escnn's irreps of the
        group. For ``k=0, parity=+1`` this is ``group.trivial_representation`` itself, so escnn's scalar-only
        layers accept it. ``supported_nonlinearities`` holds ``'norm'``, ``'gated'`` and ``'concatenated'``
        and, only when every matrix is a plain permutation (no signs, so a pointwise function commutes with
        it), ``'pointwise'``. The representation is registered in the group under the name
        ``"tensor[k=K,parity=±1]@<action key>"``; calling again with the same arguments returns the same
        object. ``rep.attributes['escnn_tensor']`` holds ``(d, k, parity, action key)``.

    Raises:
        TypeError / ValueError: for a bad ``gspace``, ``k`` or ``parity``, naming the argument.
    """
    act = _action(gspace)
    k = check_order(k)
    parity = check_parity(parity)
    group = gspace.fibergroup
    if k == 0 and parity == 1:
        return group.trivial_representation
    name = f"tensor[k={k},parity={parity:+d}]@{act.key}"
    rep = group.representations.get(name)
    if rep is not None:
        return rep
    mats = np.stack([tensor_matrix(m, k, parity) for m in act.matrices])
    mats.setflags(write=False)
    ids, Q = _decompose(group, act.elements, mats)
    nonlinearities = {"norm", "gated", "concatenated"}
    if (mats >= 0).all():
        nonlinearities.add("pointwise")
    exact = _ExactMatrices(act, mats)
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
            if not (isinstance(t, (tuple, list)) and len(t) == 3):
                raise ValueError(
                    f"fields[{i}] must be a (k, parity, multiplicity) triple, got {t!r}; e.g. [(0, 1, 4), (1, -1, 2)]"
                )
            triples.append(tuple(t))
        ordered = False
    out = []
    for k, p, m in triples:
        k = check_order(k, "k in fields")
        p = check_parity(p, "parity in fields")
        if not is_integer(m) or m < 0:
            raise ValueError(f"fields: multiplicity of (k={k}, parity={p:+d}) must be an integer >= 0, got {m!r}")
        out.append((k, p, int(m)))
    if ordered:
        order = canonical_order([(k, p) for k, p, _ in out])
        mult = {(k, p): m for k, p, m in out}
        out = [(k, p, mult[(k, p)]) for k, p in order]
    if sum(m for _, _, m in out) == 0:
        raise ValueError(f"fields must describe at least one field, got {fields!r}")
    return out


def tensor_type(gspace: GSpace, fields: FieldSpec) -> FieldType:
    """An escnn ``FieldType`` made of tensor fields.

    Args:
        gspace: an accepted gspace (see :func:`escnn_tensor.check_gspace`).
        fields: either a sequence of ``(k, parity, multiplicity)`` triples, laid out in the order given, or a
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
    for k, p, m in _parse_fields(fields):
        reps.extend([tensor_rep(gspace, k, p)] * m)
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


def field_signature(field_type: FieldType) -> List[Tuple[int, int]]:
    """The ``(k, parity)`` of every field of ``field_type``, in channel order.

    Raises:
        TypeError: ``field_type`` is not an escnn ``FieldType``.
        ValueError: some fields are not tensor fields of this gspace (e.g. regular or irrep fields); the
            message lists them by index and name and says what is accepted.
    """
    if not isinstance(field_type, FieldType):
        raise TypeError(f"expected an escnn FieldType, got {type(field_type).__name__}")
    out, bad = [], []
    for i, rep in enumerate(field_type.representations):
        info = tensor_field_info(rep, field_type.gspace)
        if info is None:
            bad.append(f"field {i} ({rep.name}, size {rep.size})")
        out.append(info)
    if bad:
        raise ValueError(
            "FieldType holds fields that are not tensor fields: "
            + ", ".join(bad[:8])
            + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
            + ". Accepted: representations from escnn_tensor.tensor_rep / tensor_type on this gspace, and the "
            "trivial representation (a scalar)."
        )
    return out
