r"""The registry of tensor-field tasks: generation by seed, field types, and the on-disk cache.

A *task* maps an input tensor field to a target tensor field. Each :class:`Task` has a ``name``, the dimension
``d``, a one-line ``description``, the field types :meth:`Task.in_type` / :meth:`Task.out_type` (escnn
``FieldType`` s of :func:`escnn_tensor.tensor_type`, for the full group or any accepted subgroup gspace), a
``default_size`` and a smaller ``quick_size``, and :meth:`Task.make` which generates a :class:`TensorFieldData`.

Conventions of every data set:

* float64 ``inputs`` ``(B, C_in, N, ..., N)`` and ``targets`` ``(B, C_out, N, ..., N)`` in **escnn layout**
  (spatial axes ``(-y, x)`` / ``(-z, -y, x)``, see :func:`escnn_tensor.grid_to_escnn`; tensor components
  row-major over ``(x, y[, z])``), ready for ``GeometricTensor(inputs, task.in_type(gspace))``;
* deterministic by ``seed``: all randomness comes from one ``torch.Generator().manual_seed(seed)`` (the global
  RNG is neither used nor changed), so the same call gives bit-identical data;
* the generators are equivariant: for every element ``g`` of the group, generating from ``g . input`` gives
  ``g . target`` (tested for all 8 / 48 elements).

Symmetric targets. The tasks whose targets hold symmetric 2-tensors (``tidal``, ``subgrid-stress``, the momentum
flux of ``boussinesq-flux``) give them as *symmetric* fields by default (option ``target='symmetric'``:
``(2, +1, 1, 'symmetric')`` in ``out_fields``, the coordinates of
:func:`escnn_tensor.representations.symmetric_basis`, ``(T_xx, sqrt(2) T_xy, T_yy)`` in 2D: 3 channels instead of 4).
The basis is orthonormal, so squared errors on these coordinates equal the full tensors' Frobenius errors of
symmetric tensors. ``target='full'`` gives all ``d**k`` components (the definition of version 1 of these tasks);
:func:`escnn_tensor.representations.to_full_tensor` converts either way.

:func:`load` caches data sets on disk, a file per (task, options, n_samples, size, seed, task version), in
``$ESCNN_TENSOR_DATA`` or ``~/.cache/escnn_tensor/data``; files are written atomically and checked by a SHA-256
checksum on reading, so a corrupt or partial file is regenerated (with a warning).
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, Mapping, Optional, Sequence, Tuple, Type, Union

import torch
from escnn.gspaces import GSpace
from escnn.nn import FieldType

from .._io import save_torch
from ..groups import check_gspace, is_integer
from ..representations import from_full_tensor, symmetric_size, tensor_type
from . import boussinesq, gravity, magnetostatics, navier_stokes, spectral, subgrid, tidal

__all__ = [
    "TensorFieldData",
    "Task",
    "GravityTask",
    "TidalTask",
    "NavierStokesTask",
    "SubgridStressTask",
    "BoussinesqFluxTask",
    "MagnetostaticsTask",
    "TASKS",
    "get_task",
    "load",
    "default_cache_dir",
    "cache_path",
    "MAX_DATA_BYTES",
    "TARGET_FORMS",
]

FieldList = Tuple[tuple, ...]  # (k, parity, multiplicity) or (k, parity, multiplicity, symmetry) entries

TARGET_FORMS = ("symmetric", "full")
"""Values of the ``target`` option of the tasks with symmetric 2-tensor targets (see the module docs)."""

MAX_DATA_BYTES = 4 * 2**30
"""Largest data set :meth:`Task.make` builds (inputs + targets, float64): 4 GiB."""

_WORK_BYTES = 512 * 2**20  # working memory per generation chunk


@dataclass(frozen=True, eq=False)
class TensorFieldData:
    """A generated data set: inputs and targets in escnn layout, float64, and where they came from.

    Attributes:
        inputs: ``(B, C_in, *grid[::-1])``; the fields of ``in_fields`` (escnn layout: spatial axes ``(-y, x)`` /
            ``(-z, -y, x)``, so the spatial shape is the grid reversed).
        targets: ``(B, C_out, *grid[::-1])``; the fields of ``out_fields``.
        task, size, seed, options: the arguments that made it (``options`` with every default filled in);
            ``size`` is the side of a square / cubic grid, ``None`` for any other grid (see :attr:`grid`).
        d: 2 or 3.
        in_fields, out_fields: ``((k, parity, multiplicity[, symmetry]), ...)`` as accepted by
            :func:`escnn_tensor.tensor_type`.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    task: str
    size: int
    seed: int
    d: int
    in_fields: FieldList
    out_fields: FieldList
    options: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def grid(self) -> Tuple[int, ...]:
        """``(n_x, n_y[, n_z])``: the number of grid points along each axis (any shape, not only ``N^d``)."""
        return tuple(self.inputs.shape[2:])[::-1]

    def in_type(self, gspace: GSpace) -> FieldType:
        """``tensor_type(gspace, in_fields)``."""
        return tensor_type(gspace, list(self.in_fields))

    def out_type(self, gspace: GSpace) -> FieldType:
        """``tensor_type(gspace, out_fields)``."""
        return tensor_type(gspace, list(self.out_fields))

    def subset(self, index: Union[slice, Sequence[int], torch.Tensor]) -> "TensorFieldData":
        """The samples ``index`` (a slice, a list of indices or an index tensor), same metadata."""
        if isinstance(index, slice):
            inputs, targets = self.inputs[index], self.targets[index]
        else:
            idx = torch.as_tensor(index, dtype=torch.long)
            inputs, targets = self.inputs.index_select(0, idx), self.targets.index_select(0, idx)
        return TensorFieldData(
            inputs, targets, self.task, self.size, self.seed, self.d, self.in_fields, self.out_fields, self.options
        )


# ----------------------------------------------------------------------------------------------------------------
# option checks
# ----------------------------------------------------------------------------------------------------------------


def _number(name: str, value, minimum: float = -math.inf, strict: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"option {name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _pair(name: str, value, integer: bool) -> Tuple:
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ValueError(f"option {name} must be a pair (min, max), got {value!r}")
    if integer:
        if not all(is_integer(v) for v in value) or not 1 <= value[0] <= value[1]:
            raise ValueError(f"option {name} must be integers (min, max) with 1 <= min <= max, got {value!r}")
        return (int(value[0]), int(value[1]))
    lo, hi = (_number(name, v, 0.0) for v in value)
    if lo > hi:
        raise ValueError(f"option {name} must be (min, max) with 0 <= min <= max, got {value!r}")
    return (lo, hi)


def _choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"option {name} must be one of {list(choices)}, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------------------------
# tasks
# ----------------------------------------------------------------------------------------------------------------


class Task:
    """A tensor-field task (see the module docs). Construct through :func:`get_task`.

    Class attributes: ``name``, ``d``, ``description`` (one line), ``default_size``, ``quick_size``, ``min_size``,
    ``version`` (of the task's definition: its generator and its field types; part of the cache key, and of the
    harness's job ids when above 1), ``defaults`` (the options and their defaults),
    ``target_is_function_of_input`` (``True``: :meth:`solve` maps inputs to targets exactly; ``False`` for
    ``subgrid-stress``, whose target also depends on unresolved scales, so no model can reach zero error).
    Instance attribute ``options``: the options of this instance, every default filled in.
    """

    name: ClassVar[str]
    d: ClassVar[int]
    description: ClassVar[str]
    default_size: ClassVar[int]
    quick_size: ClassVar[int]
    min_size: ClassVar[int] = 4
    version: ClassVar[int] = 1
    defaults: ClassVar[Dict[str, Any]] = {}
    target_is_function_of_input: ClassVar[bool] = True

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise TypeError(
                f"task {self.name!r} got unknown option(s) {unknown}; its options are "
                f"{ {k: v for k, v in self.defaults.items()} }"
            )
        merged = dict(self.defaults)
        merged.update(options)
        self.options: Dict[str, Any] = self._check_options(merged)

    # -- to override ---------------------------------------------------------------------------------------
    def _check_options(self, options: Dict[str, Any]) -> Dict[str, Any]:
        return options

    @property
    def in_fields(self) -> FieldList:
        """``((k, parity, multiplicity), ...)`` of the input."""
        raise NotImplementedError

    @property
    def out_fields(self) -> FieldList:
        """``((k, parity, multiplicity), ...)`` of the target."""
        raise NotImplementedError

    def _generate(self, n_samples: int, size: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _targets(self, full: torch.Tensor) -> torch.Tensor:
        """The fields of :attr:`out_fields` from full tensors ``(B, sum m d**k, *grid)`` (escnn layout): every field
        with a symmetry is replaced by its coordinates (:func:`escnn_tensor.representations.from_full_tensor`, the
        orthogonal projection: exact for tensors with the symmetry); ``full`` itself when there is none."""
        if all(len(f) == 3 for f in self.out_fields):
            return full
        parts, start = [], 0
        for f in self.out_fields:
            k, m = f[0], f[2]
            for _ in range(m):
                block = full[:, start : start + self.d**k]
                start += self.d**k
                parts.append(block if len(f) == 3 else from_full_tensor(block, self.d, k, f[3], dim=1))
        return torch.cat(parts, 1)

    def _work_bytes(self, size: int) -> int:
        """Estimated peak working memory of generating one sample."""
        return 32 * 16 * size**self.d

    def solve(self, inputs: torch.Tensor) -> torch.Tensor:
        """The target of ``inputs`` (escnn layout, a batch): the map the generator applies to its inputs."""
        raise NotImplementedError(f"task {self.name!r}: the target is not a function of the input")

    # -- public --------------------------------------------------------------------------------------------
    def in_type(self, gspace: GSpace) -> FieldType:
        """The input ``FieldType`` on ``gspace`` (``hyperoctahedral_gspace(d)`` or an accepted subgroup's)."""
        return tensor_type(self._check_gspace(gspace), list(self.in_fields))

    def out_type(self, gspace: GSpace) -> FieldType:
        """The target ``FieldType`` on ``gspace``."""
        return tensor_type(self._check_gspace(gspace), list(self.out_fields))

    def channels(self) -> Tuple[int, int]:
        """``(C_in, C_out)``: the channel counts of inputs and targets."""
        count = lambda fields: sum(f[2] * symmetric_size(self.d, f[0], f[3] if len(f) == 4 else None) for f in fields)
        return count(self.in_fields), count(self.out_fields)

    def check_size(self, size) -> int:
        """Validate a grid side for this task (``None`` -> ``default_size``); returns it as ``int``."""
        if size is None:
            return self.default_size
        if not is_integer(size) or size < self.min_size:
            raise ValueError(f"size of task {self.name!r} must be an integer >= {self.min_size}, got {size!r}")
        return int(size)

    def make(self, n_samples: int, size: Optional[int] = None, seed: int = 0) -> TensorFieldData:
        """Generate ``n_samples`` input/target pairs on a ``size^d`` grid from ``seed`` (see the module docs).

        Raises ``ValueError`` for bad arguments and, before allocating, if the data would exceed
        :data:`MAX_DATA_BYTES` or one sample's working memory exceeds the generation budget.
        """
        n_samples, seed, size = _check_count(n_samples, "n_samples"), _check_seed(seed), self.check_size(size)
        c_in, c_out = self.channels()
        total = n_samples * (c_in + c_out) * size**self.d * 8
        if total > MAX_DATA_BYTES:
            raise ValueError(
                f"task {self.name!r}: {n_samples} samples of size {size} would take {total / 2**30:.1f} GiB "
                f"(limit MAX_DATA_BYTES = {MAX_DATA_BYTES / 2**30:.0f} GiB); use fewer samples or a smaller size"
            )
        work = self._work_bytes(size)
        if work > _WORK_BYTES:
            raise ValueError(
                f"task {self.name!r}: generating one sample of size {size} needs about {work / 2**20:.0f} MiB of "
                f"working memory (limit {_WORK_BYTES / 2**20:.0f} MiB); use a smaller size"
            )
        chunk = max(1, _WORK_BYTES // work)
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.empty((n_samples, c_in) + (size,) * self.d, dtype=torch.float64)
        targets = torch.empty((n_samples, c_out) + (size,) * self.d, dtype=torch.float64)
        for start in range(0, n_samples, chunk):
            stop = min(start + chunk, n_samples)
            inputs[start:stop], targets[start:stop] = self._generate(stop - start, size, generator)
        return TensorFieldData(
            inputs=inputs,
            targets=targets,
            task=self.name,
            size=size,
            seed=seed,
            d=self.d,
            in_fields=self.in_fields,
            out_fields=self.out_fields,
            options=dict(self.options),
        )

    def option_key(self) -> str:
        """A short hash of the options (with defaults filled in): part of the cache file name."""
        text = json.dumps(self.options, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def _check_gspace(self, gspace: GSpace) -> GSpace:
        d = check_gspace(gspace)
        if d != self.d:
            raise ValueError(f"task {self.name!r} lives in {self.d}D, but gspace {gspace.name} acts on R^{d}")
        return gspace

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.options.items() if self.defaults.get(k) != v}
        args = "".join(f", {k}={v!r}" for k, v in changed.items())
        return f"get_task({self.name!r}{args})"


class _SymmetricTargets:
    """Mixin of the tasks whose target 2-tensors are symmetric: the option ``target`` (:data:`TARGET_FORMS`),
    ``'symmetric'`` by default (their 2-tensor fields as ``(2, parity, m, 'symmetric')``) or ``'full'``. Version 2
    of these tasks: version 1 gave the full tensors."""

    version = 2
    target_default = {"target": "symmetric"}

    def _check_target(self, options: Dict[str, Any], checked: Dict[str, Any]) -> Dict[str, Any]:
        checked["target"] = _choice("target", options["target"], TARGET_FORMS)
        return checked

    def _target_fields(self, fields: FieldList) -> FieldList:
        """``fields`` (full tensors) with every field of order >= 2 marked ``'symmetric'`` unless ``target='full'``."""
        if self.options["target"] == "full":
            return fields
        return tuple(f + ("symmetric",) if f[0] >= 2 else f for f in fields)


class _DensityTask(Task):
    """Shared options of the tasks whose input is a point-mass density (:func:`gravity.point_mass_density`)."""

    d = 2
    default_size, quick_size = 32, 16
    defaults = {"smoothing": 1.0, "n_masses": (3, 8), "mass_range": (0.5, 1.5)}
    in_fields = ((0, 1, 1),)

    def _check_options(self, o):
        return {
            "smoothing": _number("smoothing", o["smoothing"], 0.0),
            "n_masses": _pair("n_masses", o["n_masses"], integer=True),
            "mass_range": _pair("mass_range", o["mass_range"], integer=False),
        }

    def _density(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        o = self.options
        rho = gravity.point_mass_density(n, size, generator=generator, smoothing=o["smoothing"],
                                         n_masses=o["n_masses"], mass_range=o["mass_range"])
        return spectral.to_escnn(rho, 2, 0)

    def _generate(self, n, size, generator):
        x = self._density(n, size, generator)
        return x, self.solve(x)


class GravityTask(_DensityTask):
    r"""``gravity``: density :math:`\rho` (scalar) -> :math:`g = -\nabla\phi`, :math:`\nabla^2\phi = \rho - \bar\rho`.

    See :mod:`escnn_tensor.data.gravity`. Options: ``smoothing`` (Gaussian width of the masses, pixels),
    ``n_masses`` (min, max), ``mass_range`` (min, max).
    """

    name = "gravity"
    description = "point-mass density (scalar) -> gravitational field g = -grad phi (vector), periodic 2D Poisson"
    out_fields = ((1, 1, 1),)

    def solve(self, inputs: torch.Tensor) -> torch.Tensor:
        """The target of ``inputs`` (escnn layout ``(B, 1, N, N)`` -> ``(B, 2, N, N)``): the generator's map."""
        return gravity.field_from_escnn_density(inputs)


class TidalTask(_SymmetricTargets, _DensityTask):
    r"""``tidal``: density :math:`\rho` (scalar) -> tidal tensor :math:`T_{ij} = \partial_i\partial_j\phi` (symmetric
    2-tensor).

    See :mod:`escnn_tensor.data.tidal`. Options as for ``gravity``, and ``target``: ``'symmetric'`` (default: a
    symmetric field, channels ``(T_xx, sqrt(2) T_xy, T_yy)``) or ``'full'`` (all four components ``(xx, xy, yx,
    yy)``, the definition of version 1).
    """

    name = "tidal"
    description = "point-mass density (scalar) -> tidal tensor T_ij = d_i d_j phi (symmetric 2-tensor), periodic 2D"
    defaults = {**_DensityTask.defaults, **_SymmetricTargets.target_default}

    def _check_options(self, o):
        return self._check_target(o, super()._check_options(o))

    @property
    def out_fields(self) -> FieldList:
        return self._target_fields(((2, 1, 1),))

    def solve(self, inputs: torch.Tensor) -> torch.Tensor:
        """The target of ``inputs`` (escnn layout ``(B, 1, N, N)`` -> ``(B, 3, N, N)``, or ``(B, 4, N, N)`` with
        ``target='full'``): the generator's map."""
        return self._targets(tidal.tidal_from_escnn_density(inputs))


class NavierStokesTask(Task):
    r"""``navier-stokes``: the state at :math:`t` -> the state at :math:`t + \Delta t`, 2D forced turbulence.

    See :mod:`escnn_tensor.data.navier_stokes`. Each sample is its own trajectory: random band-limited initial
    vorticity (rms ``initial_rms``, spectrum peaked at wavenumber ``initial_peak``), evolved for ``spin_up``, then
    the pair (state at ``spin_up``, state at ``spin_up + interval``); box units (side 1).

    Options: ``variable`` = ``"velocity"`` (vector -> vector, default) or ``"vorticity"`` (pseudoscalar ->
    pseudoscalar), ``viscosity`` (1e-3), ``forcing_amplitude`` (0.1; 0 = decaying), ``spin_up`` (1.0),
    ``interval`` (0.2), ``solver_dt`` (``None`` = ``0.25 / size``), ``initial_rms`` (:math:`2\pi`),
    ``initial_peak`` (4).

    The map is D4-equivariant about the grid centre but, with forcing, **not translation-equivariant** (the
    forcing is fixed in space): a model with circular padding cannot represent the forcing's contribution
    (about ``forcing_amplitude * interval`` in vorticity: 1% of the change at the defaults). Use
    ``forcing_amplitude=0`` for a translation-equivariant task.
    """

    name = "navier-stokes"
    d = 2
    description = "2D incompressible Navier-Stokes, velocity (vector; option: vorticity, pseudoscalar) at t -> t + dt"
    default_size, quick_size, min_size = 32, 16, 8
    defaults = {
        "variable": "velocity",
        "viscosity": 1e-3,
        "forcing_amplitude": 0.1,
        "spin_up": 1.0,
        "interval": 0.2,
        "solver_dt": None,
        "initial_rms": 2 * math.pi,
        "initial_peak": 4.0,
    }

    def _check_options(self, o):
        return {
            "variable": _choice("variable", o["variable"], ("velocity", "vorticity")),
            "viscosity": _number("viscosity", o["viscosity"], 0.0),
            "forcing_amplitude": _number("forcing_amplitude", o["forcing_amplitude"]),
            "spin_up": _number("spin_up", o["spin_up"], 0.0),
            "interval": _number("interval", o["interval"], 0.0, strict=True),
            "solver_dt": None if o["solver_dt"] is None else _number("solver_dt", o["solver_dt"], 0.0, strict=True),
            "initial_rms": _number("initial_rms", o["initial_rms"], 0.0, strict=True),
            "initial_peak": _number("initial_peak", o["initial_peak"], 0.0, strict=True),
        }

    @property
    def in_fields(self) -> FieldList:
        return ((1, 1, 1),) if self.options["variable"] == "velocity" else ((0, -1, 1),)

    out_fields = in_fields

    def _work_bytes(self, size: int) -> int:
        return 48 * 16 * size**2

    def solver(self, size: int) -> navier_stokes.VorticitySolver:
        """The :class:`~escnn_tensor.data.navier_stokes.VorticitySolver` of this task's options on a ``size`` grid."""
        o = self.options
        return navier_stokes.VorticitySolver(self.check_size(size), o["viscosity"], o["forcing_amplitude"], o["solver_dt"])

    def solve(self, inputs: torch.Tensor) -> torch.Tensor:
        """The target of ``inputs`` (escnn layout, the task's variable): the solver run for ``interval``."""
        k = 1 if self.options["variable"] == "velocity" else 0
        state = spectral.from_escnn(inputs, 2, k)
        sol = self.solver(state.shape[1])
        w = sol.vorticity(state) if k == 1 else state
        return self._to_escnn(sol, sol.evolve(w, self.options["interval"]))

    def _to_escnn(self, sol: navier_stokes.VorticitySolver, omega: torch.Tensor) -> torch.Tensor:
        if self.options["variable"] == "velocity":
            return spectral.to_escnn(sol.velocity(omega), 2, 1)
        return spectral.to_escnn(omega, 2, 0)

    def _generate(self, n, size, generator):
        o = self.options
        sol = self.solver(size)
        w0 = navier_stokes.initial_vorticity(n, size, generator, peak=o["initial_peak"], rms=o["initial_rms"])
        w1 = sol.evolve(w0, o["spin_up"])
        w2 = sol.evolve(w1, o["interval"])
        return self._to_escnn(sol, w1), self._to_escnn(sol, w2)


class SubgridStressTask(_SymmetricTargets, Task):
    r"""``subgrid-stress``: filtered velocity :math:`\bar u` (vector) -> subgrid stress :math:`\tau` (2-tensor).

    See :mod:`escnn_tensor.data.subgrid`. ``size`` is the coarse grid; the fine fields have ``factor * size``.
    The target is *not* a function of the input (it depends on the unresolved scales); the generator's map is
    :meth:`from_fine` (fine velocity -> both).

    Options: ``factor`` (4), ``filter_width`` (2.0 coarse pixels), ``source`` = ``"random"`` (default) or
    ``"navier-stokes"``, ``energy_slope`` (-5/3), ``ns_viscosity`` (1e-4) and ``ns_time`` (0.25) for the
    Navier-Stokes source, ``target``: ``'symmetric'`` (default: :math:`\tau` as a symmetric field, channels
    ``(xx, sqrt(2) xy, yy)``) or ``'full'`` (``(xx, xy, yx, yy)``, the definition of version 1).
    """

    name = "subgrid-stress"
    d = 2
    target_is_function_of_input = False
    description = "filtered 2D turbulent velocity (vector) -> subgrid stress tau_ij (symmetric PSD 2-tensor)"
    default_size, quick_size = 32, 16
    defaults = {
        "factor": 4,
        "filter_width": 2.0,
        "source": "random",
        "energy_slope": -5.0 / 3.0,
        "ns_viscosity": 1e-4,
        "ns_time": 0.25,
        **_SymmetricTargets.target_default,
    }
    in_fields = ((1, 1, 1),)

    @property
    def out_fields(self) -> FieldList:
        return self._target_fields(((2, 1, 1),))

    def _check_options(self, o):
        if not is_integer(o["factor"]) or o["factor"] < 1:
            raise ValueError(f"option factor must be an integer >= 1, got {o['factor']!r}")
        return self._check_target(o, {
            "factor": int(o["factor"]),
            "filter_width": _number("filter_width", o["filter_width"], 0.0, strict=True),
            "source": _choice("source", o["source"], ("random", "navier-stokes")),
            "energy_slope": _number("energy_slope", o["energy_slope"]),
            "ns_viscosity": _number("ns_viscosity", o["ns_viscosity"], 0.0),
            "ns_time": _number("ns_time", o["ns_time"], 0.0),
        })

    def _work_bytes(self, size: int) -> int:
        return 48 * 16 * (self.options["factor"] * size) ** 2

    def fine_velocity(self, n_samples: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``n_samples`` fine velocities ``(n, factor*size, factor*size, 2)``, grid layout, from ``source``."""
        o = self.options
        fine = o["factor"] * self.check_size(size)
        if o["source"] == "random":
            return subgrid.random_velocity(n_samples, fine, generator, o["energy_slope"])
        return subgrid.navier_stokes_velocity(n_samples, fine, generator, o["energy_slope"], o["ns_viscosity"], o["ns_time"])

    def from_fine(self, u: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The generator's map on escnn layout: fine ``(B, 2, fN, fN)`` -> ``(u_bar (B, 2, N, N), tau (B, 3, N, N))``
        (``tau (B, 4, N, N)`` with ``target='full'``)."""
        u_bar, tau = subgrid.stress_from_escnn_velocity(u, self.options["factor"], self.options["filter_width"])
        return u_bar, self._targets(tau)

    def _generate(self, n, size, generator):
        u = spectral.to_escnn(self.fine_velocity(n, size, generator), 2, 1)
        return self.from_fine(u)


class BoussinesqFluxTask(_SymmetricTargets, Task):
    r"""``boussinesq-flux``: filtered buoyancy and velocity -> subgrid buoyancy flux (vector) and momentum flux
    (2-tensor), from 2D Boussinesq convection.

    See :mod:`escnn_tensor.data.boussinesq` (the equations, why gravity is central rather than uniform, the
    filter). ``size`` is the coarse grid; the solver runs on ``factor * size``. Each sample: random band-limited
    vorticity (rms ``initial_rms``, peak ``initial_peak``) and buoyancy (rms ``buoyancy_rms``), evolved for
    ``spin_up`` box time units, then filtered. Inputs ``(b_bar, u_bar)`` (scalar, vector: 3 channels), targets
    ``(sigma, tau)`` with :math:`\sigma_i = \overline{u_i b} - \bar u_i \bar b` (vector) and :math:`\tau_{ij} =
    \overline{u_i u_j} - \bar u_i \bar u_j` (symmetric 2-tensor: a symmetric field ``(xx, sqrt(2) xy, yy)``, 5
    channels in all; with ``target='full'`` all 4 components, 6 channels, the definition of version 1). The target is
    *not* a function of the input; the generator's map is :meth:`from_fine`.

    Options: ``factor`` (4), ``filter_width`` (2.0 coarse pixels), ``gravity`` (``"central"`` or ``"none"``:
    passive buoyancy), ``gravity_strength`` (2.0), ``heating`` (1.0), ``forcing_amplitude`` (0.0, vorticity
    forcing), ``viscosity`` (5e-4), ``diffusivity`` (5e-4), ``spin_up`` (0.5), ``solver_dt`` (``None`` = ``0.25 /
    (factor * size)``), ``initial_rms`` (:math:`2\pi`), ``initial_peak`` (4.0), ``buoyancy_rms`` (1.0), ``target``
    (``'symmetric'`` or ``'full'``, see above).
    """

    name = "boussinesq-flux"
    d = 2
    target_is_function_of_input = False
    description = ("filtered 2D Boussinesq buoyancy (scalar) and velocity (vector) -> subgrid buoyancy flux (vector) "
                   "and momentum flux tau_ij (symmetric 2-tensor)")
    default_size, quick_size = 32, 16
    defaults = {
        "factor": 4,
        "filter_width": 2.0,
        "gravity": "central",
        "gravity_strength": 2.0,
        "heating": 1.0,
        "forcing_amplitude": 0.0,
        "viscosity": 5e-4,
        "diffusivity": 5e-4,
        "spin_up": 0.5,
        "solver_dt": None,
        "initial_rms": 2 * math.pi,
        "initial_peak": 4.0,
        "buoyancy_rms": 1.0,
        **_SymmetricTargets.target_default,
    }
    in_fields = ((0, 1, 1), (1, 1, 1))

    @property
    def out_fields(self) -> FieldList:
        return self._target_fields(((1, 1, 1), (2, 1, 1)))

    def _check_options(self, o):
        if not is_integer(o["factor"]) or o["factor"] < 1:
            raise ValueError(f"option factor must be an integer >= 1, got {o['factor']!r}")
        return self._check_target(o, {
            "factor": int(o["factor"]),
            "filter_width": _number("filter_width", o["filter_width"], 0.0, strict=True),
            "gravity": _choice("gravity", o["gravity"], ("central", "none")),
            "gravity_strength": _number("gravity_strength", o["gravity_strength"]),
            "heating": _number("heating", o["heating"]),
            "forcing_amplitude": _number("forcing_amplitude", o["forcing_amplitude"]),
            "viscosity": _number("viscosity", o["viscosity"], 0.0),
            "diffusivity": _number("diffusivity", o["diffusivity"], 0.0),
            "spin_up": _number("spin_up", o["spin_up"], 0.0),
            "solver_dt": None if o["solver_dt"] is None else _number("solver_dt", o["solver_dt"], 0.0, strict=True),
            "initial_rms": _number("initial_rms", o["initial_rms"], 0.0),
            "initial_peak": _number("initial_peak", o["initial_peak"], 0.0, strict=True),
            "buoyancy_rms": _number("buoyancy_rms", o["buoyancy_rms"], 0.0),
        })

    def _work_bytes(self, size: int) -> int:
        return 96 * 16 * (self.options["factor"] * size) ** 2

    def solver(self, size: int) -> boussinesq.BoussinesqSolver:
        """The :class:`~escnn_tensor.data.boussinesq.BoussinesqSolver` on the fine grid of a ``size`` task."""
        o = self.options
        return boussinesq.BoussinesqSolver(
            o["factor"] * self.check_size(size), o["viscosity"], o["diffusivity"], o["gravity"],
            o["gravity_strength"], o["heating"], o["forcing_amplitude"], o["solver_dt"],
        )

    def fine_fields(self, n_samples: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``n_samples`` spun-up fine states in escnn layout ``(n, 3, factor*size, factor*size)``: ``b, u_x, u_y``."""
        o = self.options
        sol = self.solver(size)
        n = sol.size
        w0 = navier_stokes.initial_vorticity(n_samples, n, generator, peak=o["initial_peak"], rms=o["initial_rms"])
        b0 = boussinesq.initial_buoyancy(n_samples, n, generator, peak=o["initial_peak"], rms=o["buoyancy_rms"])
        w, b = sol.evolve(w0, b0, o["spin_up"])
        return torch.cat([spectral.to_escnn(b, 2, 0), spectral.to_escnn(sol.velocity(w), 2, 1)], 1)

    def from_fine(self, fine: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The generator's map on escnn layout: fine ``(B, 3, fN, fN)`` -> inputs ``(B, 3, N, N)``, targets
        ``(B, 5, N, N)`` (``(B, 6, N, N)`` with ``target='full'``; :func:`escnn_tensor.data.boussinesq.fluxes_from_escnn`
        gives the full ones)."""
        inputs, targets = boussinesq.fluxes_from_escnn(fine, self.options["factor"], self.options["filter_width"])
        return inputs, self._targets(targets)

    def _generate(self, n, size, generator):
        return self.from_fine(self.fine_fields(n, size, generator))


class MagnetostaticsTask(Task):
    r"""``magnetostatics-3d``: current density :math:`J` (vector) -> magnetic field :math:`B` (pseudovector), 3D.

    See :mod:`escnn_tensor.data.magnetostatics`: :math:`\nabla\times B = J`, :math:`\nabla\cdot B = 0` in a
    periodic box, with :math:`J = \nabla\times W` for smoothed white noise :math:`W`. Option: ``smoothing`` (1.5
    pixels).
    """

    name = "magnetostatics-3d"
    d = 3
    description = "current density J (divergence-free vector) -> magnetic field B (pseudovector), curl B = J, 3D"
    default_size, quick_size = 16, 8
    defaults = {"smoothing": 1.5}
    in_fields = ((1, 1, 1),)
    out_fields = ((1, -1, 1),)

    def _check_options(self, o):
        return {"smoothing": _number("smoothing", o["smoothing"], 0.0)}

    def _work_bytes(self, size: int) -> int:
        return 40 * 16 * size**3

    def solve(self, inputs: torch.Tensor) -> torch.Tensor:
        """The target of ``inputs`` (escnn layout ``(B, 3, N, N, N)`` -> ``(B, 3, N, N, N)``): Biot-Savart."""
        return magnetostatics.field_from_escnn_current(inputs)

    def _generate(self, n, size, generator):
        j = magnetostatics.random_current(n, size, generator, self.options["smoothing"])
        x = spectral.to_escnn(j, 3, 1)
        return x, self.solve(x)


_TASK_CLASSES: Dict[str, Type[Task]] = {
    cls.name: cls
    for cls in (GravityTask, TidalTask, NavierStokesTask, SubgridStressTask, BoussinesqFluxTask, MagnetostaticsTask)
}

TASKS: Dict[str, Task] = {name: cls() for name, cls in _TASK_CLASSES.items()}
"""Every task with its default options, by name: ``gravity``, ``tidal``, ``navier-stokes``, ``subgrid-stress``,
``boussinesq-flux``, ``magnetostatics-3d``."""

def _check_count(value: Any, name: str) -> int:
    """``value`` as a positive int; ``TypeError`` if it is not a number at all, ``ValueError`` if not a positive
    integer."""
    if isinstance(value, (str, bytes)) or not isinstance(value, numbers.Number):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__} {value!r}")
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_seed(seed: Any) -> int:
    """``seed`` as an int in [0, 2**63); ``TypeError`` if it is not a number, ``ValueError`` if out of range."""
    if isinstance(seed, (str, bytes)) or not isinstance(seed, numbers.Number):
        raise TypeError(f"seed must be an integer in [0, 2**63), got {type(seed).__name__} {seed!r}")
    if not is_integer(seed) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return int(seed)



def get_task(name: Union[str, Task, os.PathLike], **options: Any) -> Task:
    """The task ``name`` with ``options`` (a new instance; without options the one in :data:`TASKS`).

    ``name`` may also be the path of a dataset spec (a ``.toml`` file; :func:`escnn_tensor.data.read_spec`) or a
    :class:`~escnn_tensor.data.FileTask`, returned as they are (they take no options).

    Raises ``ValueError`` for an unknown name (listing the known ones), ``TypeError`` / ``ValueError`` for
    unknown or bad options; :class:`~escnn_tensor.data.DataError` (a ``ValueError``) for a bad spec.
    """
    from .file_task import FileTask

    if isinstance(name, FileTask) or (isinstance(name, (str, os.PathLike)) and str(name).endswith(".toml")):
        if options:
            raise TypeError(f"a task read from data takes no options, got {sorted(options)}")
        if isinstance(name, FileTask):
            return name
        from .readers.spec import read_spec

        return read_spec(name)
    if isinstance(name, Task):
        return type(name)(**{**name.options, **options}) if options else name
    if not isinstance(name, str):
        raise TypeError(f"name must be a task name (str) or a Task, got {type(name).__name__}; the tasks are "
                        f"{sorted(_TASK_CLASSES)}")
    if name not in _TASK_CLASSES:
        raise ValueError(f"unknown task {name!r}; the tasks are {sorted(_TASK_CLASSES)}")
    return _TASK_CLASSES[name](**options) if options else TASKS[name]


# ----------------------------------------------------------------------------------------------------------------
# cache
# ----------------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$ESCNN_TENSOR_DATA`` if set, else ``~/.cache/escnn_tensor/data``."""
    env = os.environ.get("ESCNN_TENSOR_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "escnn_tensor" / "data"


def cache_path(
    task: Union[str, Task], n_samples: int, size: int, seed: int, cache_dir: Optional[Union[str, Path]] = None
) -> Path:
    """The cache file of a data set: ``<dir>/<name>-<options hash>-n<n>-size<N>-seed<s>-v<version>.pt``
    (``task`` a name or a :class:`Task`)."""
    task = get_task(task)
    directory = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    fname = f"{task.name}-{task.option_key()}-n{n_samples}-size{size}-seed{seed}-v{task.version}.pt"
    return directory / fname


def _checksum(inputs: torch.Tensor, targets: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in (inputs, targets):
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def _meta(data: TensorFieldData, version: int) -> Dict[str, Any]:
    return {
        "task": data.task,
        "n_samples": len(data),
        "size": data.size,
        "seed": data.seed,
        "version": version,
        "options": json.loads(json.dumps(dict(data.options), sort_keys=True)),
    }


def _read(path: Path, task: Task, n_samples: int, size: int, seed: int) -> Optional[TensorFieldData]:
    """The data in ``path`` if it is complete and is what was asked for, else ``None``."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(payload["meta"])
        inputs, targets = payload["inputs"], payload["targets"]
        expected = {
            "task": task.name,
            "n_samples": n_samples,
            "size": size,
            "seed": seed,
            "version": task.version,
            "options": json.loads(json.dumps(task.options, sort_keys=True)),
        }
        if {k: meta.get(k) for k in expected} != expected or meta.get("sha256") != _checksum(inputs, targets):
            return None
    except Exception:  # noqa: BLE001 - any unreadable file (truncated zip, garbage, wrong keys) is regenerated
        return None
    return TensorFieldData(
        inputs, targets, task.name, size, seed, task.d, task.in_fields, task.out_fields, dict(task.options)
    )


def _write(path: Path, data: TensorFieldData, version: int) -> None:
    """Write atomically (:func:`escnn_tensor._io.save_torch`: a temporary file in the same directory, fsync-ed,
    renamed over ``path``, removed if writing fails)."""
    meta = _meta(data, version)
    meta["sha256"] = _checksum(data.inputs, data.targets)
    payload = {"inputs": data.inputs, "targets": data.targets, "meta": json.dumps(meta, sort_keys=True)}
    save_torch(payload, path)


def load(
    name: Union[str, Task],
    n_samples: int,
    size: Optional[int] = None,
    seed: int = 0,
    cache_dir: Optional[Union[str, Path]] = None,
    **options: Any,
) -> TensorFieldData:
    """The data set ``get_task(name, **options).make(n_samples, size, seed)``, through the on-disk cache.

    Reads :func:`cache_path` if it holds a complete file for exactly these arguments (checksum verified); otherwise
    generates, writes atomically and returns. A corrupt or partial file is regenerated with a ``RuntimeWarning``.
    ``cache_dir`` defaults to :func:`default_cache_dir`.
    """
    task = get_task(name, **options)
    size = task.check_size(size)
    n_samples, seed = _check_count(n_samples, "n_samples"), _check_seed(seed)
    path = cache_path(task, n_samples, size, seed, cache_dir)
    if path.exists():
        data = _read(path, task, int(n_samples), size, int(seed))
        if data is not None:
            return data
        warnings.warn(f"cache file {path} is corrupt or incomplete; regenerating it", RuntimeWarning, stacklevel=2)
    data = task.make(n_samples, size, seed)
    _write(path, data, task.version)
    return data
