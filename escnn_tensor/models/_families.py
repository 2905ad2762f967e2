r"""The three families of layers the model architectures are built from, behind one interface.

An architecture (:mod:`escnn_tensor.models._architectures`) is written once, in terms of a *hidden spec* (what a
hidden feature map is made of) and of layer factories; a family supplies both:

``'geometric'``
    Hidden spec: an escnn ``FieldType`` of tensor fields; the types follow :func:`hidden_tensor_types`.
    Layers: :class:`~escnn_tensor.nn.GeometricConv`; the nonlinearity :class:`~escnn_tensor.nn.GatedQuadratic`
    (default ``nonlinearity='gated_quadratic'``: the gate plus a bounded low-rank quadratic term, for targets with
    products such as advection; chosen on the validation errors of the default profile, docs/head_to_head.md),
    ``GatedNonLinearity`` (``'gated'``: true scalars through the activation, every other field times a sigmoid
    gate computed from the invariants) or ``VectorNeuronNonLinearity`` (``'vector_neuron'``, ginjax's choice); the
    gate trained to lower validation errors than the vector neuron on all three quick tasks at every learning rate
    tried (1e-3 to 3e-2; e.g. gravity 0.0038 vs 0.0064, tidal 0.0065 vs 0.021 at 1e-2). TensorBatchNorm / TensorLayerNorm,
    NormMaxPool, GeometricConvTransposed (kernel 2, stride 2). Exactly equivariant.
``'steerable'``
    Hidden spec: ``r`` regular fields of the group (plus ``t < |G|`` trivial fields, only to meet a parameter
    budget). Layers: escnn's R2Conv / R3Conv, ELU or ReLU applied pointwise (escnn's PointwiseNonLinearity offers
    relu, elu, sigmoid, tanh: no GELU), InnerBatchNorm, PointwiseMaxPool, and for upsampling R2Upsampling /
    R3Upsampling (nearest) followed by a convolution of kernel 3 (escnn's R2ConvTransposed has an empty basis at
    kernel size 2). Equivariant up to escnn's float32 sampling of its kernel basis (~1e-7 relative).
``'plain'``
    Hidden spec: a number of channels; the tensor components are channels. Layers: torch Conv, ELU / ReLU,
    BatchNorm / GroupNorm(1, C), MaxPool, ConvTranspose (kernel 2, stride 2). Not equivariant.

Every factory returns a ``torch.nn.Module`` acting on plain tensors ``(B, C, N..)``: escnn modules are wrapped by
:class:`OnTensors`, which wraps the tensor into a ``GeometricTensor`` of the module's ``in_type`` and unwraps the
result, so the architectures add (residuals) and concatenate (skip connections) raw tensors, the same code for
every family. A family's *size* (hashable) fixes the hidden spec at the architecture's widest level (the UNet's
deepest; every level of the others): geometric, the number of fields of each hidden type; steerable, the number of
channels (regular fields x |G| + trivial fields); plain, the number of channels. A level ``2^j`` times narrower
(the UNet halves per level up) has every multiplicity divided by ``2^j`` and rounded up (:meth:`Family.hidden`).
Its *level* is a one-dimensional scale of sizes (:meth:`Family.size_of_level`) over which the parameter-budget
search of :class:`~escnn_tensor.models.TensorFieldModel` bisects before refining over neighbouring sizes.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from escnn import nn as enn
from escnn.group import Representation
from escnn.gspaces import GSpace
from escnn.nn import FieldType, GeometricTensor
from escnn.nn.modules.basismanager.basisexpansion_singleblock import SingleBlockBasisExpansion

from ..grid import PADDING_MODES
from ..groups import action_key, is_integer
from ..nn._batch_norm import TensorBatchNorm
from ..nn._conv import GeometricConv
from ..nn._conv_transposed import GeometricConvTransposed
from ..nn._gated import GatedNonLinearity
from ..nn._gated_quadratic import GatedQuadratic
from ..nn._layer_norm import TensorLayerNorm
from ..nn._norm_gate import batch_norm_gate, can_fuse
from ..nn._pooling import NormMaxPool
from ..nn._vector_neuron import VectorNeuronNonLinearity
from ..nn._fields import check_types
from ..representations import SYMMETRIES, canonical_order, symmetric_size, tensor_type

__all__ = [
    "FAMILIES",
    "ACTIVATIONS",
    "NORMS",
    "NONLINEARITIES",
    "FAMILY_OPTIONS",
    "hidden_tensor_types",
    "OnTensors",
    "Family",
    "GeometricFamily",
    "SteerableFamily",
    "PlainFamily",
    "make_family",
    "family_class",
]

FAMILIES = ("geometric", "steerable", "plain")
#: scalar functions the steerable and plain families (and the scalars of the geometric family) can use; escnn's
#: pointwise nonlinearities offer exactly these two of the usual smooth/rectifying ones
ACTIVATIONS = ("elu", "relu")
NORMS = ("batch", "layer", None)
NONLINEARITIES = ("gated", "vector_neuron", "gated_quadratic")
#: the options a family may take (each family uses some of them: ``Family.OPTIONS``)
FAMILY_OPTIONS = ("activation", "norm", "padding_mode", "nonlinearity", "hidden_symmetry")

Spec = Union[FieldType, int]


def hidden_tensor_types(in_type: FieldType, out_type: FieldType) -> List[Tuple[int, int]]:
    r"""The ``(k, parity)`` types of the hidden fields of a geometric model, in canonical order.

    Rule (symmetric fields of ``in_type`` / ``out_type`` count by their order and parity): orders ``0, 1, 2`` and
    every order that occurs in ``in_type`` or ``out_type``; parity ``+1`` always,
    and parity ``-1`` as well (for every one of those orders) when ``in_type`` or ``out_type`` holds a
    pseudotensor. E.g. scalar -> vector (gravity): ``(0,+1), (1,+1), (2,+1)``; vector -> pseudovector in 3D:
    ``(0,+1), (0,-1), (1,+1), (1,-1), (2,+1), (2,-1)``. (Products of true tensors stay true tensors, so a task
    without pseudotensors does not need pseudo fields; one with them gets the whole pseudo ladder.)
    """
    _, sig_in, sig_out = check_types(in_type, out_type)
    types = [key[:2] for key in sig_in + sig_out]
    orders = sorted({0, 1, 2} | {k for k, _ in types})
    parities = (1, -1) if any(p == -1 for _, p in types) else (1,)
    return canonical_order([(k, p) for k in orders for p in parities])


class OnTensors(torch.nn.Module):
    """Run an escnn ``EquivariantModule`` on plain tensors: ``t -> module(GeometricTensor(t, in_type)).tensor``."""

    def __init__(self, module: enn.EquivariantModule):
        super().__init__()
        self.module = module
        self.in_type = module.in_type
        self.out_type = module.out_type

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.module(GeometricTensor(t, self.in_type)).tensor


class Chain(torch.nn.Sequential):
    """``torch.nn.Sequential`` of :class:`OnTensors` layers (plain tensors in and out) in which every
    ``TensorBatchNorm`` directly followed by a ``GatedNonLinearity`` (or a ``GatedQuadratic``, whose gate it is
    then) on the same fields runs as one autograd node
    (:func:`escnn_tensor.nn._norm_gate.batch_norm_gate`: same values up to float rounding, ~1/3 of the torch calls in
    training). The submodules, their names and the ``state_dict`` are those of the ``Sequential``; a pair with a
    forward hook on one of its modules runs layer by layer."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        layers = list(self._modules.values())
        i = 0
        while i < len(layers):
            m = layers[i]
            if i + 1 < len(layers) and _fusable(m, layers[i + 1]):
                t = batch_norm_gate(m.module, layers[i + 1].module, t)
                i += 2
            else:
                t = m(t)
                i += 1
        return t


def _fusable(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    """Two :class:`OnTensors` layers that :func:`~escnn_tensor.nn._norm_gate.can_fuse`, none of their modules (the
    second's submodules included: a ``GatedQuadratic``'s gate, probe, ...) with a forward hook (those run layer by
    layer, so that their hooks see every call)."""
    if not (type(first) is OnTensors and type(second) is OnTensors and can_fuse(first.module, second.module)):
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks
                   for m in (first, second, first.module, *second.module.modules()))


# (family, action, options, layer kind, specs) -> trainable parameters of that layer (None: no layer)
_COUNTS: Dict[tuple, Optional[int]] = {}


def _spec_key(spec) -> tuple:
    if isinstance(spec, FieldType):
        return tuple(rep.name for rep in spec.representations)
    return (spec,)


class _ParameterCount(torch.nn.Module):
    """Stand-in for a layer during the parameter-budget search: holds as many (uninitialised) parameters."""

    def __init__(self, n: int):
        super().__init__()
        self.stand_in = torch.nn.Parameter(torch.empty(n))


def _check_choice(value, accepted: Sequence, name: str):
    if value not in accepted:
        raise ValueError(f"{name} must be one of {tuple(accepted)}, got {value!r}")
    return value


class Family:
    """The layer factories of one family (see the module docs); :meth:`set_size` fixes the hidden size.

    :attr:`OPTIONS` declares the family options (of ``activation``, ``norm``, ``padding_mode``,
    ``nonlinearity``) the family uses; :meth:`unused_options` says which of a set of given options it would
    ignore (those a model refuses, see :class:`~escnn_tensor.models.TensorFieldModel`).
    """

    name = ""
    #: the family options this family uses
    OPTIONS: Tuple[str, ...] = ("activation", "norm", "padding_mode")

    @classmethod
    def unused_options(cls, options: Mapping[str, Any]) -> List[str]:
        """The names in ``options`` (family options with their values) that this family would ignore, sorted."""
        return sorted(k for k in options if k in FAMILY_OPTIONS and k not in cls.OPTIONS)

    def __init__(self, in_type: FieldType, out_type: FieldType, activation: str = "elu",
                 norm: Optional[str] = "batch", padding_mode: str = "circular", nonlinearity: str = "gated_quadratic",
                 hidden_symmetry: Optional[str] = None):
        self.d, _, _ = check_types(in_type, out_type)
        self.gspace: GSpace = in_type.gspace
        self.in_type, self.out_type = in_type, out_type
        self.activation = _check_choice(activation, ACTIVATIONS, "activation")
        self.norm_kind = _check_choice(norm, NORMS, "norm")
        self.padding_mode = _check_choice(padding_mode, PADDING_MODES, "padding_mode")
        self.nonlinearity = _check_choice(nonlinearity, NONLINEARITIES, "nonlinearity")
        #: geometric family: the symmetry of the hidden tensors of order >= 2 (None: full tensors; 'symmetric' or
        #: 'symmetric_traceless': escnn_tensor.tensor_rep(..., symmetry), fewer channels)
        self.hidden_symmetry = _check_choice(hidden_symmetry, SYMMETRIES, "hidden_symmetry")
        #: the hidden size (family-specific, hashable; see :meth:`size_of_level`), set by :meth:`set_size`
        self.size = None
        #: the multiplier of the widest level relative to the narrowest (the UNet's ``2^L``; 1 otherwise): sizes
        #: refer to the widest level, widths to the narrowest
        self.scale_ref = 1
        #: counting mode: the factories return :class:`_ParameterCount` stand-ins (see :meth:`_make`)
        self.counting = False

    # ---- hidden sizes
    def min_level(self) -> int:
        """The smallest level."""
        raise NotImplementedError

    def size_of_level(self, level: int):
        """The hidden size at ``level`` (its finest one-dimensional scale; see the subclasses)."""
        raise NotImplementedError

    def size_of_width(self, width):
        """The hidden size of ``width`` (the family's natural unit at the narrowest level; see
        :class:`TensorFieldModel`)."""
        raise NotImplementedError

    def check_size(self, size):
        """``size`` as given to a model's ``size=`` argument, validated, in the family's internal form."""
        if not is_integer(size) or size < self.min_level():
            raise ValueError(f"size of the {self.name} family must be an integer >= {self.min_level()}, got {size!r}")
        return int(size)

    def _mult(self, m: int, scale: int) -> int:
        """Multiplicity ``m`` of the widest level at a level ``scale / scale_ref`` as wide (rounded up)."""
        return -(-m * scale // self.scale_ref)

    def neighbours(self, size) -> list:
        """Sizes one step away from ``size`` (the local refinement of the parameter-budget search)."""
        raise NotImplementedError

    def check_level(self, level) -> int:
        lo = self.min_level()
        if not is_integer(level) or level < lo:
            raise ValueError(f"the {self.name} family needs a level (hidden size) >= {lo}, got {level!r}")
        return int(level)

    def set_size(self, size) -> "Family":
        self.size = size
        return self

    def size_arguments(self) -> Dict[str, Any]:
        """The keyword arguments that rebuild this hidden size: ``{'size': ...}``."""
        return {"size": self.size}

    def hidden(self, scale: int = 1) -> Spec:
        """The hidden spec of a level ``scale`` times as wide as the narrowest (``scale_ref`` is the widest)."""
        raise NotImplementedError

    def channels(self, scale: int = 1) -> int:
        """Channels of :meth:`hidden` at ``scale``, counted without building it (memory checks come first)."""
        spec = self.hidden(scale)
        return spec.size if isinstance(spec, FieldType) else int(spec)

    def describe(self) -> str:
        """A short human-readable description of the hidden spec (narrowest level, and widest if different)."""
        text = self._describe(1)
        return text if self.scale_ref == 1 else f"{text} (x2 per level, down to {self._describe(self.scale_ref)})"

    def _describe(self, scale: int) -> str:
        raise NotImplementedError

    def input(self) -> Spec:
        raise NotImplementedError

    def output(self) -> Spec:
        raise NotImplementedError

    def cat(self, a: Spec, b: Spec) -> Spec:
        """The spec of ``torch.cat([x_a, x_b], dim=1)``."""
        raise NotImplementedError

    # ---- layers (the public factories; subclasses implement the underscored ones)
    def conv(self, a: Spec, b: Spec, kernel_size: int, dilation: int = 1) -> torch.nn.Module:
        """'same' convolution (odd ``kernel_size``), ``padding = dilation (kernel_size - 1) / 2``, with bias."""
        return self._make("conv", a, b, kernel_size, dilation)

    def act(self, a: Spec) -> torch.nn.Module:
        """The nonlinearity."""
        return self._make("act", a)

    def norm(self, a: Spec) -> Optional[torch.nn.Module]:
        """The normalisation layer, or ``None`` for ``norm=None``."""
        return self._make("norm", a)

    def pool(self, a: Spec) -> torch.nn.Module:
        """Downsampling by 2 on every axis."""
        return self._make("pool", a)

    def upsample(self, a: Spec, b: Spec) -> torch.nn.Module:
        """Upsampling by 2 on every axis, mapping spec ``a`` to spec ``b``."""
        return self._make("upsample", a, b)

    def _make(self, kind: str, *args):
        build = getattr(self, "_" + kind)
        if not self.counting:
            return build(*args)
        # counting mode (the parameter-budget search): one real layer per distinct layer, then only its count
        key = (self.name, action_key(self.gspace), self._option_key(), kind) + tuple(_spec_key(a) for a in args)
        if key not in _COUNTS:
            module = build(*args)
            _COUNTS[key] = None if module is None else sum(p.numel() for p in module.parameters() if p.requires_grad)
        n = _COUNTS[key]
        return None if n is None else _ParameterCount(n)

    def _option_key(self) -> tuple:
        return (self.activation, self.norm_kind, self.padding_mode, self.nonlinearity)

    def finalize(self, model: torch.nn.Module) -> None:
        """Called once the architecture is built (the steerable family detaches escnn's shared bases here)."""


# ----------------------------------------------------------------------------------------------------------------


class GeometricFamily(Family):
    """GeometricConv + the tensor-field layers of :mod:`escnn_tensor.nn`; hidden = tensor fields.

    Level ``L`` = total number of hidden fields: with ``T`` hidden types (:func:`hidden_tensor_types`), every
    type gets ``L // T`` fields and the first ``L % T`` types (scalars first) one more; ``width=w`` is
    ``L = w T`` (``w`` fields of every type).
    """

    name = "geometric"
    OPTIONS = ("activation", "norm", "padding_mode", "nonlinearity", "hidden_symmetry")

    @classmethod
    def unused_options(cls, options: Mapping[str, Any]) -> List[str]:
        """As :meth:`Family.unused_options`; also ``activation`` with ``nonlinearity='vector_neuron'`` (the vector
        neuron has no scalar activation of its own)."""
        unused = super().unused_options(options)
        if options.get("nonlinearity") == "vector_neuron" and "activation" in options:
            unused = sorted(unused + ["activation"])
        return unused

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._types = hidden_tensor_types(self.in_type, self.out_type)

    def min_level(self) -> int:
        return len(self._types)

    def size_of_level(self, level: int) -> Tuple[int, ...]:
        level, T = self.check_level(level), len(self._types)
        return tuple(level // T + (1 if i < level % T else 0) for i in range(T))

    def _counts(self, mapping, name: str) -> Tuple[int, ...]:
        unknown = [t for t in mapping if t not in self._types]
        counts = tuple(mapping.get(t, 0) for t in self._types)
        if unknown or not all(is_integer(m) and m >= 1 for m in counts):
            raise ValueError(
                f"{name} as a mapping must give an integer >= 1 for each hidden type {self._types} (and no other), "
                f"got {dict(mapping)!r}"
            )
        return tuple(int(m) for m in counts)

    def size_of_width(self, width) -> Tuple[int, ...]:
        counts = self._counts(width, "width") if isinstance(width, Mapping) else (width,) * len(self._types)
        return tuple(m * self.scale_ref for m in counts)

    def check_size(self, size) -> Tuple[int, ...]:
        if not isinstance(size, Mapping):
            raise TypeError(f"size of the geometric family must be a mapping {{(k, parity): fields}}, got {size!r}")
        return self._counts(size, "size")

    def neighbours(self, size):
        out = []
        for i in range(len(size)):
            for step in (1, -1):
                c = list(size)
                c[i] += step
                if c[i] >= 1:
                    out.append(tuple(c))
            for j in range(len(size)):  # move one field from type j to type i
                if j != i and size[j] > 1:
                    c = list(size)
                    c[i] += 1
                    c[j] -= 1
                    out.append(tuple(c))
        return out

    def size_arguments(self):
        return {"size": self.counts(self.scale_ref)}

    def counts(self, scale: int = 1) -> Dict[Tuple[int, int], int]:
        """``{(k, parity): number of hidden fields}`` at a level ``scale`` times as wide as the narrowest."""
        return {t: self._mult(m, scale) for t, m in zip(self._types, self.size)}

    def hidden(self, scale: int = 1) -> FieldType:
        sym = self.hidden_symmetry
        if sym is None:
            return tensor_type(self.gspace, self.counts(scale))
        return tensor_type(self.gspace, [(k, p, m, sym) for (k, p), m in self.counts(scale).items()])

    def channels(self, scale: int = 1) -> int:
        d = self.gspace.dimensionality
        return sum(m * symmetric_size(d, k, self.hidden_symmetry if k >= 2 else None)
                   for (k, _), m in self.counts(scale).items())

    def _describe(self, scale):
        sym = f",{self.hidden_symmetry}" if self.hidden_symmetry else ""
        return ", ".join(f"{m} x (k={k},p={p:+d}{sym if k >= 2 else ''})" for (k, p), m in self.counts(scale).items())

    def input(self) -> FieldType:
        return self.in_type

    def output(self) -> FieldType:
        return self.out_type

    def cat(self, a: FieldType, b: FieldType) -> FieldType:
        return a + b

    def _conv(self, a, b, kernel_size, dilation=1):
        return OnTensors(GeometricConv(a, b, kernel_size, padding="same", dilation=dilation,
                                       padding_mode=self.padding_mode))

    def _act(self, a):
        if self.nonlinearity == "gated":
            return OnTensors(GatedNonLinearity(a, function=self.activation))
        if self.nonlinearity == "gated_quadratic":
            return OnTensors(GatedQuadratic(a, activation=self.activation))
        return OnTensors(VectorNeuronNonLinearity(a))

    def _norm(self, a):
        if self.norm_kind is None:
            return None
        if self.norm_kind == "batch":
            return OnTensors(TensorBatchNorm(a))
        return OnTensors(TensorLayerNorm(a))

    def _pool(self, a):
        return OnTensors(NormMaxPool(a, kernel_size=2))

    def _upsample(self, a, b):
        return OnTensors(GeometricConvTransposed(a, b, kernel_size=2, stride=2))


# ----------------------------------------------------------------------------------------------------------------


def _pointwise_trivial(gspace: GSpace) -> Representation:
    """The trivial representation, declared fit for pointwise nonlinearities.

    escnn's trivial irrep of some groups (e.g. the full octahedral group of ``fullOctaOnR3``) does not list
    ``'pointwise'`` among its supported nonlinearities, although any function commutes with a trivial action; this
    registers (once per group) a 1-dimensional trivial representation that does.
    """
    group = gspace.fibergroup
    triv = group.trivial_representation
    if "pointwise" in triv.supported_nonlinearities:
        return triv
    name = "trivial_pointwise"
    if name not in group.representations:
        group.representations[name] = Representation(
            group, name, list(triv.irreps), np.eye(1),
            supported_nonlinearities=set(triv.supported_nonlinearities) | {"pointwise"},
        )
    return group.representations[name]


class SteerableFamily(Family):
    """escnn's own steerable CNN layers on regular fields (what an escnn user would build).

    Level ``L`` = number of hidden channels: ``L // |G|`` regular fields and ``L % |G|`` trivial fields (the trivial
    fields only fill the gaps between multiples of ``|G|`` channels, so that a parameter budget can be met);
    ``width=w`` is ``w`` regular fields, ``L = w |G|``.
    """

    name = "steerable"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.norm_kind == "layer":
            raise ValueError(
                "norm='layer' is not available for the steerable family (escnn has no layer norm for regular "
                "fields); use norm='batch' (escnn's InnerBatchNorm) or norm=None"
            )
        self._regular = self.gspace.regular_repr
        self._trivial = _pointwise_trivial(self.gspace)

    def _order(self) -> int:
        return self.gspace.fibergroup.order()

    def min_level(self) -> int:
        return self._order()

    def size_of_level(self, level: int) -> int:
        return self.check_level(level)

    def size_of_width(self, width: int) -> int:
        return width * self._order() * self.scale_ref

    def neighbours(self, size: int):
        return [s for s in (size - 1, size + 1) if s >= self.min_level()]

    def fields(self, scale: int = 1) -> Tuple[int, int]:
        """``(regular fields, trivial fields)`` at a level ``scale`` times as wide as the narrowest."""
        r, t = divmod(self.size, self._order())
        return self._mult(r, scale), self._mult(t, scale)

    def hidden(self, scale: int = 1) -> FieldType:
        r, t = self.fields(scale)
        return FieldType(self.gspace, [self._regular] * r + [self._trivial] * t)

    def channels(self, scale: int = 1) -> int:
        r, t = self.fields(scale)
        return r * self._order() + t

    def _describe(self, scale):
        r, t = self.fields(scale)
        return f"{r} regular ({self._order()}-dim)" + (f" + {t} trivial" if t else "") + " fields"

    def input(self) -> FieldType:
        return self.in_type

    def output(self) -> FieldType:
        return self.out_type

    def cat(self, a, b):
        return a + b

    def _conv_module(self, a, b, kernel_size, dilation=1):
        """escnn's R2Conv / R3Conv with 'same' padding; a dilated one gets the basis of the undilated kernel.

        escnn samples the basis of a dilated convolution at the dilated points with radial widths that do not grow
        with the dilation; on the D4 grid that breaks equivariance (measured: 3e-4 relative at dilation 4, O(1) at
        dilation 8, kernel 3, regular fields). The K x K equivariant kernel of dilation 1 applied with holes is
        equivariant for every dilation, so the layer is built at dilation 1 and escnn's ``dilation`` attribute,
        which its forward passes to torch's convolution, is set afterwards.
        """
        cls = enn.R2Conv if self.d == 2 else enn.R3Conv
        # recompute=False: the bases are taken from escnn's global cache here (fast); finalize() gives the model
        # its own copies, so .double()/.to() on it never reaches another model.
        conv = cls(a, b, kernel_size, padding=dilation * (kernel_size - 1) // 2, padding_mode=self.padding_mode,
                   recompute=False)
        conv.dilation = dilation
        return conv

    def _conv(self, a, b, kernel_size, dilation=1):
        return OnTensors(self._conv_module(a, b, kernel_size, dilation))

    def _act(self, a):
        return OnTensors(enn.ELU(a) if self.activation == "elu" else enn.ReLU(a))

    def _norm(self, a):
        return None if self.norm_kind is None else OnTensors(enn.InnerBatchNorm(a))

    def _pool(self, a):
        cls = enn.PointwiseMaxPool2D if self.d == 2 else enn.PointwiseMaxPool3D
        return OnTensors(cls(a, kernel_size=2))

    def _upsample(self, a, b):
        up = (enn.R2Upsampling if self.d == 2 else enn.R3Upsampling)(a, scale_factor=2, mode="nearest")
        return OnTensors(enn.SequentialModule(up, self._conv_module(a, b, 3)))

    def finalize(self, model):
        """Give the model its own copies of escnn's cached basis modules (shared inside the model only).

        escnn keeps one ``SingleBlockBasisExpansion`` per (field pair, grid) in a global cache and hands the same
        module to every convolution of every model built with ``recompute=False``; ``.double()`` on one model would
        then change the basis of all others. Each cached module is replaced by a copy (one per distinct module, so
        the layers of this model still share), and the copy's analytic ``basis`` object (immutable) is shared.
        (escnn's basis modules compare equal by content, so ``model.modules()``, which drops duplicates by
        equality, would skip some of them: the walk keeps duplicates.)
        """
        copies = {}
        for _, module in list(model.named_modules(remove_duplicate=False)):
            for name, child in list(module.named_children()):
                if isinstance(child, SingleBlockBasisExpansion):
                    if id(child) not in copies:
                        copies[id(child)] = copy.deepcopy(child, {id(child.basis): child.basis})
                    setattr(module, name, copies[id(child)])


# ----------------------------------------------------------------------------------------------------------------


class PlainFamily(Family):
    """torch convolutions on the tensor components as channels; not equivariant. Level = width = channels."""

    name = "plain"

    def min_level(self) -> int:
        return 1

    def size_of_level(self, level: int) -> int:
        return self.check_level(level)

    def size_of_width(self, width: int) -> int:
        return width * self.scale_ref

    def neighbours(self, size: int):
        return [s for s in (size - 1, size + 1) if s >= 1]

    def hidden(self, scale: int = 1) -> int:
        return self._mult(self.size, scale)

    def _describe(self, scale):
        return f"{self.hidden(scale)} channels"

    def input(self) -> int:
        return self.in_type.size

    def output(self) -> int:
        return self.out_type.size

    def cat(self, a, b):
        return a + b

    def _conv(self, a, b, kernel_size, dilation=1):
        cls = torch.nn.Conv2d if self.d == 2 else torch.nn.Conv3d
        return cls(a, b, kernel_size, padding=dilation * (kernel_size - 1) // 2, dilation=dilation,
                   padding_mode=self.padding_mode)

    def _act(self, a):
        return torch.nn.ELU() if self.activation == "elu" else torch.nn.ReLU()

    def _norm(self, a):
        if self.norm_kind is None:
            return None
        if self.norm_kind == "layer":
            return torch.nn.GroupNorm(1, a)
        return (torch.nn.BatchNorm2d if self.d == 2 else torch.nn.BatchNorm3d)(a)

    def _pool(self, a):
        return (torch.nn.MaxPool2d if self.d == 2 else torch.nn.MaxPool3d)(2)

    def _upsample(self, a, b):
        cls = torch.nn.ConvTranspose2d if self.d == 2 else torch.nn.ConvTranspose3d
        return cls(a, b, 2, stride=2)


_CLASSES = {"geometric": GeometricFamily, "steerable": SteerableFamily, "plain": PlainFamily}


def family_class(family: str) -> type:
    """The :class:`Family` subclass named ``family`` (one of :data:`FAMILIES`)."""
    if family not in _CLASSES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return _CLASSES[family]


def make_family(family: str, in_type: FieldType, out_type: FieldType, **options) -> Family:
    """The :class:`Family` named ``family`` (one of :data:`FAMILIES`); fix its hidden size with ``set_size``.
    ``options``: family options; one the family does not use (:meth:`Family.unused_options`) is refused."""
    cls = family_class(family)
    unused = cls.unused_options(options)
    if unused:
        raise ValueError(f"the {family} family does not use the option(s) {unused}; it uses {', '.join(cls.OPTIONS)}")
    return cls(in_type, out_type, **options)
