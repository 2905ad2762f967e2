r"""Pickling and copying of escnn's groups, group elements, representations, gspaces and field types.

escnn's groups hold closures (irreps, subgroup maps), so neither they nor anything that refers to them (gspaces,
representations, ``FieldType``\ s, hence every escnn module) can be pickled as they are. Importing this module
(``import escnn_tensor`` does) gives these classes a ``__reduce_ex__`` that stores a small *recipe* and rebuilds the
object through escnn's own cached constructors when unpickled:

=====================  =================================================================================================
object                 recipe, and how it is rebuilt
=====================  =================================================================================================
``Group``              class name and ``group._keys`` -> ``escnn.group.groups_dict[name]._generator(**keys)`` (the
                       factories ``cyclic_group(N)``, ``dihedral_group(N)``, ``o2_group()``, ``octa_group()``,
                       ``full_octa_group()``, ... return these same cached instances); continuous groups also keep their
                       ``maximum_frequency``.
``GroupElement``       group, ``value``, ``param`` -> ``group.element(value, param)``.
``GSpace``             ``GSpace2D`` / ``GSpace3D``: the subgroup id in O(2) / O(3) (:func:`gspace_recipe`) ->
                       ``GSpace2D(id)`` / ``GSpace3D(id)``; ``GSpace0D``: its group -> ``no_base_space(group)``.
``Representation``     tensor representations: ``escnn_tensor.tensor_rep(gspace, k, parity)`` on a gspace of their
                       action (or, if no such gspace is alive any more, the representation itself with its exact
                       matrices, registered again under its name); irreps: ``group.irrep(*id)``; representations
                       registered in ``group.representations`` under their name (``'regular'``, ``'trivial'``,
                       quotient representations, ...): looked up by name, built by escnn or from irreps and change of
                       basis when missing; any other representation (e.g. from ``directsum``): rebuilt from its irreps
                       and change of basis, which determine it (:math:`\rho(g) = Q\, (\oplus_i \psi_i(g))\, Q^{-1}`).
``FieldType``          gspace and representations -> ``FieldType(gspace, representations)``.
=====================  =================================================================================================

In the process that pickled them, groups, irreps and registered representations come back as the *same* objects;
rebuilt gspaces and field types compare equal (``==``) to the originals, which is how escnn compares them.

``copy.deepcopy`` / ``copy.copy`` return these objects themselves (they are immutable descriptions, shared between
modules as escnn does), so deep copies of escnn modules share types with the original. escnn's convolutions keep, in
eval mode, an expanded filter that is a non-leaf tensor of the autograd graph (``torch`` refuses to deep-copy those):
when such a module is pickled or deep-copied, buffers that are non-leaf tensors are stored detached (same values).

Anything that cannot be rebuilt raises ``TypeError`` at pickling time, naming the object and why: groups, gspaces
and field types of classes escnn does not construct itself, and an unregistered representation whose name another
representation holds in ``group.representations``. Unpickling raises ``ValueError`` if, in the new process, a
*different* representation holds the name of an unregistered one.
"""
from __future__ import annotations

from typing import Any, Tuple

import escnn.group
import numpy as np
import torch
from escnn import gspaces
from escnn.group import Group, GroupElement, IrreducibleRepresentation, Representation
from escnn.gspaces import GSpace
from escnn.nn import FieldType
from escnn.nn.modules.equivariant_module import EquivariantModule

__all__ = ["gspace_recipe", "rebuild_gspace", "register_reducers"]

# Representation.attributes key set by escnn_tensor.tensor_rep: (d, k, parity, action key)
_TENSOR_ATTR = "escnn_tensor"


# ----------------------------------------------------------------------------------------------------------------
# groups and elements


def _group_recipe(group: Group) -> Tuple[str, tuple, Any]:
    cls = type(group)
    if escnn.group.groups_dict.get(cls.__name__) is not cls:
        raise TypeError(
            f"cannot pickle the group {group.name} of class {cls.__name__}: only escnn's groups "
            f"({', '.join(sorted(escnn.group.groups_dict))}) are rebuilt from their cached constructors"
        )
    keys = tuple(sorted(group._keys.items()))
    return cls.__name__, keys, getattr(group, "_maximum_frequency", None)


def _rebuild_group(name: str, keys: tuple, maximum_frequency: Any = None) -> Group:
    kwargs = dict(keys)
    if maximum_frequency is not None:
        kwargs["maximum_frequency"] = maximum_frequency
    return escnn.group.groups_dict[name]._generator(**kwargs)


def _reduce_group(self: Group, protocol: int = 2):
    return _rebuild_group, _group_recipe(self)


def _rebuild_element(group: Group, value: Any, param: str) -> GroupElement:
    return group.element(value, param)


def _reduce_element(self: GroupElement, protocol: int = 2):
    return _rebuild_element, (self.group, self.value, self.param)


# ----------------------------------------------------------------------------------------------------------------
# gspaces


def _o_group(kind: str) -> Group:
    return escnn.group.o2_group() if kind == "GSpace2D" else escnn.group.o3_group()


def gspace_recipe(gspace: GSpace) -> tuple:
    """A picklable description of ``gspace`` from which :func:`rebuild_gspace` builds an equal gspace.

    ``(kind, payload, name, maximum_frequency)``: ``kind`` is ``"GSpace2D"`` / ``"GSpace3D"`` with ``payload`` the
    subgroup id in O(2) / O(3) (group elements encoded as escnn encodes them for pickling), or ``"GSpace0D"`` with
    ``payload`` the group; ``name`` is kept because escnn hashes gspaces by name and derives it from the id as the
    user wrote it; ``maximum_frequency`` of a continuous group (else ``None``). Raises ``TypeError`` for other gspace
    classes.
    """
    kind = type(gspace).__name__
    if kind not in ("GSpace0D", "GSpace2D", "GSpace3D") or type(gspace) is not getattr(gspaces, kind):
        raise TypeError(
            f"cannot pickle the gspace {gspace.name} of class {type(gspace).__name__}: only escnn's GSpace0D, "
            f"GSpace2D and GSpace3D are rebuilt"
        )
    if kind == "GSpace0D":
        payload = gspace.fibergroup
    else:
        payload = _o_group(kind)._encode_subgroup_id_pickleable(gspace._sg_id)
    return (kind, payload, gspace.name, getattr(gspace.fibergroup, "_maximum_frequency", None))


def _decode_legacy(part):
    # recipes written by escnn_tensor 0.1.0 marked O(3) elements as ("O(3) element", value, param)
    if isinstance(part, tuple) and len(part) == 3 and part[0] == "O(3) element":
        return ("GROUPELEMENT", part[1], part[2])
    if isinstance(part, tuple):
        return tuple(_decode_legacy(p) for p in part)
    return part


def rebuild_gspace(recipe: tuple) -> GSpace:
    """The gspace described by :func:`gspace_recipe`: a new object, equal to the original, with the same name and
    hash (also accepts the ``(kind, subgroup id)`` recipes of escnn_tensor 0.1.0)."""
    if not isinstance(recipe, tuple) or len(recipe) not in (2, 4):
        raise ValueError(f"recipe must be a tuple made by gspace_recipe, got {recipe!r}")
    kind, payload = recipe[:2]
    name, maximum_frequency = recipe[2:] if len(recipe) == 4 else (None, None)
    if kind == "GSpace0D":
        gspace = gspaces.no_base_space(payload)
    elif kind in ("GSpace2D", "GSpace3D"):
        sg_id = _o_group(kind)._decode_subgroup_id_pickleable(_decode_legacy(payload))
        kwargs = {} if maximum_frequency is None else {"maximum_frequency": maximum_frequency}
        gspace = getattr(gspaces, kind)(sg_id, **kwargs)
    else:
        raise ValueError(f"recipe must describe a GSpace0D, GSpace2D or GSpace3D, got kind {kind!r}")
    if name is not None:
        gspace.name = name
    return gspace


def _reduce_gspace(self: GSpace, protocol: int = 2):
    return rebuild_gspace, (gspace_recipe(self),)


# ----------------------------------------------------------------------------------------------------------------
# representations


def _live_gspace_with_key(key: str):
    """A gspace of this process whose action has ``key`` (escnn_tensor.groups keeps a weak registry of them)."""
    from .groups import _ACTIONS_BY_ID

    for ref, act in list(_ACTIONS_BY_ID.values()):
        gs = ref()
        if gs is not None and act.key == key:
            return gs
    return None


def _by_value(rep: Representation) -> tuple:
    return (
        rep.name,
        list(rep.irreps),
        rep.change_of_basis,
        rep.change_of_basis_inv,
        sorted(rep.supported_nonlinearities),
        dict(rep.attributes),
    )


def _build_by_value(group: Group, value: tuple) -> Representation:
    name, irreps, cob, cob_inv, nonlinearities, attributes = value
    return Representation(group, name, irreps, cob, set(nonlinearities), change_of_basis_inv=cob_inv, **attributes)


def _rebuild_tensor_rep(group: Group, name: str, recipe: tuple, k: int, parity: int) -> Representation:
    rep = group.representations.get(name)
    if rep is not None:
        return rep
    from .representations import tensor_rep

    rep = tensor_rep(rebuild_gspace(recipe), k, parity)
    if rep.name != name:
        raise RuntimeError(
            f"unpickling the tensor representation {name!r}: the rebuilt gspace gives {rep.name!r}; the group action "
            f"differs between the escnn versions that pickled and unpickled it"
        )
    return rep


def _rebuild_registered_by_value(group: Group, value: tuple, representation, character) -> Representation:
    rep = group.representations.get(value[0])
    if rep is None:
        name, irreps, cob, cob_inv, nonlinearities, attributes = value
        rep = Representation(
            group,
            name,
            irreps,
            cob,
            set(nonlinearities),
            representation=representation,
            character=character,
            change_of_basis_inv=cob_inv,
            **attributes,
        )
        group.representations[name] = rep
    return rep


def _rebuild_irrep(group: Group, id: tuple) -> Representation:
    return group.irrep(*id)


def _rebuild_named(group: Group, value: tuple) -> Representation:
    name = value[0]
    rep = group.representations.get(name)
    if rep is None and name == "regular":
        rep = group.regular_representation
    elif rep is None and name == "trivial":
        rep = group.trivial_representation
    if rep is None:
        rep = _build_by_value(group, value)
        group.representations[name] = rep
    return rep


def _same_by_value(rep: Representation, value: tuple) -> bool:
    name, irreps, cob, _, nonlinearities, _ = value
    return (
        rep.name == name
        and [tuple(i) for i in rep.irreps] == [tuple(i) for i in irreps]
        and rep.change_of_basis.shape == cob.shape
        and bool(np.allclose(rep.change_of_basis, cob))
        and sorted(rep.supported_nonlinearities) == list(nonlinearities)
    )


def _rebuild_unnamed(group: Group, value: tuple) -> Representation:
    known = group.representations.get(value[0])
    if known is None:
        return _build_by_value(group, value)
    if _same_by_value(known, value):  # the same representation was registered after pickling (one per name)
        return known
    raise ValueError(
        f"cannot unpickle the representation {value[0]!r} of {group.name}: a different representation of that name "
        f"is registered in group.representations of this process"
    )


def _reduce_representation(self: Representation, protocol: int = 2):
    group = self.group
    info = self.attributes.get(_TENSOR_ATTR)
    if info is not None:
        d, k, parity, key = info
        gs = _live_gspace_with_key(key)
        if gs is None:  # its gspace is gone: store the representation itself (its exact-matrix callable included)
            return _rebuild_registered_by_value, (group, _by_value(self), self.representation, self._characters)
        return _rebuild_tensor_rep, (group, self.name, gspace_recipe(gs), k, parity)
    if isinstance(self, IrreducibleRepresentation):
        return _rebuild_irrep, (group, tuple(self.id))
    registered = group.representations.get(self.name)
    if registered is self:
        return _rebuild_named, (group, _by_value(self))
    if registered is not None:
        raise TypeError(
            f"cannot pickle the representation {self.name!r} of {group.name}: another representation of the same "
            f"name is registered in group.representations, so it could not be told apart when unpickled; give it "
            f"another name"
        )
    return _rebuild_unnamed, (group, _by_value(self))


# ----------------------------------------------------------------------------------------------------------------
# field types


def _rebuild_field_type(gspace: GSpace, representations: tuple) -> FieldType:
    return FieldType(gspace, list(representations))


def _reduce_field_type(self: FieldType, protocol: int = 2):
    if type(self) is not FieldType:
        raise TypeError(f"cannot pickle {type(self).__name__}: only escnn's FieldType itself is rebuilt")
    return _rebuild_field_type, (self.gspace, tuple(self.representations))


# ----------------------------------------------------------------------------------------------------------------
# escnn modules: non-leaf buffers


def _module_getstate(self: torch.nn.Module) -> dict:
    state = torch.nn.Module.__getstate__(self)
    buffers = state.get("_buffers")
    if buffers and any(b is not None and b.grad_fn is not None for b in buffers.values()):
        state["_buffers"] = type(buffers)(
            (name, b.detach() if b is not None and b.grad_fn is not None else b) for name, b in buffers.items()
        )
    return state


# ----------------------------------------------------------------------------------------------------------------


def _identity_copy(self, memo: Any = None):
    return self


_PATCHES = (
    (Group, _reduce_group),
    (GroupElement, _reduce_element),
    (GSpace, _reduce_gspace),
    (Representation, _reduce_representation),
    (FieldType, _reduce_field_type),
)


def register_reducers() -> None:
    """Install the reducers (done once when :mod:`escnn_tensor` is imported; calling again is harmless).

    Sets ``__reduce_ex__``, ``__deepcopy__`` and ``__copy__`` on escnn's ``Group``, ``GroupElement``, ``GSpace``,
    ``Representation`` and ``FieldType`` (inherited by every subclass), and ``__getstate__`` on
    ``EquivariantModule`` (non-leaf buffers stored detached; subclasses with their own ``__getstate__`` keep it).
    """
    for cls, reducer in _PATCHES:
        cls.__reduce_ex__ = reducer
        cls.__deepcopy__ = _identity_copy
        cls.__copy__ = _identity_copy
    if EquivariantModule.__dict__.get("__getstate__") is None:
        EquivariantModule.__getstate__ = _module_getstate


register_reducers()
