r"""Group averaging: any model made exactly equivariant by averaging over the group (ginjax's ``GroupAverage``).

.. math::

    \bar f(x) = \frac{1}{|G|} \sum_{g \in G} g^{-1} \cdot f(g \cdot x)

For every :math:`h \in G`, :math:`\bar f(h x) = \frac{1}{|G|}\sum_g g^{-1} f(g h x) = h \bar f(x)` (substitute
:math:`g' = g h`), whatever :math:`f` is, so a plain CNN wrapped in :class:`GroupAverage` is equivariant to
round-off. The cost is :math:`|G|` forward (and backward) passes of the wrapped model: 8 in 2D (D4), 48 in 3D
(:math:`O_h`).

The group acts exactly and differentiably (:class:`FieldAction`): a pixel permutation with flips (as escnn's
``GeometricTensor.transform``, which however detaches its input and goes through numpy on the CPU) followed by
the field type's representation matrix, held as a buffer, on the input's device.
"""
from __future__ import annotations

from typing import Callable, List, Tuple, Union

import numpy as np
import torch
from escnn.nn import FieldType, GeometricTensor
from escnn.nn.modules.equivariant_module import EquivariantModule

from ..groups import escnn_to_grid, group_elements, group_matrix, grid_to_escnn
from ..image import functional as fn
from ..nn._fields import check_input

__all__ = ["GroupAverage", "FieldAction"]


class FieldAction(torch.nn.Module):
    r"""The exact action of every element of ``field_type``'s group on tensors ``(B, field_type.size, *grid)`` in
    escnn's layout: ``action(x, i)`` equals ``GeometricTensor(x, field_type).transform(elements[i]).tensor``
    (``elements`` = :func:`escnn_tensor.group_elements`), but keeps gradients and stays on ``x``'s device.

    The fibre part is the representation matrix :math:`\rho(g)` of the field type (a buffer ``(|G|, C, C)``,
    float64, cast to ``x``'s dtype); the base-space part moves the feature at :math:`a` to :math:`M a` by axis
    permutations and flips (``ValueError`` for an element that does not map the grid onto itself).
    """

    def __init__(self, field_type: FieldType) -> None:
        super().__init__()
        if not isinstance(field_type, FieldType):
            raise TypeError(f"field_type must be an escnn FieldType, got {type(field_type).__name__}")
        gs = field_type.gspace
        self.field_type = field_type
        self.elements = group_elements(gs)
        self.d = gs.dimensionality
        self.matrices: List[np.ndarray] = [group_matrix(gs, g) for g in self.elements]
        rho = np.stack([np.asarray(field_type.representation(g), dtype=np.float64) for g in self.elements])
        self.register_buffer("rho", torch.from_numpy(rho), persistent=False)
        index = {g: i for i, g in enumerate(self.elements)}
        #: position of the inverse of element i
        self.inverse: Tuple[int, ...] = tuple(index[~g] for g in self.elements)

    def __len__(self) -> int:
        return len(self.elements)

    def forward(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """``x`` ``(B, C, *grid)`` acted on by element ``i``."""
        d = self.d
        fn.check_grid_allows(self.matrices[i], tuple(x.shape[2:]))  # shapes only: no host sync
        moved = grid_to_escnn(fn.act(escnn_to_grid(x, d), self.matrices[i], 0, 1, d), d)
        rho = self.rho[i].to(dtype=x.dtype)
        return torch.einsum("oc,bc...->bo...", rho, moved)


class GroupAverage(EquivariantModule):
    r"""``model`` averaged over the group of ``in_type``'s gspace: :math:`\bar f(x) = \frac{1}{|G|}\sum_g g^{-1}
    f(g x)`, exactly equivariant whatever ``model`` is (ginjax's ``GroupAverage``).

    **Cost**: :math:`|G|` forward passes of ``model`` per forward (8 in 2D, 48 in 3D), and as many backward
    passes; memory for the autograd graph of all of them in training.

    Args:
        model: a module ``GeometricTensor`` of ``in_type`` -> ``GeometricTensor`` of ``out_type`` (an escnn
            ``EquivariantModule``, e.g. a plain-family model of :mod:`escnn_tensor.models`), or any callable
            ``tensor (B, in_type.size, *grid) -> tensor (B, out_type.size, *grid)``.
        in_type, out_type: FieldTypes on one gspace (an accepted one: D4 or O_h or a subgroup's).
        always_average: ``True`` (default): average in training and evaluation. ``False``: as ginjax's default,
            average only in evaluation (``model.eval()``); training then calls ``model`` once (cheap, not
            equivariant).

    Input and output: ``GeometricTensor`` ``(B, in_type.size, N, .., N)`` -> ``(B, out_type.size, N, .., N)``.
    """

    def __init__(
        self,
        model: Union[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]],
        in_type: FieldType,
        out_type: FieldType,
        always_average: bool = True,
    ) -> None:
        super().__init__()
        for name, t in (("in_type", in_type), ("out_type", out_type)):
            if not isinstance(t, FieldType):
                raise TypeError(f"GroupAverage: {name} must be an escnn FieldType, got {type(t).__name__}")
        if in_type.gspace != out_type.gspace:
            raise ValueError(
                f"GroupAverage: in_type and out_type must share a gspace, got {in_type.gspace.name} and "
                f"{out_type.gspace.name}"
            )
        if not callable(model):
            raise TypeError(f"GroupAverage: model must be a module or callable, got {type(model).__name__}")
        if not isinstance(always_average, bool):
            raise TypeError(f"GroupAverage: always_average must be a bool, got {always_average!r}")
        for name, t in (("in_type", in_type), ("out_type", out_type)):
            mt = getattr(model, name, None)
            if isinstance(mt, FieldType) and mt != t:
                raise ValueError(f"GroupAverage: the model's {name} is {mt}, but {name}={t} was given")
        self.model = model
        self.in_type = in_type
        self.out_type = out_type
        self.always_average = always_average
        self.in_action = FieldAction(in_type)
        self.out_action = FieldAction(out_type)
        self._geometric = isinstance(model, EquivariantModule)
        #: the dimension of space (as the models of :mod:`escnn_tensor.models` have it)
        self.d = in_type.gspace.dimensionality

    @property
    def hidden(self):
        """The wrapped model's ``hidden`` (its hidden size, for reports), or ``None``."""
        return getattr(self.model, "hidden", None)

    @property
    def group_size(self) -> int:
        """:math:`|G|`, the number of forward passes of ``model`` per averaged forward."""
        return len(self.in_action)

    def _call_model(self, x: torch.Tensor) -> torch.Tensor:
        if self._geometric:
            y = self.model(GeometricTensor(x, self.in_type))
            if not isinstance(y, GeometricTensor) or y.type != self.out_type:
                got = y.type if isinstance(y, GeometricTensor) else type(y).__name__
                raise ValueError(f"GroupAverage: the model must return a GeometricTensor of out_type, got {got}")
            return y.tensor
        y = self.model(x)
        if not isinstance(y, torch.Tensor) or y.shape[:1] + y.shape[2:] != x.shape[:1] + x.shape[2:] or (
            y.shape[1] != self.out_type.size
        ):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(
                f"GroupAverage: the model must return a tensor (B, {self.out_type.size}, *grid) for input "
                f"{tuple(x.shape)}, got {got}"
            )
        return y

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """The group average of ``model`` at ``input`` (see the class docs); ``|G|`` calls of ``model``."""
        x = check_input(input, self.in_type, self.in_type.gspace.dimensionality, "GroupAverage")
        if self.training and not self.always_average:
            return GeometricTensor(self._call_model(x), self.out_type)
        total = None
        for i in range(self.group_size):
            y = self._call_model(self.in_action(x, i))
            back = self.out_action(y, self.out_action.inverse[i])
            total = back if total is None else total + back
        return GeometricTensor(total / self.group_size, self.out_type)

    def evaluate_output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """``(B, in_type.size, *grid)`` -> ``(B, out_type.size, *grid)``."""
        return (input_shape[0], self.out_type.size) + tuple(input_shape[2:])
