r"""``ChangeOfBasis``: the exact equivariant 1x1 map between two isomorphic FieldTypes.

escnn writes every representation of a finite group as :math:`\rho(g) = Q\, (\oplus_c \psi_c(g))\, Q^{-1}`, with
``Q = rep.change_of_basis`` and the irreps :math:`\psi_c` listed in ``rep.irreps``; a FieldType is the direct sum of
its fields' representations. Two FieldTypes are isomorphic exactly when they hold every irrep the same number of times
(their characters agree). Then

.. math::

    A = Q_{out}\, \Pi\, Q_{in}^{-1},

with :math:`Q` the block-diagonal change of basis of each type and :math:`\Pi` the permutation that sends the ``c``-th
copy of each irrep in ``in_type`` (in channel order) to the ``c``-th copy of that irrep in ``out_type``, satisfies
:math:`A \rho_{in}(g) = \rho_{out}(g) A` for every ``g``: it is an equivariant isomorphism, applied at every pixel.
It is orthogonal when the changes of basis are (escnn's and :func:`escnn_tensor.tensor_rep`'s are), so it preserves
norms, and ``ChangeOfBasis(out_type, in_type)`` is its inverse. Example: the tensor vector of
:func:`escnn_tensor.tensor_type` (components ``(x, y)``) and escnn's ``irrep(1, 1)`` of D4.
"""
from __future__ import annotations

from collections import Counter
from typing import Tuple

import numpy as np
import scipy.linalg
import torch
from escnn.nn import FieldType, GeometricTensor
from escnn.nn.modules.equivariant_module import EquivariantModule

from ._fields import check_dtype, check_input, check_input_shape, refresh_exact_buffers, register_exact_buffer

__all__ = ["ChangeOfBasis"]


def _irrep_columns(field_type: FieldType):
    """``(ids, Q)``: the irrep of every copy in channel order, and the block-diagonal change of basis (float64)."""
    ids, blocks = [], []
    for rep in field_type.representations:
        ids.extend(tuple(i) for i in rep.irreps)
        blocks.append(np.asarray(rep.change_of_basis, dtype=np.float64))
    return ids, scipy.linalg.block_diag(*blocks)


def change_of_basis_matrix(in_type: FieldType, out_type: FieldType) -> np.ndarray:
    """The float64 matrix ``A`` (``out_type.size x in_type.size``) of :class:`ChangeOfBasis` (module docs).

    Raises ``ValueError`` naming the irreps whose multiplicities differ when the types are not isomorphic.
    """
    ids_in, Q_in = _irrep_columns(in_type)
    ids_out, Q_out = _irrep_columns(out_type)
    c_in, c_out = Counter(ids_in), Counter(ids_out)
    if c_in != c_out:
        G = in_type.gspace.fibergroup
        diff = [f"{G.irrep(*i).name}: {c_in.get(i, 0)} in in_type, {c_out.get(i, 0)} in out_type"
                for i in list(c_in) + [j for j in c_out if j not in c_in] if c_in.get(i, 0) != c_out.get(i, 0)]
        raise ValueError(
            f"ChangeOfBasis: in_type ({in_type.size} channels) and out_type ({out_type.size} channels) are not "
            f"isomorphic representations of {G.name}, so no equivariant change of basis exists between them; their "
            f"irreps differ: " + "; ".join(diff) + ". Use an equivariant layer (e.g. GeometricConv with "
            f"kernel_size=1) for a map that is not an isomorphism."
        )
    G = in_type.gspace.fibergroup
    size = {i: G.irrep(*i).size for i in c_in}
    start_in = np.cumsum([0] + [size[i] for i in ids_in])
    start_out = np.cumsum([0] + [size[i] for i in ids_out])
    seen: Counter = Counter()
    where_out = {}
    for c, i in enumerate(ids_out):
        where_out[(i, seen[i])] = c
        seen[i] += 1
    P = np.zeros((out_type.size, in_type.size))
    seen = Counter()
    for c, i in enumerate(ids_in):
        o = where_out[(i, seen[i])]
        seen[i] += 1
        r = size[i]
        P[start_out[o] : start_out[o] + r, start_in[c] : start_in[c] + r] = np.eye(r)
    return Q_out @ P @ np.linalg.inv(Q_in) if not _orthogonal(Q_in) else Q_out @ P @ Q_in.T


def _orthogonal(Q: np.ndarray) -> bool:
    return bool(np.abs(Q.T @ Q - np.eye(len(Q))).max() < 1e-12)


class ChangeOfBasis(EquivariantModule):
    r"""Exact equivariant isomorphism between two isomorphic FieldTypes, applied pixel by pixel (a 1x1 map).

    Args:
        in_type, out_type: escnn FieldTypes on the same gspace (any representations: tensor fields from
            :func:`escnn_tensor.tensor_type`, escnn irreps, regular, quotient, ...) holding the same irreps the same
            number of times. Otherwise ``ValueError`` naming the irreps that differ.

    The map is :math:`A = Q_{out} \Pi Q_{in}^{-1}` (module docs), a fixed buffer ``matrix`` of shape
    ``(out_type.size, in_type.size)``; no parameters. Shapes: ``(B, in_type.size, N..)`` -> ``(B, out_type.size,
    N..)``, 2D or 3D, any grid. E.g. ``ChangeOfBasis(tensor_type(gs, [(1, 1, 1)]), FieldType(gs,
    [gs.fibergroup.irrep(1, 1)]))`` turns escnn_tensor's vectors into escnn's ``irrep(1, 1)`` fields.
    """

    def __init__(self, in_type: FieldType, out_type: FieldType):
        super().__init__()
        for name, ft in (("in_type", in_type), ("out_type", out_type)):
            if not isinstance(ft, FieldType):
                raise TypeError(f"ChangeOfBasis: {name} must be an escnn FieldType, got {type(ft).__name__}")
        if in_type.gspace != out_type.gspace:
            raise ValueError(
                f"ChangeOfBasis: in_type and out_type must live on the same gspace, got {in_type.gspace.name} and "
                f"{out_type.gspace.name}"
            )
        self.in_type, self.out_type = in_type, out_type
        self.space = in_type.gspace
        self.d = in_type.gspace.dimensionality
        register_exact_buffer(self, "matrix", torch.from_numpy(change_of_basis_matrix(in_type, out_type)))

    def _apply(self, fn, *args, **kwargs):
        # .to() / .double(): re-round the buffer from its float64 original (a float32 -> float64 round trip is exact)
        out = super()._apply(fn, *args, **kwargs)
        refresh_exact_buffers(self)
        return out

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """``GeometricTensor`` of ``in_type`` ``(B, C_in, N..)`` -> of ``out_type`` ``(B, C_out, N..)``."""
        x = check_input(input, self.in_type, self.d, "ChangeOfBasis")
        check_dtype(x, self.matrix, "ChangeOfBasis")
        y = torch.einsum("oc,bc...->bo...", self.matrix, x)
        return GeometricTensor(y, self.out_type, coords=None)

    def evaluate_output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        input_shape = check_input_shape(input_shape, self.in_type, self.d)
        return (input_shape[0], self.out_type.size) + input_shape[2:]

    def export(self) -> torch.nn.Module:
        """A bias-free ``torch.nn.Conv2d`` / ``Conv3d`` with kernel size 1 holding ``matrix``."""
        conv_cls = torch.nn.Conv2d if self.d == 2 else torch.nn.Conv3d
        conv = conv_cls(self.in_type.size, self.out_type.size, 1, bias=False, dtype=self.matrix.dtype,
                        device=self.matrix.device)
        with torch.no_grad():
            conv.weight.copy_(self.matrix.view(conv.weight.shape))
        return conv

    def extra_repr(self) -> str:
        return f"{self.in_type}, {self.out_type}"
