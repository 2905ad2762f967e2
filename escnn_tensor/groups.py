r"""The hyperoctahedral group :math:`B_d` and its subgroups as escnn gspaces.

:math:`B_d` is the group of all :math:`d \times d` signed permutation matrices (:math:`2^d d!` elements:
8 for :math:`d=2`, the dihedral group D4; 48 for :math:`d=3`, the full octahedral group :math:`O_h`).
It is exactly the group of origin-preserving isometries of the square / cubic pixel grid, so every element
moves a tensor image to another image on the same grid, with no interpolation.

Conventions
-----------
Coordinates are ``(x, y)`` in 2D and ``(x, y, z)`` in 3D, and the matrix of a group element is the matrix
of escnn's ``gspace.basespace_action`` in that basis, rounded to the exact integers it stands for.

escnn stores a field of a ``GeometricTensor`` with its spatial axes in the order ``(..., -y, x)`` in 2D
and ``(..., -z, -y, x)`` in 3D: the **last** array axis runs along **+x**, the second-last along **-y**
(row index grows downwards), and in 3D the third-last along **-z**. :func:`escnn_to_grid` and
:func:`grid_to_escnn` convert between this layout and the *grid layout* used by ginjax and by
:class:`escnn_tensor.GeometricImage`, in which array axis ``i`` runs along **+x_i**.
"""
from __future__ import annotations

import hashlib
import weakref
from typing import List, Tuple

import numpy as np
import torch
from escnn import gspaces
from escnn.group import GroupElement
from escnn.gspaces import GSpace

__all__ = [
    "hyperoctahedral_gspace",
    "group_matrix",
    "group_elements",
    "group_matrices",
    "check_gspace",
    "check_dimension",
    "is_integer",
    "check_signed_permutation",
    "action_key",
    "grid_to_escnn",
    "escnn_to_grid",
]

_ACCEPTED = (
    "escnn gspaces of the hyperoctahedral group B_d or of one of its subgroups acting on R^d by signed "
    "permutation matrices: d=2: flipRot2dOnR2(N) and rot2dOnR2(N) with N in {1, 2, 4}, flip2dOnR2(axis) "
    "with axis a multiple of pi/4, trivialOnR2(); d=3: fullOctaOnR3(), octaOnR3(), rot2dOnR3(n) with n in "
    "{1, 2, 4}, dihedralOnR3(n), conicalOnR3(n), cylindricalOnR3(n), fullCylindricalOnR3(n) with n in {1, 2, 4}, "
    "mirOnR3(), invOnR3(), trivialOnR3()"
)


def is_integer(x) -> bool:
    """True for Python and numpy integers, False for bools (which Python counts as ints) and everything else."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_signed_permutation(r: np.ndarray) -> bool:
    """Entries in {-1, 0, 1}, exactly one nonzero in every row and every column (``r`` square, integral)."""
    return bool(
        np.isin(r, (-1, 0, 1)).all() and (np.abs(r).sum(axis=0) == 1).all() and (np.abs(r).sum(axis=1) == 1).all()
    )


def check_signed_permutation(m, d: int, name: str = "g") -> np.ndarray:
    """``m`` (numpy array, torch tensor or nested list) as a ``(d, d)`` int64 signed permutation matrix.

    The one check of the project for "is this an element of :math:`B_d`": entries exactly ``-1, 0, 1`` with one
    nonzero per row and column, the matrices that map the pixel grid onto itself. Raises ``TypeError`` /
    ``ValueError`` naming ``name`` otherwise (e.g. for a rotation by 45 degrees).
    """
    if isinstance(m, torch.Tensor):
        m = m.detach().cpu().numpy()
    try:
        a = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a ({d}, {d}) signed permutation matrix or an escnn GroupElement, got {type(m).__name__}"
        ) from None
    if a.shape != (d, d) or not np.array_equal(a, np.rint(a)) or not _is_signed_permutation(a):
        raise ValueError(
            f"{name} must be a ({d}, {d}) signed permutation matrix (entries -1, 0, 1, one non-zero per row and "
            f"column: the elements of the hyperoctahedral group B_{d}, which map the pixel grid onto "
            f"itself), got {np.array2string(a, precision=4)}"
        )
    return a.astype(np.int64)


def check_dimension(d, name: str = "d") -> int:
    """Validate a space dimension: the integer 2 or 3 (escnn has gspaces on R^2 and R^3 only). Returns ``int``."""
    if not is_integer(d):
        raise TypeError(f"{name} must be the integer 2 or 3, got {d!r} of type {type(d).__name__}")
    if d not in (2, 3):
        raise ValueError(f"{name} must be 2 or 3 (escnn has gspaces on R^2 and R^3 only), got {name}={d}")
    return int(d)


def hyperoctahedral_gspace(d: int) -> GSpace:
    r"""The escnn gspace of the full hyperoctahedral group :math:`B_d` acting on :math:`\mathbb{R}^d`.

    Args:
        d: the dimension of space, 2 or 3.

    Returns:
        ``gspaces.flipRot2dOnR2(N=4)`` (D4, 8 elements) for ``d=2``; ``gspaces.fullOctaOnR3()``
        (:math:`O_h`, 48 elements) for ``d=3``.

    Raises:
        TypeError: ``d`` is not an integer.
        ValueError: ``d`` is not 2 or 3.
    """
    if check_dimension(d) == 2:
        return gspaces.flipRot2dOnR2(N=4)
    return gspaces.fullOctaOnR3()


class _Action:
    """The exact integer action of a gspace's (finite) group: elements and their signed permutation matrices."""

    def __init__(self, gspace: GSpace):
        group = gspace.fibergroup
        d = gspace.dimensionality
        if d not in (2, 3):
            raise ValueError(
                f"gspace {gspace.name} acts on R^{d}; escnn_tensor accepts gspaces on R^2 and R^3: {_ACCEPTED}"
            )
        if group.continuous:
            raise ValueError(
                f"gspace {gspace.name} has the continuous group {group.name}, which does not map the pixel grid "
                f"onto itself. Accepted: {_ACCEPTED}"
            )
        elements = list(group.elements)
        matrices = np.zeros((len(elements), d, d), dtype=np.int64)
        for i, g in enumerate(elements):
            m = np.asarray(gspace.basespace_action(g), dtype=np.float64)
            r = np.rint(m)
            if np.abs(m - r).max() > 1e-6 or not _is_signed_permutation(r):
                raise ValueError(
                    f"gspace {gspace.name}: element {g} acts on R^{d} by\n{np.round(m, 4)}\nwhich is not a signed "
                    f"permutation matrix, so its group is not a subgroup of B_{d} acting on the grid. "
                    f"Accepted: {_ACCEPTED}"
                )
            matrices[i] = r.astype(np.int64)
        matrices.setflags(write=False)
        self.elements: List[GroupElement] = elements
        self.matrices = matrices
        self.d = d
        self.index = {g: i for i, g in enumerate(elements)}
        self.key = group.name + ":" + hashlib.sha1(matrices.tobytes()).hexdigest()[:12]


_ACTIONS_BY_ID: dict = {}  # id(gspace) -> (weakref to gspace, _Action); entries leave with their gspace


def _action(gspace: GSpace) -> _Action:
    if not isinstance(gspace, GSpace):
        raise TypeError(
            f"gspace must be an escnn GSpace (e.g. escnn_tensor.hyperoctahedral_gspace(2)), got "
            f"{type(gspace).__name__}"
        )
    # Keyed on the object itself: escnn's GSpace equality is by subgroup id and does not tell apart every
    # pair of gspaces whose actions differ.
    entry = _ACTIONS_BY_ID.get(id(gspace))
    if entry is not None and entry[0]() is gspace:
        return entry[1]
    act = _Action(gspace)
    _ACTIONS_BY_ID[id(gspace)] = (weakref.ref(gspace), act)
    weakref.finalize(gspace, _ACTIONS_BY_ID.pop, id(gspace), None)
    return act


def check_gspace(gspace: GSpace) -> int:
    """Check that ``gspace`` is accepted by escnn_tensor and return its dimension ``d``.

    Raises:
        TypeError: ``gspace`` is not an escnn ``GSpace``.
        ValueError: its group is not a finite group acting on the grid by signed permutation matrices.
    """
    return _action(gspace).d


def action_key(gspace: GSpace) -> str:
    """A string that identifies the exact action of ``gspace``'s group on :math:`\\mathbb{R}^d`.

    Two gspaces with the same key have the same group and the same matrix for every element; use it as a
    cache key. It is ``"<group name>:<hash of the element matrices>"``.
    """
    return _action(gspace).key


def group_elements(gspace: GSpace) -> List[GroupElement]:
    """All elements of ``gspace.fibergroup``, in escnn's order (``list(group.elements)``)."""
    return list(_action(gspace).elements)


def group_matrices(gspace: GSpace) -> np.ndarray:
    """The signed permutation matrices of all group elements, shape ``(|G|, d, d)``, dtype int64.

    Row ``i`` is ``group_matrix(gspace, group_elements(gspace)[i])``. The array is read-only.
    """
    return _action(gspace).matrices


def group_matrix(gspace: GSpace, g: GroupElement) -> np.ndarray:
    r"""The exact signed permutation matrix by which the group element ``g`` acts on :math:`\mathbb{R}^d`.

    The matrix acts on coordinate column vectors ``(x, y)`` (2D) or ``(x, y, z)`` (3D) and is escnn's
    ``gspace.basespace_action(g)`` with its floating-point noise removed, so it moves the grid exactly as
    ``GeometricTensor.transform(g)`` does: a feature at position :math:`a` moves to :math:`M a`.
    In escnn's array layout the last spatial axis is **+x**, the second-last **-y** and, in 3D, the
    third-last **-z** (see :mod:`escnn_tensor.groups`).

    Args:
        gspace: an accepted gspace (see :func:`check_gspace`).
        g: an element of ``gspace.fibergroup``.

    Returns:
        a ``(d, d)`` int64 array with one entry :math:`\pm 1` in every row and column.
    """
    act = _action(gspace)
    if not isinstance(g, GroupElement):
        raise TypeError(
            f"g must be an escnn GroupElement of {gspace.fibergroup.name}, got {type(g).__name__}"
        )
    if g.group != gspace.fibergroup:
        raise ValueError(
            f"g must be an element of {gspace.fibergroup.name} (the group of {gspace.name}), got an element "
            f"of {g.group.name}"
        )
    i = act.index.get(g)
    if i is None:  # elements that compare equal but hash differently: fall back to a scan
        i = next(j for j, h in enumerate(act.elements) if h == g)
    return act.matrices[i].copy()


def _spatial_dims(x: torch.Tensor, d: int, n_trailing: int, name: str) -> Tuple[int, ...]:
    """The ``d`` spatial axes of ``x`` (they end ``n_trailing`` axes before the last), checked to form a square /
    cubic grid; ``name`` is the calling function, for the messages."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: x must be a torch tensor, got {type(x).__name__}")
    d = check_dimension(d)
    if not is_integer(n_trailing) or n_trailing < 0:
        raise ValueError(f"{name}: n_trailing must be a non-negative integer, got {n_trailing!r}")
    n = x.dim() - n_trailing
    if n < d:
        raise ValueError(
            f"{name}: x needs at least d + n_trailing = {d + n_trailing} axes (d={d}, n_trailing={n_trailing}), "
            f"got a tensor of shape {tuple(x.shape)}"
        )
    ax = tuple(range(n - d, n))
    sides = tuple(x.shape[a] for a in ax)
    if len(set(sides)) != 1:
        raise ValueError(
            f"{name}: the d={d} spatial axes of x must have equal sizes (a {'square' if d == 2 else 'cubic'} grid, "
            f"which B_{d} maps onto itself), got spatial sizes {sides} in x of shape {tuple(x.shape)} with "
            f"n_trailing={n_trailing}"
        )
    return ax


def grid_to_escnn(x: torch.Tensor, d: int, n_trailing: int = 0) -> torch.Tensor:
    """Re-lay the ``d`` spatial axes of ``x`` from grid layout (axis i = +x_i) to escnn's layout.

    The spatial axes are the ``d`` axes that end ``n_trailing`` axes before the end of ``x`` (e.g. a
    tensor image ``(..., N, N, d, d)`` has ``n_trailing=2``). In 2D the result has axes ``(-y, x)``; in 3D
    ``(-z, -y, x)``. Exact (a view: transpose and flip), and the inverse of :func:`escnn_to_grid`.

    Raises ``TypeError`` / ``ValueError`` for a non-tensor ``x``, ``d`` not 2 or 3, a negative ``n_trailing``, too
    few axes, or spatial axes of unequal sizes (the grid must be square / cubic).
    """
    ax = _spatial_dims(x, d, n_trailing, "grid_to_escnn")
    x = x.flip(ax[1:]) if d > 1 else x  # +y (and +z) -> -y (-z)
    return x.movedim(ax, ax[::-1])


def escnn_to_grid(x: torch.Tensor, d: int, n_trailing: int = 0) -> torch.Tensor:
    """Re-lay the ``d`` spatial axes of ``x`` from escnn's layout (``(-y, x)`` / ``(-z, -y, x)``) to grid layout.

    The inverse of :func:`grid_to_escnn`; see it for ``n_trailing`` and the errors raised.
    """
    ax = _spatial_dims(x, d, n_trailing, "escnn_to_grid")
    x = x.movedim(ax, ax[::-1])
    return x.flip(ax[1:]) if d > 1 else x
