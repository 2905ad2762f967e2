"""What the tensor-field layers share: argument checks, the layout of field types, kernel and bias bases."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from escnn.gspaces import GSpace
from escnn.nn import FieldType, GeometricTensor

from ..filters import invariant_filters
from ..groups import action_key, check_gspace, grid_to_escnn
from ..representations import _tensor_infos, field_signature, symmetric_size, tensor_field_info

__all__ = [
    "check_types",
    "check_any_types",
    "field_keys",
    "describe_keys",
    "check_field_type",
    "check_tensor_fields",
    "check_input",
    "check_dtype",
    "describe_signature",
    "FieldLayout",
    "bias_basis",
    "register_exact_buffer",
    "refresh_exact_buffers",
    "exact_buffer_names",
    "distributed_world",
]

# ----------------------------------------------------------------------------------------------------------------
# exact floating buffers: a float64 master copy kept as a (device-following, dtype-blind) int64 buffer

_BITS = "_f64bits"


def register_exact_buffer(module: torch.nn.Module, name: str, value64: torch.Tensor) -> None:
    """Register the non-persistent floating buffer ``name`` (default dtype) and its exact float64 original.

    The original is the buffer ``name + '_f64bits'``: the float64 values' bit patterns viewed as int64, so ``.to()``
    moves it with the module (CPU, CUDA, meta) while ``.float()`` / ``.double()`` / ``.half()`` leave it alone (they
    cast floating tensors only), and it never shows among the module's floating buffers. After any ``_apply``,
    :func:`refresh_exact_buffers` re-rounds ``name`` from it on its own device, so a float32 -> float64 round trip
    gives the exact values back and no copy crosses from the host. Neither buffer is in the ``state_dict``.
    """
    value64 = value64.detach().to(dtype=torch.float64).contiguous()
    names = module.__dict__.setdefault("_exact_names", [])
    if name not in names:
        names.append(name)
    module.register_buffer(name + _BITS, value64.view(torch.int64).clone(), persistent=False)
    module.register_buffer(name, value64.to(torch.get_default_dtype()), persistent=False)


def exact_buffer_names(module: torch.nn.Module) -> List[str]:
    """Names of the buffers of ``module`` registered by :func:`register_exact_buffer`."""
    return list(module.__dict__.get("_exact_names", ()))


def exact_original(module: torch.nn.Module, name: str) -> torch.Tensor:
    """The float64 original of the exact buffer ``name`` (a view of its bits; same device as the module)."""
    return module._buffers[name + _BITS].view(torch.float64)


def refresh_exact_buffers(module: torch.nn.Module) -> None:
    """Re-round every exact buffer of ``module`` (not its children) from its float64 original, keeping the
    buffer's current dtype and device (call after ``torch.nn.Module._apply``)."""
    for name in exact_buffer_names(module):
        buf = module._buffers[name]
        module._buffers[name] = exact_original(module, name).to(device=buf.device, dtype=buf.dtype, copy=True)


def adopt_legacy_masters(module: torch.nn.Module, masters: Dict[str, torch.Tensor]) -> None:
    """Turn the float64 masters of a module pickled before :func:`register_exact_buffer` (a dict ``name -> CPU
    float64 tensor`` in ``__dict__``) into exact buffers on the device of the existing buffers."""
    for name, master in masters.items():
        buf = module._buffers[name]
        names = module.__dict__.setdefault("_exact_names", [])
        if name not in names:
            names.append(name)
        module._buffers[name + _BITS] = master.to(device=buf.device, dtype=torch.float64).contiguous().view(torch.int64)
        module._non_persistent_buffers_set.add(name + _BITS)


def distributed_world(process_group=None) -> int:
    """The number of processes of ``process_group`` (default: the world) when ``torch.distributed`` is available and
    initialised, else 1. Host-side only (no tensor is read)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group)



ESCNN_ALTERNATIVES: Dict[str, str] = {
    "PointwiseNonLinearity": "escnn.nn.ReLU / ELU / PointwiseNonLinearity (regular and quotient fields) or "
    "escnn.nn.NormNonLinearity",
    "GatedNonLinearity": "escnn.nn.GatedNonLinearity1",
    "GatedQuadratic": "escnn.nn.GatedNonLinearity1 or escnn.nn.TensorProductModule",
    "VectorNeuronNonLinearity": "escnn.nn.NormNonLinearity",
    "TensorProductNonLinearity": "escnn.nn.TensorProductModule",
    "TensorBatchNorm": "escnn.nn.IIDBatchNorm2d / IIDBatchNorm3d, NormBatchNorm or GNormBatchNorm",
    "TensorLayerNorm": "escnn.nn.IIDBatchNorm2d / IIDBatchNorm3d (escnn has no per-sample normalisation)",
    "NormMaxPool": "escnn.nn.NormMaxPool",
    "AvgPool": "escnn.nn.PointwiseAvgPool2D / PointwiseAvgPool3D",
    "Upsample": "escnn.nn.R2Upsampling / R3Upsampling",
}
"""The escnn module to use, per layer of escnn_tensor.nn, for fields the layer does not accept (named in its error)."""


def check_field_type(field_type, name: str = "in_type", owner: str = None) -> Tuple[int, List[Tuple[int, int]]]:
    """Check that ``field_type`` is an escnn FieldType of tensor fields on an accepted gspace.

    Returns ``(d, signature)`` with ``signature`` the ``(k, parity)`` of every field in channel order.
    Raises ``TypeError`` / ``ValueError`` naming ``name`` (and, for a layer ``owner`` listed in
    :data:`ESCNN_ALTERNATIVES`, the escnn module to use for fields that are not tensor fields).
    """
    return _read_fields(field_type, name, owner, "tensor fields", field_signature)


def _read_fields(field_type, name: str, owner: Optional[str], accepted: str, read):
    """``(d, read(field_type))`` after checking that ``field_type`` is a FieldType on an accepted gspace; a
    ``ValueError`` of ``read`` is re-raised naming ``name`` and, for a layer ``owner`` of :data:`ESCNN_ALTERNATIVES`,
    the escnn module to use for fields other than the ``accepted`` ones."""
    if not isinstance(field_type, FieldType):
        raise TypeError(
            f"{name} must be an escnn FieldType of tensor fields (escnn_tensor.tensor_type), got "
            f"{type(field_type).__name__}"
        )
    d = check_gspace(field_type.gspace)
    try:
        return d, read(field_type)
    except ValueError as err:
        hint = ""
        if owner in ESCNN_ALTERNATIVES:
            hint = f" {owner} is defined on {accepted} only; for other fields use {ESCNN_ALTERNATIVES[owner]}."
        raise ValueError(f"{name}: {err}{hint}") from None


def check_tensor_fields(field_type, name: str = "in_type", owner: str = None) -> Tuple[int, list, Dict]:
    """Check that ``field_type`` is an escnn FieldType of tensor fields, full or symmetric (traceless), on an accepted
    gspace.

    Returns ``(d, keys, sizes)``: ``keys`` one per field in channel order, ``(k, parity)`` for a full tensor field (as
    :func:`check_field_type`) and ``(k, parity, symmetry)`` for one of
    ``escnn_tensor.tensor_rep(gspace, k, parity, symmetry)`` with ``symmetry`` ``'symmetric'`` or
    ``'symmetric_traceless'`` (``k >= 2``); ``sizes[key]`` is the field's number of channels. Other fields (escnn's
    regular, irreducible, quotient representations, ...) raise ``ValueError`` naming them, ``name`` and, for a layer
    ``owner`` of :data:`ESCNN_ALTERNATIVES`, the escnn module to use.
    """
    d, infos = _read_fields(field_type, name, owner, "tensor fields (full, symmetric or symmetric traceless)",
                            _tensor_infos)
    keys = [info[:2] if info[2] is None else info for info in infos]
    sizes = {key: symmetric_size(d, key[0], key[2] if len(key) == 3 else None) for key in keys}
    return d, keys, sizes


def check_input_shape(input_shape, in_type: FieldType, d: int) -> Tuple[int, ...]:
    """``input_shape`` of ``evaluate_output_shape`` as a tuple, after checking that it is ``(B, in_type.size, N_1..N_d)``
    (``ValueError`` naming what was given otherwise)."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 2 + d or input_shape[1] != in_type.size:
        raise ValueError(f"input_shape must be (batch, {in_type.size}" + ", N" * d + f"), got {input_shape}")
    return input_shape


def check_input(input, in_type: FieldType, d: int, owner: str) -> torch.Tensor:
    """The tensor ``(B, in_type.size, N_1, .., N_d)`` of ``input`` after checking that it is a ``GeometricTensor`` of
    ``in_type`` with ``2 + d`` axes. Errors are ``TypeError`` / ``ValueError`` starting with ``owner`` (the layer or
    model name) and naming what was given."""
    if not isinstance(input, GeometricTensor):
        raise TypeError(f"{owner}: input must be an escnn GeometricTensor of type in_type, got {type(input).__name__}")
    if input.type is not in_type and input.type != in_type:
        raise ValueError(
            f"{owner}: input has FieldType {input.type} ({input.type.size} channels) but the in_type is "
            f"{in_type} ({in_type.size} channels)"
        )
    x = input.tensor
    if x.dim() != 2 + d or x.shape[1] != in_type.size:
        raise ValueError(
            f"{owner}: input tensor must have shape (batch, {in_type.size}" + ", N" * d + f"), got {tuple(x.shape)}"
        )
    return x


def check_dtype(x: torch.Tensor, reference, owner: str) -> None:
    """``TypeError`` if ``x`` and the floating ``reference`` tensor (a parameter or buffer of ``owner``) differ in
    dtype; no check when ``reference`` is None."""
    if reference is not None and x.dtype != reference.dtype:
        raise TypeError(
            f"{owner}: input dtype {x.dtype} differs from the layer's dtype {reference.dtype}; convert the input "
            f"(tensor.to({reference.dtype})) or the layer (layer.to({x.dtype}))"
        )


def describe_signature(signature) -> str:
    """Runs of equal fields of a ``(k, parity)`` signature, e.g. ``'2 x (k=0,p=+1) + 3 x (k=1,p=+1)'`` (short even
    for thousands of fields; for messages)."""
    runs: List[List] = []
    for kp in signature:
        if runs and runs[-1][0] == tuple(kp):
            runs[-1][1] += 1
        else:
            runs.append([tuple(kp), 1])
    return " + ".join(f"{m} x (k={k},p={p:+d})" for (k, p), m in runs) or "no fields"


def check_types(in_type, out_type, owner: str = None) -> Tuple[int, list, list]:
    """Check ``in_type`` and ``out_type`` (FieldTypes of tensor fields, full or symmetric (traceless), on one accepted
    gspace) for a model. Returns ``(d, keys_in, keys_out)``, the keys of :func:`check_tensor_fields`: ``(k, parity)``
    per full tensor field, ``(k, parity, symmetry)`` per symmetric one."""
    for name, ft in (("in_type", in_type), ("out_type", out_type)):
        if not isinstance(ft, FieldType):
            raise TypeError(
                f"{name} must be an escnn FieldType of tensor fields (escnn_tensor.tensor_type), got "
                f"{type(ft).__name__}"
            )
    d = check_gspace(in_type.gspace)
    check_gspace(out_type.gspace)
    if in_type.gspace != out_type.gspace or action_key(in_type.gspace) != action_key(out_type.gspace):
        raise ValueError(
            f"in_type and out_type must live on the same gspace, got in_type on {in_type.gspace.name} and "
            f"out_type on {out_type.gspace.name}"
        )
    signatures = [check_tensor_fields(ft, name, owner)[1] for name, ft in (("in_type", in_type), ("out_type", out_type))]
    return d, signatures[0], signatures[1]


def field_keys(field_type: FieldType) -> Tuple[list, Dict[object, object]]:
    """One key per field of ``field_type`` (channel order) and the representation of every key.

    A tensor field (:func:`escnn_tensor.representations.tensor_field_info`, the trivial representation included)
    has the key ``(k, parity)``; any other escnn representation (regular, irreducible, quotient, direct sums, ...)
    the key ``('rep', rep.name)``. Returns ``(keys, reps)`` with ``reps[key]`` the escnn ``Representation``.
    """
    keys, reps = [], {}
    for rep in field_type.representations:
        info = tensor_field_info(rep, field_type.gspace)
        key = info if info is not None else ("rep", rep.name)
        keys.append(key)
        reps.setdefault(key, rep)
    return keys, reps


def describe_keys(keys) -> str:
    """Runs of equal field keys (:func:`field_keys`), e.g. ``'2 x (k=1,p=+1) + 1 x regular'`` (for messages)."""
    runs: List[List] = []
    for key in keys:
        if runs and runs[-1][0] == key:
            runs[-1][1] += 1
        else:
            runs.append([key, 1])
    text = lambda key: key[1] if key[0] == "rep" else f"(k={key[0]},p={key[1]:+d})"
    return " + ".join(f"{m} x {text(key)}" for key, m in runs) or "no fields"


def check_any_types(in_type, out_type) -> Tuple[int, list, list, Dict[object, object]]:
    """As :func:`check_types`, but any escnn representations of the gspace's group are accepted as fields.

    Returns ``(d, keys_in, keys_out, reps)`` (:func:`field_keys`; ``reps`` maps the keys of both types).
    """
    for name, ft in (("in_type", in_type), ("out_type", out_type)):
        if not isinstance(ft, FieldType):
            raise TypeError(f"{name} must be an escnn FieldType, got {type(ft).__name__}")
    d = check_gspace(in_type.gspace)
    check_gspace(out_type.gspace)
    if in_type.gspace != out_type.gspace or action_key(in_type.gspace) != action_key(out_type.gspace):
        raise ValueError(
            f"in_type and out_type must live on the same gspace, got in_type on {in_type.gspace.name} and "
            f"out_type on {out_type.gspace.name}"
        )
    keys_in, reps = field_keys(in_type)
    keys_out, reps_out = field_keys(out_type)
    reps.update(reps_out)
    return d, keys_in, keys_out, reps


# ----------------------------------------------------------------------------------------------------------------
# layout of the fields: which channels hold which field type


class FieldLayout:
    """The distinct field types of a FieldType, in order of first appearance, and where their channels are.

    ``types[t] = (k, parity)`` (or any key, with ``sizes[key]`` its channels), ``count[t]`` fields of it, each of
    ``dim[t] = d**k`` channels;
    ``order`` lists the channels type by type (fields in order, components in order): the dense kernel is
    assembled in this order and ``inverse`` puts its rows/columns back in channel order.
    """

    def __init__(self, signature: List[Tuple[int, int]], d: int, sizes: Dict[object, int] = None):
        size = (lambda key: d ** key[0]) if sizes is None else sizes.__getitem__
        starts = np.cumsum([0] + [size(key) for key in signature])
        by_type: Dict[Tuple[int, int], List[int]] = OrderedDict()
        for i, kp in enumerate(signature):
            by_type.setdefault(kp, []).append(i)
        self.types = list(by_type)
        self.count = [len(by_type[t]) for t in self.types]
        self.dim = [size(t) for t in self.types]
        order = [c for t in self.types for i in by_type[t] for c in range(starts[i], starts[i + 1])]
        self.order = np.array(order, dtype=np.int64)
        self.inverse = np.argsort(self.order)
        self.identity = bool((self.order == np.arange(len(order))).all())


def bias_basis(gspace: GSpace, t, rep=None) -> torch.Tensor:
    """Orthonormal basis of the invariant vectors of a field type: float64 ``(n, size)``.

    ``t = (k, p)``: of ``rho_{k,p}`` (size ``d**k``), from the invariant filters of size 1. Any other key
    (:func:`field_keys`) with its representation ``rep``: the span of the columns of ``rep.change_of_basis`` at the
    trivial irreps (``rho(g) Q e_c = Q e_c``), orthonormalised.
    """
    if t[0] == "rep":
        G = gspace.fibergroup
        starts = np.cumsum([0] + [G.irrep(*i).size for i in rep.irreps])
        cols = [int(starts[c]) for c, i in enumerate(rep.irreps) if G.irrep(*i).is_trivial()]
        if not cols:
            return torch.zeros((0, rep.size), dtype=torch.float64)
        q, _ = np.linalg.qr(np.asarray(rep.change_of_basis, dtype=np.float64)[:, cols])
        return torch.from_numpy(np.ascontiguousarray(q.T))
    d = gspace.dimensionality
    f = invariant_filters(gspace, 1, t[0], t[1])
    return f.reshape(f.shape[0], d ** t[0])


_ORTHOGONALITY: Dict[tuple, float] = {}  # (group, name, irreps, change of basis) -> max |rho(g)^T rho(g) - I| over g


def check_orthogonal_fields(field_type: FieldType, owner: str, name: str = "in_type", orthogonal: bool = True
                            ) -> Tuple[list, Dict]:
    """``(keys, sizes)`` of :func:`field_keys` after checking that every field's representation is orthogonal on every
    group element (so field norms are invariant), as layers built on norms need; ``ValueError`` naming the field
    otherwise (``orthogonal=False``: no check, for layers acting on every channel alike). ``sizes[key]`` is the
    representation's size; ``reps`` are kept in ``sizes`` under ``('reps', key)``."""
    from ..groups import group_elements

    keys, reps = field_keys(field_type)
    elements = group_elements(field_type.gspace)
    for i, key in enumerate(keys):
        if key[0] != "rep" or ("checked", key) in reps or not orthogonal:
            continue
        rep = reps[key]
        cache_key = (rep.group.name, rep.name, tuple(map(tuple, rep.irreps)),
                     np.asarray(rep.change_of_basis, dtype=np.float64).tobytes())
        err = _ORTHOGONALITY.get(cache_key)
        if err is None:
            err = max(float(np.abs(rep(g).T @ rep(g) - np.eye(rep.size)).max()) for g in elements)
            _ORTHOGONALITY[cache_key] = err
        if err > 1e-9:
            raise ValueError(
                f"{owner}: {name}: field {i} ({rep.name}, size {rep.size}) is not an orthogonal representation (its "
                f"matrices are off by {err:.1e}), so the norm of the field is not invariant; {owner} needs orthogonal "
                f"representations (tensor fields, escnn's irreps, regular and quotient representations are)"
            )
        reps[("checked", key)] = True
    sizes = {key: (rep.size if key[0] == "rep" else field_type.gspace.dimensionality ** key[0])
             for key, rep in reps.items() if key[0] != "checked"}
    sizes.update({("reps", key): rep for key, rep in reps.items() if key[0] != "checked"})
    return keys, sizes


