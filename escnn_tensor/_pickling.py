"""Pickling support: escnn groups are not picklable, so a gspace is stored as the recipe that rebuilds it."""
from __future__ import annotations

from escnn import gspaces
from escnn.group import GroupElement
from escnn.gspaces import GSpace

__all__ = ["gspace_recipe", "rebuild_gspace"]


def gspace_recipe(gspace: GSpace) -> tuple:
    if not isinstance(gspace, (gspaces.GSpace2D, gspaces.GSpace3D)):
        raise TypeError(f"cannot pickle a GeometricConv on {type(gspace).__name__}: only GSpace2D / GSpace3D are rebuilt")
    sg_id = []
    for part in gspace._sg_id:
        if isinstance(part, GroupElement):
            if part.group.name != "O(3)":
                raise TypeError(f"cannot pickle the subgroup id of {gspace.name}: it holds an element of {part.group.name}")
            part = ("O(3) element", part.value, part.param)
        sg_id.append(part)
    return (type(gspace).__name__, tuple(sg_id))


def rebuild_gspace(recipe: tuple) -> GSpace:
    from escnn.group import o3_group

    kind, sg_id = recipe
    parts = []
    for part in sg_id:
        if isinstance(part, tuple) and len(part) == 3 and part[0] == "O(3) element":
            part = o3_group().element(part[1], part[2])
        parts.append(part)
    return getattr(gspaces, kind)(tuple(parts))


# ----------------------------------------------------------------------------------------------------------------


