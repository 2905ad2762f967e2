r"""``TensorFieldModel``: what the three architectures share (argument checks, width / parameter-budget search,
GeometricTensor in and out).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Optional, Tuple, Union

import torch
from escnn.nn import FieldType, GeometricTensor
from escnn.nn.modules.equivariant_module import EquivariantModule

from ..groups import action_key, is_integer
from ..nn._fields import check_dtype, check_input, check_input_shape, check_types
from ..nn._isolate import isolate
from ..representations import field_signature
from ._families import FAMILIES, Family, family_class, make_family

__all__ = ["TensorFieldModel", "count_parameters", "PARAMS_TOLERANCE", "MAX_KERNEL_BYTES"]

#: ``params=N`` accepts a model whose trainable parameter count is within this relative distance of ``N``
PARAMS_TOLERANCE = 0.10
#: largest dense convolution kernel (float32 bytes) a model may hold; larger hidden sizes are refused before building
MAX_KERNEL_BYTES = 2 * 2**30
_MAX_LEVEL = 1 << 16
_SEARCHES: Dict[tuple, Any] = {}  # (class, family, action, types, params, options) -> hidden size found

# options every architecture accepts, with their defaults (an architecture may override a default)
_FAMILY_OPTIONS = ("activation", "norm", "padding_mode", "nonlinearity", "hidden_symmetry")
COMMON_OPTIONS: Dict[str, Any] = {
    "kernel_size": 3,
    "activation": "elu",
    "norm": "batch",
    "padding_mode": "circular",
    "nonlinearity": "gated_quadratic",
    "hidden_symmetry": None,
}


def count_parameters(module: torch.nn.Module) -> int:
    """The number of trainable parameters (``requires_grad``) of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


class TensorFieldModel(EquivariantModule):
    r"""Base of :class:`ResNet`, :class:`UNet` and :class:`DilResNet`: tensor fields in, tensor fields out.

    ``Model(in_type, out_type, family='geometric', width=None, params=None, *, level=None, **options)``

    The model is a map :math:`f` from fields of ``in_type`` to fields of ``out_type`` on the same grid. For the
    geometric family every layer commutes with the group, so :math:`f(g \cdot x) = g \cdot f(x)` for every
    :math:`g` (to round-off); for the steerable family to escnn's float32 basis accuracy; the plain family has no
    such property.

    Args:
        in_type, out_type: FieldTypes of tensor fields (:func:`escnn_tensor.tensor_type`) on one accepted gspace
            (2D or 3D).
        family: ``'geometric'``, ``'steerable'`` or ``'plain'`` (see :mod:`escnn_tensor.models`).
        width: the hidden size in the family's natural unit: fields of *each* hidden tensor type (geometric; or a
            mapping ``{(k, parity): fields}`` over the types of :func:`hidden_tensor_types`), regular fields
            (steerable), channels (plain). Default: :attr:`DEFAULT_WIDTH` of the family.
        params: instead of ``width``: a budget of trainable parameters. The hidden size is searched so that the
            model has ``params`` parameters within +-10% (:data:`PARAMS_TOLERANCE`), else ``ValueError``: a
            bisection over ``level``, then a local search over neighbouring sizes (geometric: one field more, less
            or moved between two types). The search builds no full model and leaves the global RNG untouched.
        level: instead of ``width``: a one-dimensional scale of hidden sizes at the widest level (geometric: total
            number of hidden fields, spread over the hidden types scalars first; steerable: channels, as
            ``level // |G|`` regular fields plus ``level % |G|`` trivial fields; plain: channels). ``width=w`` is
            ``level = w T s`` (``T`` hidden types) / ``w |G| s`` / ``w s``, with ``s`` the widest level's multiplier
            (the UNet's ``2^num_downsamples``, else 1); narrower levels divide every multiplicity by 2 per level,
            rounding up.
        size: instead of ``width``: the exact hidden size at the widest level, as :attr:`size_arguments` reports it
            (geometric: a mapping ``{(k, parity): fields}``; steerable and plain: channels).
        options: the architecture's options (:attr:`OPTIONS` lists them with their defaults), and for every
            architecture ``kernel_size`` (odd, default 3), ``activation`` (``'elu'`` / ``'relu'``), ``norm``
            (``'batch'``, ``'layer'`` (not steerable) or ``None``), ``padding_mode`` (``'circular'``, the default,
            for periodic data; ``'zeros'``, ``'reflect'``, ``'replicate'``) and ``nonlinearity`` (geometric
            family: ``'gated_quadratic'``, the default: the gate plus a bounded low-rank quadratic term,
            :class:`~escnn_tensor.nn.GatedQuadratic`; ``'gated'``, the gate alone; or ``'vector_neuron'``). The
            default was chosen on validation errors of the default profile (docs/head_to_head.md).

            Rule: an option the family does not use is refused (``ValueError`` naming the family and the option),
            never silently ignored: ``nonlinearity`` is used by the geometric family only, and ``activation`` is
            not used with ``nonlinearity='vector_neuron'`` (each family declares its options in
            ``Family.OPTIONS``). Code that applies one set of options to every family passes each family
            :meth:`options_for` ``(family, options)``, the subset it uses (the comparison harness does).
            :attr:`options` lists only the options the model uses.

    Input: ``GeometricTensor`` of ``in_type``, ``(B, in_type.size, N..)``; output of ``out_type``,
    ``(B, out_type.size, N..)`` (same spatial size). Attributes: ``family``, ``hidden`` (a description of the
    hidden spec), ``size_arguments`` (``{'size': ...}``: passed with the same options it rebuilds the same hidden
    size, e.g. after a ``params`` search), ``options`` (every option with its value).
    Parameters are initialised by each layer's own scheme from the global torch RNG (seed it for reproducible
    models).
    """

    #: the default ``width`` of each family
    DEFAULT_WIDTH = {"geometric": 4, "steerable": 4, "plain": 32}
    #: the architecture's own options and their defaults (subclasses fill this)
    OPTIONS: Dict[str, Any] = {}

    def __init__(
        self,
        in_type: FieldType,
        out_type: FieldType,
        family: str = "geometric",
        width: Optional[Union[int, Mapping]] = None,
        params: Optional[int] = None,
        *,
        level: Optional[int] = None,
        size=None,
        _size=None,
        _counting: bool = False,
        **options,
    ):
        super().__init__()
        self.d, _, _ = check_types(in_type, out_type)
        self.in_type, self.out_type = in_type, out_type
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        self.family = family
        self.options = self._check_options(options, family)
        fam = make_family(family, in_type, out_type, **{k: v for k, v in self.options.items() if k in _FAMILY_OPTIONS})
        fam.counting = _counting
        fam.scale_ref = self._max_scale()
        given = [n for n, v in (("width", width), ("params", params), ("level", level), ("size", size)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of width, params, level and size; got {' and '.join(given)}")
        if _size is not None:
            size = _size
        elif size is not None:
            size = fam.check_size(size)
        elif params is not None:
            params = _positive_int(params, "params")
            size = self._search_size(in_type, out_type, family, params, fam, self.options)
        elif width is not None:
            if not (family == "geometric" and isinstance(width, Mapping)):
                width = _positive_int(width, "width")
            size = fam.size_of_width(width)
        elif level is not None:
            size = fam.size_of_level(level)
        else:
            size = fam.size_of_width(self.DEFAULT_WIDTH[family])
        fam.set_size(size)
        self._check_memory(fam)
        self.size_arguments = fam.size_arguments()
        self.hidden = fam.describe()
        self._build(fam)
        if not _counting:
            fam.finalize(self)
            # escnn caches basis modules per field-type pair and shares them between networks: give this model its
            # own, so that .double()/.half()/.to() on it never changes another network (see escnn_tensor.nn.isolate)
            isolate(self)

    # ---- options ------------------------------------------------------------------------------------------------

    @classmethod
    def options_for(cls, family: str, options: Mapping[str, Any]) -> Dict[str, Any]:
        """The subset of ``options`` that a model of ``family`` uses: ``options`` without the family options
        (``activation``, ``norm``, ``padding_mode``, ``nonlinearity``) that ``family`` ignores, e.g. without
        ``nonlinearity`` for ``'steerable'`` and ``'plain'``. Code that applies one set of options to every family
        (the comparison harness) passes each family this subset; the constructor refuses the rest. Options unknown
        to the architecture are kept, so the constructor still refuses them."""
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        unused = set(family_class(family).unused_options(options))
        return {k: v for k, v in options.items() if k not in unused}

    @classmethod
    def default_options(cls) -> Dict[str, Any]:
        """Every option this architecture accepts, with its default (the common ones, overridden by :attr:`OPTIONS`)."""
        return {**COMMON_OPTIONS, **cls.OPTIONS}

    @classmethod
    def _check_options(cls, options: Dict[str, Any], family: str) -> Dict[str, Any]:
        defaults = cls.default_options()
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            raise TypeError(
                f"{cls.__name__} got unknown option(s) {unknown}; accepted: "
                + ", ".join(f"{k}={v!r}" for k, v in defaults.items())
            )
        fam_cls = family_class(family)
        unused = fam_cls.unused_options(options)
        if unused:
            given = ", ".join(f"{k}={options[k]!r}" for k in unused)
            context = f" with nonlinearity={options['nonlinearity']!r}" if "nonlinearity" not in unused and \
                "nonlinearity" in options else ""
            raise ValueError(
                f"{cls.__name__}: the {family} family{context} does not use the option(s) {given} (they would change "
                f"nothing); the {family} family uses {', '.join(fam_cls.OPTIONS)}. Drop them, or pass "
                f"{cls.__name__}.options_for({family!r}, options)"
            )
        out = {**defaults, **options}
        for k in fam_cls.unused_options(out):  # defaults the family ignores: not in self.options
            del out[k]
        k = _positive_int(out["kernel_size"], "kernel_size")
        if k % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd (the 'same' padding (kernel_size - 1) / 2 keeps the grid centred), got {k}"
            )
        cls._check_architecture_options(out)
        return out

    @classmethod
    def _check_architecture_options(cls, options: Dict[str, Any]) -> None:
        """Validate the subclass's own options in place."""

    # ---- parameter budget ---------------------------------------------------------------------------------------

    @classmethod
    def _search_size(cls, in_type, out_type, family, target: int, fam: Family, options) -> Any:
        """The hidden size whose parameter count is closest to ``target`` (within :data:`PARAMS_TOLERANCE`).

        The count grows with the level: doubling then bisection find the first level at or above the target; the
        better of it and the level before is then refined by a local search over neighbouring sizes (geometric:
        one field more or less of one type, or one field moved between types), which fills the gaps where one
        level step adds many parameters (e.g. one more 2-tensor field). Trial models are built in counting mode
        (every distinct layer is built once, then stands in by its parameter count) with the global RNG state
        saved and restored, so the search does not change what a seeded construction draws. Results are
        remembered for the process (same class, family, field types, budget and options).
        """
        key = (cls, family, action_key(in_type.gspace), tuple(field_signature(in_type, with_symmetry=True)),
               tuple(field_signature(out_type, with_symmetry=True)), target, tuple(sorted(options.items())))
        if key not in _SEARCHES:
            _SEARCHES[key] = cls._search(in_type, out_type, family, target, fam, options)
        return _SEARCHES[key]

    @classmethod
    def _search(cls, in_type, out_type, family, target: int, fam: Family, options) -> Any:
        counts: Dict[Any, int] = {}

        def count(size) -> int:
            if size not in counts:
                try:
                    with torch.random.fork_rng(devices=[]):
                        model = cls(in_type, out_type, family, _size=size, _counting=True, **options)
                except ValueError as err:  # a layer or the model refuses this size (memory): the budget is too large
                    reason = str(err).split(";")[0]
                    reason = reason if len(reason) <= 200 else reason[:200] + " ..."
                    raise ValueError(
                        f"params={target} is out of reach: {cls.__name__} ({family}) at hidden size {size} is refused "
                        f"({reason}); choose a smaller params"
                    ) from None
                counts[size] = count_parameters(model)
            return counts[size]

        lo = fam.min_level()
        hi = lo
        while count(fam.size_of_level(hi)) < target:
            if hi >= _MAX_LEVEL:
                raise ValueError(
                    f"params={target} is out of reach: {cls.__name__} ({family}) has "
                    f"{count(fam.size_of_level(hi))} parameters at level {hi}, the largest level searched"
                )
            hi *= 2
        low = max(lo, hi // 2)
        while low < hi:  # first level with count >= target, in (low, hi]
            mid = (low + hi) // 2
            if count(fam.size_of_level(mid)) >= target:
                hi = mid
            else:
                low = mid + 1
        miss = lambda size: abs(count(size) - target)  # noqa: E731
        best = min((fam.size_of_level(lv) for lv in (hi - 1, hi) if lv >= lo), key=miss)
        for _ in range(64):
            if miss(best) <= PARAMS_TOLERANCE * target / 4:
                break
            step = min(fam.neighbours(best), key=miss, default=best)
            if miss(step) >= miss(best):
                break
            best = step
        if miss(best) > PARAMS_TOLERANCE * target:
            steps = ", ".join(f"{count(fam.size_of_level(lv))} (level {lv})" for lv in (hi - 1, hi) if lv >= lo)
            raise ValueError(
                f"params={target}: no {family} {cls.__name__} with these options has a parameter count within "
                f"{PARAMS_TOLERANCE:.0%} of it (nearest found: {count(best)} parameters, hidden size {best}; "
                f"neighbouring levels give {steps}); choose another params or other options"
            )
        return best

    def _max_scale(self) -> int:
        """The largest multiplier of the hidden size inside the architecture (the UNet's deepest level)."""
        return 1

    def _check_memory(self, fam: Family) -> None:
        """Refuse hidden sizes whose widest convolution kernel would exceed :data:`MAX_KERNEL_BYTES`.

        Estimate: the widest hidden spec has ``C`` channels; a convolution from a concatenation of two of them
        (the UNet's skip) to one holds a dense ``2C x C x K^d`` kernel (float32), also while it is expanded from
        the equivariant weights in every training step.
        """
        c = fam.channels(self._max_scale())
        nbytes = 2 * c * c * self.options["kernel_size"] ** self.d * 4
        if nbytes > MAX_KERNEL_BYTES:
            raise ValueError(
                f"{type(self).__name__} ({self.family}) with hidden size {fam.size} would hold convolution kernels of "
                f"about {nbytes / 2**30:.1f} GiB ({c} channels at its widest, kernel {self.options['kernel_size']}); "
                f"the limit is {MAX_KERNEL_BYTES / 2**30:.0f} GiB (MAX_KERNEL_BYTES). Use a smaller width / params."
            )

    # ---- structure ----------------------------------------------------------------------------------------------

    def _build(self, fam: Family) -> None:
        raise NotImplementedError

    def _forward(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _check_spatial(self, spatial: Tuple[int, ...]) -> None:
        """Raise ``ValueError`` if the architecture cannot take a grid of this size (UNet: divisibility)."""

    def forward(self, input: GeometricTensor) -> GeometricTensor:
        """``GeometricTensor`` of ``in_type`` ``(B, C_in, N..)`` -> of ``out_type`` ``(B, C_out, N..)``."""
        x = check_input(input, self.in_type, self.d, type(self).__name__)
        check_dtype(x, next(self.parameters(), None), type(self).__name__)  # not torch's "expected scalar type"
        self._check_spatial(tuple(x.shape[2:]))
        return GeometricTensor(self._forward(x), self.out_type)

    def evaluate_output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """``(B, in_type.size, N..)`` -> ``(B, out_type.size, N..)``."""
        input_shape = check_input_shape(input_shape, self.in_type, self.d)
        self._check_spatial(input_shape[2:])
        return (input_shape[0], self.out_type.size) + input_shape[2:]

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"family={self.family!r}, hidden: {self.hidden}, parameters={count_parameters(self)}, {opts}"
