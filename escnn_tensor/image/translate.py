r"""Translators between :class:`escnn_tensor.MultiImage` (grid layout, ginjax's) and escnn's ``GeometricTensor``.

Layouts
-------
- ``MultiImage``: per key ``(k, parity)`` a tensor ``(B, C, N, ..., N, D, ..., D)``; array axis ``i`` runs along
  ``+x_i`` and tensor index value ``i`` is the component along ``x_i``.
- ``GeometricTensor``: one tensor ``(B, sum_fields d**k, N, ..., N)`` whose last spatial axis runs along
  ``+x``, the second-last along ``-y`` and (3D) the third-last along ``-z``
  (see :func:`escnn_tensor.grid_to_escnn`). The fields come in the canonical key order
  (:func:`escnn_tensor.canonical_order`), or in the order of a target ``FieldType`` given to
  :func:`to_geometric_tensor` (a type whose fields do not match the data's keys and channel counts is refused);
  a key with ``C`` channels gives ``C`` fields of type :func:`escnn_tensor.tensor_rep` ``(gspace, k, parity)``
  (consecutive in the canonical order), each holding its ``d**k`` components in row-major order of the tensor
  indices (the natural basis of ``tensor_rep``).

Both directions are pure re-indexing (reshape, permute, flip, concatenate/split), so they are bit-exact and
differentiable, and they commute exactly with the group:
``to_geometric_tensor(mi.times_group_element(g), gs) == to_geometric_tensor(mi, gs).transform(g)``.

Symmetric and symmetric traceless fields (``tensor_rep(gspace, k, parity, symmetry)``): a MultiImage, like ginjax,
stores full tensors, so :func:`from_geometric_tensor` embeds such fields into full tensors of key ``(k, parity)``
(:func:`escnn_tensor.representations.to_full_tensor`), and :func:`to_geometric_tensor` to a target type with such
fields takes the coordinates of the full tensors in the symmetric basis after checking that they are symmetric
(traceless) to a tolerance; a full tensor that is not raises ``ValueError`` (``project=True`` projects onto the
subspace instead). These steps multiply by the basis (entries such as :math:`1/\sqrt 2`), so they are exact to
rounding (about 1e-16 relative in float64), not bit for bit; they commute with the group to rounding.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple, Union

import torch
from escnn.gspaces import GSpace
from escnn.nn import FieldType, GeometricTensor

from ..groups import check_gspace, escnn_to_grid, grid_to_escnn
from ..representations import field_signature, from_full_tensor, full_field_type, tensor_type, to_full_tensor
from .multi_image import MultiImage

__all__ = ["to_geometric_tensor", "from_geometric_tensor", "multi_image_field_type"]


def multi_image_field_type(multi_image: MultiImage, gspace: GSpace) -> FieldType:
    """The ``FieldType`` of :func:`to_geometric_tensor`: ``tensor_type(gspace, {(k, parity): channels})``,
    fields in canonical key order."""
    return tensor_type(gspace, [(k, p, c) for (k, p), c in multi_image.signature])


def _describe(keys: List[Tuple[int, int]]) -> str:
    counts: Dict[Tuple[int, int], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{c} x (k={k}, parity={p:+d})" for (k, p), c in sorted(counts.items())) or "no fields"


def _field_order(canonical: FieldType, target: FieldType) -> List[int]:
    """For every field of ``target``, the index of the field of the canonical layout that goes there: the ``c``-th
    field of type ``(k, parity)`` in ``target`` takes the ``c``-th such field (channel) of the data. Types are
    compared by :func:`escnn_tensor.field_signature` (on a subgroup gspace, tensor types the subgroup cannot tell
    apart, e.g. scalars and pseudoscalars under rotations only, count as one)."""
    have = field_signature(canonical)
    want = field_signature(target)  # raises ValueError naming fields that are not tensor fields
    queues: Dict[Tuple[int, int], List[int]] = {}
    for i, key in enumerate(have):
        queues.setdefault(key, []).append(i)
    if sorted(have) != sorted(want):
        raise ValueError(
            f"target field type holds {_describe(want)}, but the MultiImage holds {_describe(have)}: every "
            f"(k, parity) needs as many fields of that type as the MultiImage has channels (the order is free)"
        )
    return [queues[key].pop(0) for key in want]


def to_geometric_tensor(multi_image: MultiImage, target: Union[GSpace, FieldType], *, project: bool = False,
                        rtol: Optional[float] = None) -> GeometricTensor:
    """Lay a ``MultiImage`` out as an escnn ``GeometricTensor``.

    Args:
        multi_image: a :class:`escnn_tensor.MultiImage` with ``D == gspace.dimensionality``.
        target: an accepted gspace (``hyperoctahedral_gspace(D)`` or a subgroup's, see
            :func:`escnn_tensor.check_gspace`): the fields come in canonical key order, the type is
            :func:`multi_image_field_type`; or a ``FieldType`` of tensor fields on such a gspace (e.g. a
            hand-built ``tensor_type(gs, [(2, +1, 1), (0, +1, 1)])``): the fields come in *its* order and the
            result has exactly this type. Channel ``c`` of key ``(k, parity)`` becomes the ``c``-th field of type
            ``(k, parity)`` in the type's order (the inverse of :func:`from_geometric_tensor`). A symmetric or
            symmetric traceless field of the type (``tensor_rep(gspace, k, parity, symmetry)``) takes a full tensor
            channel of key ``(k, parity)`` and holds its coordinates in
            :func:`escnn_tensor.representations.symmetric_basis`.
        project: for the symmetric (traceless) fields of a target type: ``False`` (default) checks that every full
            tensor lies in the subspace, up to ``rtol`` times the largest ``|component|`` of that field, and raises
            ``ValueError`` naming the field otherwise (no data is silently dropped); ``True`` projects onto the
            subspace (the symmetric, traceless part) without a check.
        rtol: the tolerance of that check; default 1e-10 for float64 data and 1e-5 otherwise.

    Returns:
        ``GeometricTensor`` of shape ``(B, sum_keys C * D**k, N, ..., N)`` in escnn's layout. ``is_torus`` is not
        carried (escnn has no such notion). Bit-exact and differentiable.

    Raises:
        TypeError: ``multi_image`` is not a MultiImage or ``target`` neither a GSpace nor a FieldType.
        ValueError: the dimensions differ, or the type's fields cannot be matched to the data's: a ``(k, parity)``
            whose number of fields differs from the MultiImage's channel count (a missing or extra key included),
            or fields that are not tensor fields. The message lists both. Also: a full tensor that is not symmetric
            (traceless) for a symmetric (traceless) field of the target, with ``project=False``.
    """
    if not isinstance(project, bool):
        raise TypeError(f"project must be True or False, got {project!r}")
    if rtol is not None and (isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not rtol >= 0):
        raise ValueError(f"rtol must be a number >= 0 or None, got {rtol!r}")
    if not isinstance(multi_image, MultiImage):
        raise TypeError(f"multi_image must be an escnn_tensor.MultiImage, got {type(multi_image).__name__}")
    if isinstance(target, FieldType):
        gspace = target.gspace
    elif isinstance(target, GSpace):
        gspace = target
    else:
        raise TypeError(
            f"target must be an escnn GSpace (fields in canonical order) or a FieldType (fields in its order), "
            f"got {type(target).__name__}"
        )
    d = check_gspace(gspace)
    if d != multi_image.D:
        raise ValueError(f"gspace {gspace.name} acts on R^{d}, but the MultiImage has D={multi_image.D}")
    if multi_image.n_leading != 2:
        raise ValueError(
            f"to_geometric_tensor needs a MultiImage with the (batch, channels) leading axes, got "
            f"{multi_image.n_leading} leading axes (combine_axes merges extra ones; an empty MultiImage has none)"
        )
    if isinstance(target, FieldType):
        full = full_field_type(target)  # ValueError naming fields that are not tensor fields
        if full is not target:
            gt = to_geometric_tensor(multi_image, full)
            if rtol is None:
                rtol = 1e-10 if gt.tensor.dtype == torch.float64 else 1e-5
            return from_full_tensor(gt, target, rtol=None if project else rtol)
    canonical = multi_image_field_type(multi_image, gspace)
    order = None if target is gspace else _field_order(canonical, target)
    blocks = []
    for (k, _), x in multi_image.items():
        B, C = x.shape[:2]
        x = x.reshape((B, C) + x.shape[2 : 2 + d] + (d**k,))  # (B, C, N.., d^k)
        x = x.movedim(-1, 2).reshape((B, C * d**k) + x.shape[2 : 2 + d])  # channel c*d^k + component
        blocks.append(grid_to_escnn(x, d))
    tensor = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0].contiguous()
    if order is None:
        return GeometricTensor(tensor, canonical)
    if order != sorted(order):
        starts = [0]
        for rep in canonical.representations:
            starts.append(starts[-1] + rep.size)
        tensor = torch.cat([tensor[:, starts[i] : starts[i + 1]] for i in order], dim=1)
    return GeometricTensor(tensor, target)


def from_geometric_tensor(
    gt: GeometricTensor, is_torus: Union[bool, Tuple[bool, ...]] = True
) -> MultiImage:
    """Read an escnn ``GeometricTensor`` of tensor fields as a ``MultiImage``.

    Args:
        gt: a ``GeometricTensor`` whose field type holds only tensor fields
            (:func:`escnn_tensor.tensor_rep`; escnn's trivial representation counts as ``(0, +1)``), in any
            order: fields with the same ``(k, parity)`` become the channels of that key, in the order they
            appear. For a type laid out in canonical order (as :func:`to_geometric_tensor` makes) the round
            trip is the identity, bit for bit. Symmetric and symmetric traceless fields are embedded into full
            tensors (:func:`escnn_tensor.representations.to_full_tensor`) and become channels of key
            ``(k, parity)`` like full ones; ``to_geometric_tensor(mi, gt.type)`` gives them back (to rounding).
        is_torus: the ``is_torus`` of the result.

    Raises:
        ValueError: the field type holds fields that are not tensor fields (e.g. regular ones); the message
            names them and what is accepted.
    """
    if not isinstance(gt, GeometricTensor):
        raise TypeError(f"gt must be an escnn GeometricTensor, got {type(gt).__name__}")
    d = check_gspace(gt.type.gspace)
    if full_field_type(gt.type) is not gt.type:  # (ValueError naming fields that are not tensor fields)
        gt = to_full_tensor(gt)
    ft = gt.type
    keys = field_signature(ft)  # raises ValueError naming non-tensor fields
    x = escnn_to_grid(gt.tensor, d)  # (B, channels, N..) in grid layout
    B = x.shape[0]
    spatial = tuple(x.shape[2:])
    pieces: Dict[Tuple[int, int], List[torch.Tensor]] = {}
    start = 0
    for k, p in keys:
        size = d**k
        field = x[:, start : start + size]  # (B, d^k, N..)
        pieces.setdefault((k, p), []).append(field.movedim(1, -1).reshape((B, 1) + spatial + (d,) * k))
        start += size
    data = {key: torch.cat(v, dim=1) if len(v) > 1 else v[0] for key, v in pieces.items()}
    return MultiImage(data, d, is_torus)
