r"""What the pixelwise tensor-field layers share: channels grouped by field type, field norms, named activations,
and a base class with the input checks and exact (float64-backed) buffers.

- :class:`TypeGroups`: the channels of a FieldType regrouped type by type (one ``index_select`` there and one back),
  so a layer loops over the distinct field *types*, never over fields.
- :func:`field_sq_norms` / :func:`field_norms`: the squared / Euclidean norm of every field of one type block,
  ``(B, m, D, L) -> (B, m, L)``; the norm is clamp-safe (finite gradient, bounded by 1, at a zero field).
- :func:`mix_fields`: one learned matrix applied to the fields of every sample, ``(m_out, m_in)`` times
  ``(B, m_in, N) -> (B, m_out, N)``, as a batched product without copies.
- :data:`ACTIVATIONS` and :func:`resolve_activation`: the elementwise functions a layer may be given by name.
- :class:`TensorFieldModule`: base class for layers between FieldTypes of tensor fields: input checks, output
  shape, float64-backed exact buffers. Copying and pickling come from :mod:`escnn_tensor._pickling`, whose reducers
  make escnn's groups, gspaces and FieldTypes picklable and shared by ``deepcopy``.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from escnn.nn import FieldType, GeometricTensor
from escnn.nn.modules.equivariant_module import EquivariantModule

from .. import _pickling  # noqa: F401  (registers the reducers that pickle/copy escnn's groups and types)
from ..groups import check_gspace
from ._fields import (
    FieldLayout,
    adopt_legacy_masters,
    check_dtype,
    check_field_type,
    check_orthogonal_fields,
    check_input,
    check_input_shape,
    refresh_exact_buffers,
    register_exact_buffer,
)

__all__ = [
    "TypeGroups",
    "field_sq_norms",
    "field_norms",
    "mix_fields",
    "ACTIVATIONS",
    "resolve_activation",
    "TensorFieldModule",
]

# ----------------------------------------------------------------------------------------------------------------
# channels grouped by field type


class TypeGroups(torch.nn.Module):
    r"""The channels of a FieldType regrouped type by type, as a buffer-only module (nothing in the state_dict).

    For the field signature ``[(k, parity) per field]`` of a FieldType on ``R^d``: ``types`` are the distinct
    ``(k, parity)`` in order of first appearance, except that the types listed in ``first`` (those present) come
    first, in that order. Type ``t`` has ``count[t]`` fields of ``dim[t] = d**k`` channels. The *grouped* layout
    puts the channels of type 0 (field by field, components in row-major order), then type 1, and so on (the types
    and channels are :class:`escnn_tensor.nn._fields.FieldLayout`'s, reordered by ``first``).

    - :meth:`gather` ``(B, C, *S) -> (B, C, L)`` in grouped layout (``L = prod(S)``; one ``index_select``, skipped
      when the layouts agree, ``identity``);
    - :meth:`split` -> one view ``(B, count[t], dim[t], L)`` per type;
    - :meth:`merge` per-type blocks of those shapes back to channel order ``(B, C, *S)``.

    ``channels(t)``: the ``(count[t], dim[t])`` int64 array of channel indices of type ``t`` in the FieldType.
    """

    def __init__(self, signature: Sequence[Tuple[int, int]], d: int, first: Sequence[Tuple[int, int]] = (),
                 sizes=None):
        super().__init__()
        layout = FieldLayout(list(signature), d, sizes)
        blocks = np.split(layout.order, np.cumsum([m * n for m, n in zip(layout.count, layout.dim)])[:-1])
        front = [layout.types.index(t) for t in first if t in layout.types]
        perm = front + [t for t in range(len(layout.types)) if t not in front]
        self.types: List[Tuple[int, int]] = [layout.types[t] for t in perm]
        self.count = [layout.count[t] for t in perm]
        self.dim = [layout.dim[t] for t in perm]
        self.sizes = [m * n for m, n in zip(self.count, self.dim)]
        self._channels = [blocks[t].reshape(layout.count[t], layout.dim[t]) for t in perm]
        order = np.concatenate([blocks[t] for t in perm])
        self.size = len(order)
        self.identity = bool((order == np.arange(self.size)).all())
        self.register_buffer("_order", torch.from_numpy(order.copy()), persistent=False)
        self.register_buffer("_inverse", torch.from_numpy(np.argsort(order)), persistent=False)

    def channels(self, t: int) -> np.ndarray:
        return self._channels[t]

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S)`` in channel order -> ``(B, C, L)`` in grouped layout."""
        x = x.flatten(2)  # (an empty batch too: no -1 to infer)
        return x if self.identity else x.index_select(1, self._order)

    def split(self, grouped: torch.Tensor) -> List[torch.Tensor]:
        """``(B, C, L)`` in grouped layout -> ``[(B, count[t], dim[t], L) per type]`` (views)."""
        B, _, L = grouped.shape
        return [blk.view(B, m, n, L) for blk, m, n in zip(grouped.split(self.sizes, 1), self.count, self.dim)]

    def merge(self, blocks: Sequence[torch.Tensor], spatial: Sequence[int]) -> torch.Tensor:
        """Per-type blocks ``(B, count[t], dim[t], L)`` (or ``(B, count[t] * dim[t], L)``) -> ``(B, C, *spatial)``."""
        B = blocks[0].shape[0]
        flat = [b.flatten(1, -2) for b in blocks]  # (B, count * dim, L), also for B = 0
        y = flat[0] if len(flat) == 1 else torch.cat(flat, 1)
        if not self.identity:
            y = y.index_select(1, self._inverse)
        return y.view((B, y.shape[1]) + tuple(spatial))


def field_sq_norms(block: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean norms ``(B, m, L)`` of the fields of a type block ``(B, m, D, L)`` (sum over components)."""
    return (block * block).sum(2)


def mix_fields(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""``weight @ x[b]`` for every sample: ``(m_out, m_in)`` and ``(B, m_in, N)`` -> ``(B, m_out, N)``.

    One ``bmm`` on the weight expanded over the batch (a view). ``torch.matmul`` broadcasting a 2-D matrix over a
    3-D batch instead folds the batch into the columns, which copies ``x`` (and its gradient) to a transposed
    layout: with it, ``VectorNeuronNonLinearity`` took 8.6 ms instead of 5.6 ms forward + backward (16 scalar + 16
    vector + 8 2-tensor fields, 32x32, batch 8; docs/speed_layers.md).
    """
    return torch.bmm(weight.unsqueeze(0).expand(x.shape[0], -1, -1), x)


def field_norms(block: torch.Tensor) -> torch.Tensor:
    r"""Euclidean norms ``(B, m, L)`` of the fields of a type block ``(B, m, D, L)``.

    Computed as ``sqrt(max(|x|^2, tiny))`` (``tiny`` the smallest normal number of the dtype), so the value is
    :math:`|x|` up to :math:`10^{-19}` (float32) and the gradient :math:`x / |x|` stays finite (norm at most 1) at a zero
    field. The norm is invariant, so every function of it is.
    """
    return field_sq_norms(block).clamp_min(torch.finfo(block.dtype).tiny).sqrt()


# ----------------------------------------------------------------------------------------------------------------
# named activations

ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01
    "elu": F.elu,
    "selu": F.selu,
    "celu": F.celu,
    "silu": F.silu,
    "gelu": F.gelu,
    "mish": F.mish,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}
"""Elementwise functions accepted by name (torch's defaults: ``leaky_relu`` slope 0.01, ``elu``/``celu`` alpha 1)."""


def resolve_activation(function: Union[str, Callable], name: str = "function") -> Tuple[Callable, str]:
    """``(callable, label)`` for a name in :data:`ACTIVATIONS` or an elementwise callable ``Tensor -> Tensor``.

    A callable is tried once on a small float64 tensor and must return a tensor of the same shape.
    Raises ``ValueError`` for an unknown name, ``TypeError`` for anything else.
    """
    if isinstance(function, str):
        f = ACTIVATIONS.get(function)
        if f is None:
            raise ValueError(f"{name} must be one of {sorted(ACTIVATIONS)} or a callable, got {function!r}")
        return f, function
    if not callable(function):
        raise TypeError(
            f"{name} must be one of {sorted(ACTIVATIONS)} or an elementwise callable Tensor -> Tensor, got "
            f"{type(function).__name__}"
        )
    probe = torch.linspace(-2.0, 2.0, 5, dtype=torch.float64)
    out = function(probe)
    if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
        raise TypeError(
            f"{name} must be an elementwise callable Tensor -> Tensor of the same shape; on a tensor of shape "
            f"{tuple(probe.shape)} it returned {type(out).__name__}"
            + (f" of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else "")
        )
    return function, getattr(function, "__name__", type(function).__name__)


# ----------------------------------------------------------------------------------------------------------------
# base class


class TensorFieldModule(EquivariantModule):
    """Base class of layers between FieldTypes of tensor fields (2D or 3D, B_d or an accepted subgroup).

    Subclasses set ``in_type``, ``out_type`` (and ``d``) in ``__init__`` via :meth:`_set_types`. Provides the input
    checks (:meth:`_check_input`, :meth:`_check_dtype`), ``evaluate_output_shape`` for pixelwise layers (spatial
    shape unchanged) and :meth:`_add_exact_buffer`.
    """

    #: True for layers defined on any orthogonal representation (norms, pooling, upsampling): their signature may
    #: hold keys ``('rep', name)`` of fields that are not full tensor fields (symmetric tensors, escnn's irreps,
    #: regular, quotient, ...), with their sizes in ``self._sizes`` (:func:`escnn_tensor.nn._fields.field_keys`).
    #: ``"any"``: any representation, orthogonal or not (layers acting on every channel alike).
    _any_orthogonal = False

    def _set_types(self, in_type: FieldType, out_type: Optional[FieldType] = None) -> List[Tuple[int, int]]:
        self._sizes = None
        if self._any_orthogonal and isinstance(in_type, FieldType):
            d = check_gspace(in_type.gspace)
            sig, self._sizes = check_orthogonal_fields(in_type, type(self).__name__,
                                                       orthogonal=self._any_orthogonal != "any")
        else:
            d, sig = check_field_type(in_type, "in_type", type(self).__name__)
        self.d = d
        self.in_type = in_type
        self.out_type = in_type if out_type is None else out_type
        return sig

    def _check_input(self, input) -> torch.Tensor:
        """The tensor of ``input`` after checking that it is a GeometricTensor of ``in_type`` with ``2 + d`` axes."""
        return check_input(input, self.in_type, self.d, type(self).__name__)

    def _check_dtype(self, x: torch.Tensor, reference: Optional[torch.Tensor] = None) -> None:
        """``TypeError`` if ``x`` and the layer's floating ``reference`` (a parameter or buffer; default: the first
        floating parameter or buffer of the layer, if any) differ in dtype."""
        if reference is None:
            reference = next((t for t in self._floating_state() if t.is_floating_point()), None)
        check_dtype(x, reference, type(self).__name__)

    def _floating_state(self):
        yield from self.parameters(recurse=False)
        yield from self.buffers(recurse=False)

    def evaluate_output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """``(B, in_type.size, *S)`` -> ``(B, out_type.size, *S)`` (pixelwise: the spatial shape is unchanged)."""
        input_shape = check_input_shape(input_shape, self.in_type, self.d)
        return (input_shape[0], self.out_type.size) + input_shape[2:]

    def _wrap(self, y: torch.Tensor) -> GeometricTensor:
        return GeometricTensor(y, self.out_type, coords=None)

    # ---- exact floating buffers ------------------------------------------------------------------------------------

    def _add_exact_buffer(self, name: str, value64: torch.Tensor) -> None:
        """Register a non-persistent floating buffer (default dtype) whose float64 original is kept as a buffer too
        (:func:`escnn_tensor.nn._fields.register_exact_buffer`): ``.to()`` / ``.double()`` / ``.float()`` re-round it
        from that original on the module's device, so a float32 -> float64 round trip is exact."""
        register_exact_buffer(self, name, value64)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        refresh_exact_buffers(self)
        return out

    def __setstate__(self, state):
        legacy = state.pop("_exact", None)  # pickled before the originals were buffers: a dict of CPU tensors
        super().__setstate__(state)
        if legacy:
            adopt_legacy_masters(self, legacy)
