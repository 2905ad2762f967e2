r"""The symmetry group of a grid: the subgroup of :math:`B_d` that maps a (possibly rectangular) grid onto itself.

A group element permutes and flips the axes of the grid. Flipping an axis always maps the grid onto itself (about
its centre); swapping two axes does only when they have the same number of points **and** the same boundary
condition (periodic or not). :func:`grid_symmetry` picks the largest such group that escnn has as a gspace:

==========================================  ==============================================  =======
grid                                        gspace                                          group
==========================================  ==============================================  =======
2D square (same boundaries)                 ``flipRot2dOnR2(N=4)``                          ``D4``
2D rectangle (or different boundaries)      ``flipRot2dOnR2(N=2)``: the flips of x and y    ``D2``
3D cube (same boundaries)                   ``fullOctaOnR3()``                              ``Oh``
3D, x and y alike, z not                    ``fullCylindricalOnR3(n=4)``: D4 in xy, flip z  ``D4h``
3D, otherwise                               ``fullCylindricalOnR3(n=2, axis=0)``: the flips ``D2h``
==========================================  ==============================================  =======

In 3D with the alike pair ``(x, z)`` or ``(y, z)`` the group is the flips ``D2h``: escnn's cylindrical groups turn
about the z axis, so the larger group of that box is not offered (a subgroup is still exact, only smaller).
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple

from escnn import gspaces
from escnn.gspaces import GSpace

__all__ = ["grid_symmetry", "symmetry_gspace", "group_name", "GROUPS"]

GROUPS = ("D4", "D2", "Oh", "D4h", "D2h")
"""The short names of the groups :func:`grid_symmetry` chooses from."""


@functools.lru_cache(maxsize=None)
def symmetry_gspace(name: str) -> GSpace:
    """The escnn gspace of the group ``name`` (one of :data:`GROUPS`); one object per name (cached)."""
    if name == "D4":
        from ..groups import hyperoctahedral_gspace

        return hyperoctahedral_gspace(2)
    if name == "Oh":
        from ..groups import hyperoctahedral_gspace

        return hyperoctahedral_gspace(3)
    if name == "D2":
        return gspaces.flipRot2dOnR2(N=2)
    if name == "D4h":
        return gspaces.fullCylindricalOnR3(n=4)
    if name == "D2h":
        return gspaces.fullCylindricalOnR3(n=2, axis=0.0)
    raise ValueError(f"unknown group {name!r}; the groups are {list(GROUPS)}")


def grid_symmetry(grid: Sequence[int], periodic: Optional[Sequence[bool]] = None) -> Tuple[str, GSpace]:
    """``(name, gspace)`` of the largest group in :data:`GROUPS` that maps ``grid`` onto itself.

    Args:
        grid: ``(n_x, n_y[, n_z])``, the number of points along each axis.
        periodic: per axis, whether the boundary is periodic (``None``: all alike).
    """
    grid = tuple(int(n) for n in grid)
    if len(grid) not in (2, 3):
        raise ValueError(f"grid must have 2 or 3 axes, got {grid}")
    bc = tuple(periodic) if periodic is not None else (True,) * len(grid)
    alike = lambda i, j: grid[i] == grid[j] and bc[i] == bc[j]  # noqa: E731
    if len(grid) == 2:
        name = "D4" if alike(0, 1) else "D2"
    elif alike(0, 1) and alike(1, 2):
        name = "Oh"
    elif alike(0, 1):
        name = "D4h"
    else:
        name = "D2h"
    return name, symmetry_gspace(name)


def group_name(gspace: GSpace) -> str:
    """The short name of ``gspace``'s group: one of :data:`GROUPS` when it is one of those gspaces (by its exact
    action), else escnn's name of the group."""
    from ..groups import action_key

    key = action_key(gspace)
    for name in GROUPS:
        if (name in ("D2", "D4")) == (gspace.dimensionality == 2) and action_key(symmetry_gspace(name)) == key:
            return name
    return gspace.fibergroup.name
