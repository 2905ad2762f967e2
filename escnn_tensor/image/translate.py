r"""Translators between :class:`escnn_tensor.MultiImage` (grid layout, ginjax's) and escnn's ``GeometricTensor``.

Layouts
-------
- ``MultiImage``: per key ``(k, parity)`` a tensor ``(B, C, N, ..., N, D, ..., D)``; array axis ``i`` runs along
  ``+x_i`` and tensor index value ``i`` is the component along ``x_i``.
- ``GeometricTensor``: one tensor ``(B, sum_fields d**k, N, ..., N)`` whose last spatial axis runs along
  ``+x``, the second-last along ``-y`` and (3D) the third-last along ``-z``
  (see :func:`escnn_tensor.grid_to_escnn`). The fields come in the canonical key order
  (:func:`escnn_tensor.canonical_order`); a key with ``C`` channels gives ``C`` consecutive fields of type
  :func:`escnn_tensor.tensor_rep` ``(gspace, k, parity)``, each holding its ``d**k`` components in row-major
  order of the tensor indices (the natural basis of ``tensor_rep``).

Both directions are pure re-indexing (reshape, permute, flip, concatenate/split), so they are bit-exact and
differentiable, and they commute exactly with the group:
``to_geometric_tensor(mi.times_group_element(g), gs) == to_geometric_tensor(mi, gs).transform(g)``.
"""
from __future__ import annotations

from typing import Dict, List, Tuple, Union

import torch
from escnn.gspaces import GSpace
from escnn.nn import FieldType, GeometricTensor

from ..groups import check_gspace, escnn_to_grid, grid_to_escnn
from ..representations import field_signature, tensor_type
from .multi_image import MultiImage

__all__ = ["to_geometric_tensor", "from_geometric_tensor", "multi_image_field_type"]


def multi_image_field_type(multi_image: MultiImage, gspace: GSpace) -> FieldType:
    """The ``FieldType`` of :func:`to_geometric_tensor`: ``tensor_type(gspace, {(k, parity): channels})``,
    fields in canonical key order."""
    return tensor_type(gspace, [(k, p, c) for (k, p), c in multi_image.signature])


def to_geometric_tensor(multi_image: MultiImage, gspace: GSpace) -> GeometricTensor:
    """Lay a ``MultiImage`` out as an escnn ``GeometricTensor``.

    Args:
        multi_image: a :class:`escnn_tensor.MultiImage` with ``D == gspace.dimensionality``.
        gspace: an accepted gspace (``hyperoctahedral_gspace(D)`` or a subgroup's, see
            :func:`escnn_tensor.check_gspace`).

    Returns:
        ``GeometricTensor`` of shape ``(B, sum_keys C * D**k, N, ..., N)`` in escnn's layout, with field type
        :func:`multi_image_field_type`. ``is_torus`` is not carried (escnn has no such notion).
        Bit-exact and differentiable.
    """
    if not isinstance(multi_image, MultiImage):
        raise TypeError(f"multi_image must be an escnn_tensor.MultiImage, got {type(multi_image).__name__}")
    d = check_gspace(gspace)
    if d != multi_image.D:
        raise ValueError(
            f"gspace {gspace.name} acts on R^{d}, but the MultiImage has D={multi_image.D}"
        )
    if multi_image.n_leading != 2:
        raise ValueError(
            f"to_geometric_tensor needs a MultiImage with the (batch, channels) leading axes, got "
            f"{multi_image.n_leading} leading axes (combine_axes merges extra ones; an empty MultiImage has none)"
        )
    blocks = []
    for (k, _), x in multi_image.items():
        B, C = x.shape[:2]
        x = x.reshape((B, C) + x.shape[2 : 2 + d] + (d**k,))  # (B, C, N.., d^k)
        x = x.movedim(-1, 2).reshape((B, C * d**k) + x.shape[2 : 2 + d])  # channel c*d^k + component
        blocks.append(grid_to_escnn(x, d))
    tensor = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0].contiguous()
    return GeometricTensor(tensor, multi_image_field_type(multi_image, gspace))


def from_geometric_tensor(
    gt: GeometricTensor, is_torus: Union[bool, Tuple[bool, ...]] = True
) -> MultiImage:
    """Read an escnn ``GeometricTensor`` of tensor fields as a ``MultiImage``.

    Args:
        gt: a ``GeometricTensor`` whose field type holds only tensor fields
            (:func:`escnn_tensor.tensor_rep`; escnn's trivial representation counts as ``(0, +1)``), in any
            order: fields with the same ``(k, parity)`` become the channels of that key, in the order they
            appear. For a type laid out in canonical order (as :func:`to_geometric_tensor` makes) the round
            trip is the identity, bit for bit.
        is_torus: the ``is_torus`` of the result.

    Raises:
        ValueError: the field type holds fields that are not tensor fields (e.g. regular ones); the message
            names them and what is accepted.
    """
    if not isinstance(gt, GeometricTensor):
        raise TypeError(f"gt must be an escnn GeometricTensor, got {type(gt).__name__}")
    ft = gt.type
    d = check_gspace(ft.gspace)
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
