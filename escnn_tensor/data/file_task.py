r"""A task read from data: :class:`FileTask` (from a spec file or from arrays) and :func:`from_arrays`.

A :class:`FileTask` pairs declared input fields with declared target fields of one
:class:`~escnn_tensor.data.readers.base.FieldSource`: the sample ``(n, t)`` is the inputs of trajectory ``n`` at
time step ``t`` and the targets at ``t + time_offset`` (``time_offset`` 0: a field-to-field map at one time; 1: the
next step of a time series). Every ``t`` with ``t + time_offset`` inside the trajectory gives a sample, so a time
series gives all its next-step pairs. Splits are made by trajectory (:func:`escnn_tensor.data.load_splits`).

It answers what the harness asks of a built-in :class:`~escnn_tensor.data.Task` (``name``, ``d``, ``in_fields``,
``out_fields``, ``in_type`` / ``out_type``, ``check_size``), and adds ``grid``, ``group`` and ``gspace`` (the
symmetry group of the grid, :func:`~escnn_tensor.data.grids.grid_symmetry`), ``padding_mode`` (``"circular"`` when
every axis is periodic, else ``"zeros"``, unless the spec says otherwise).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from escnn.gspaces import GSpace
from escnn.nn import FieldType

from ..grid import PADDING_MODES
from ..representations import tensor_type
from .errors import DataError
from .fields import Field, field_list, grid_to_escnn_layout
from .grids import grid_symmetry
from .readers.base import ArraySource, FieldInfo, FieldSource

__all__ = ["FileTask", "from_arrays", "FIELD_KEYS"]

FIELD_KEYS = ("order", "parity", "components", "sample_varying", "time_varying")
"""The keys of a field's declaration (``[fields.NAME]`` in a spec, ``fields={NAME: {...}}`` in :func:`from_arrays`)."""


class FileTask:
    """Input and target fields of a :class:`FieldSource` as a task (see the module docs).

    Args:
        name: the task's name in results and tables.
        source: the fields, read lazily.
        inputs, targets: field names (in the order of the channels).
        parities: ``{name: +1 or -1}`` (default +1).
        time_offset: targets at ``t + time_offset``; ``None``: 1 when inputs and targets are the same fields (a time
            series), else 0.
        padding_mode: the models' padding (``None``: ``"circular"`` if every axis is periodic, else ``"zeros"``).
        splits: optional defaults for :func:`~escnn_tensor.data.load_splits` from a spec (``n_train``, ``n_val``,
            ``n_test``, trajectory ranges ``train``, ``val``, ``test``).
        where: the spec file, for messages (default: ``source.path``).
    """

    target_is_function_of_input = True
    default_size = quick_size = None

    def __init__(self, name: str, source: FieldSource, inputs: Sequence[str], targets: Sequence[str],
                 parities: Optional[Mapping[str, int]] = None, time_offset: Optional[int] = None,
                 padding_mode: Optional[str] = None, splits: Optional[Mapping[str, Any]] = None,
                 where: Optional[str] = None):
        where = where or source.path
        self.name, self.source, self.where = str(name), source, where
        parities = dict(parities or {})
        for role, names in (("inputs", inputs), ("targets", targets)):
            if isinstance(names, str) or not names:
                raise DataError(f"{role} must be a non-empty list of field names, got {names!r}", where)
            for n in names:
                if n not in source.fields:
                    raise DataError(f"is named in {role} but not in the data, which holds {sorted(source.fields)}",
                                    source.path, n)
        for n, p in parities.items():
            if p not in (1, -1):
                raise DataError(f"has parity {p!r}; expected +1 or -1", where, n)
        field = lambda n: Field(n, source.fields[n].order, int(parities.get(n, 1)))  # noqa: E731
        self.inputs: List[Field] = [field(n) for n in inputs]
        self.targets: List[Field] = [field(n) for n in targets]
        self.d, self.grid = source.d, tuple(source.grid)
        same = list(inputs) == list(targets)
        self.time_offset = (1 if same else 0) if time_offset is None else time_offset
        if isinstance(self.time_offset, bool) or not isinstance(self.time_offset, int) or self.time_offset < 0:
            raise DataError(f"time_offset must be an integer >= 0, got {self.time_offset!r}", where)
        varying = any(source.fields[n].time_varying for n in list(inputs) + list(targets))
        if self.time_offset > 0 and (not varying or self.time_offset >= source.n_times):
            raise DataError(f"time_offset = {self.time_offset} needs time-varying fields with more than "
                            f"{self.time_offset} time steps; the data have {source.n_times if varying else 'no'} "
                            f"time steps (use time_offset = 0 for a field-to-field map)", where)
        self.times: List[int] = list(range(source.n_times - self.time_offset)) if varying else [0]
        self.is_time_series = same and self.time_offset > 0
        self.group, self._gspace = grid_symmetry(self.grid, source.periodic)
        if padding_mode is None:
            padding_mode = "circular" if all(source.periodic) else "zeros"
        if padding_mode not in PADDING_MODES:
            raise DataError(f"padding_mode must be one of {list(PADDING_MODES)}, got {padding_mode!r}", where)
        self.padding_mode = padding_mode
        self.split_options: Dict[str, Any] = dict(splits or {})
        self.in_fields = field_list(self.inputs)
        self.out_fields = field_list(self.targets)
        self.description = (f"{', '.join(f.name for f in self.inputs)} -> {', '.join(f.name for f in self.targets)}"
                            f" (t + {self.time_offset}) from {source.path}")

    # -- what the harness asks of a task ------------------------------------------------------------------------
    @property
    def gspace(self) -> GSpace:
        """The gspace of the grid's symmetry group (one object per group)."""
        return self._gspace

    def in_type(self, gspace: Optional[GSpace] = None) -> FieldType:
        """The input ``FieldType`` on ``gspace`` (default :attr:`gspace`)."""
        return tensor_type(self._gspace if gspace is None else gspace, list(self.in_fields))

    def out_type(self, gspace: Optional[GSpace] = None) -> FieldType:
        """The target ``FieldType`` on ``gspace`` (default :attr:`gspace`)."""
        return tensor_type(self._gspace if gspace is None else gspace, list(self.out_fields))

    def channels(self) -> Tuple[int, int]:
        """``(C_in, C_out)``."""
        count = lambda fields: sum(self.d**f.order for f in fields)  # noqa: E731
        return count(self.inputs), count(self.targets)

    def check_size(self, size=None):
        """The grid is the data's: ``None`` or the side of a square / cubic grid is accepted (returned as is)."""
        if size is None or (len(set(self.grid)) == 1 and size == self.grid[0]):
            return size
        raise DataError(f"the grid of task {self.name!r} is {self.grid}, fixed by its data; got size {size!r}",
                        self.where)

    @property
    def n_trajectories(self) -> int:
        return self.source.n_trajectories

    def pairs(self, trajectories: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
        """``(trajectory, time)`` of every sample of ``trajectories``, trajectory-major: two int64 arrays."""
        traj = np.repeat(np.asarray(trajectories, dtype=np.int64), len(self.times))
        times = np.tile(np.asarray(self.times, dtype=np.int64), len(trajectories))
        return traj, times

    def _read(self, fields: Sequence[Field], traj, times) -> torch.Tensor:
        parts = [grid_to_escnn_layout(self.source.read(f.name, traj, times), self.d, f.order) for f in fields]
        return torch.cat(parts, dim=1)

    def read(self, traj: Sequence[int], times: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Samples ``(trajectory, time)``: ``(inputs, targets)``, float64 escnn layout ``(n, C, *grid[::-1])``."""
        traj, times = np.asarray(traj, dtype=np.int64), np.asarray(times, dtype=np.int64)
        return self._read(self.inputs, traj, times), self._read(self.targets, traj, times + self.time_offset)

    def states(self, trajectories: Sequence[int], steps: Optional[int] = None) -> torch.Tensor:
        """Whole trajectories for rollouts: ``(n, S, C, *grid[::-1])``, the input fields at times ``0, τ, 2τ, ...``
        (``τ = time_offset``; ``S = steps + 1``, default as many as the data hold). Needs a time series."""
        if not self.is_time_series:
            raise DataError(f"task {self.name!r} is not a time series (inputs and targets the same fields, "
                            f"time_offset >= 1); it has no trajectories to roll out", self.where)
        available = (self.source.n_times - 1) // self.time_offset
        steps = available if steps is None else steps
        if steps > available:
            raise DataError(f"a rollout of {steps} steps of {self.time_offset} needs {steps * self.time_offset + 1} "
                            f"time steps; the data have {self.source.n_times}", self.where)
        times = np.arange(steps + 1, dtype=np.int64) * self.time_offset
        traj = np.repeat(np.asarray(trajectories, dtype=np.int64), steps + 1)
        x = self._read(self.inputs, traj, np.tile(times, len(trajectories)))
        return x.reshape((len(trajectories), steps + 1) + tuple(x.shape[1:]))

    def data(self, trajectories: Optional[Sequence[int]] = None):
        """Every sample of ``trajectories`` (default all) in memory as a :class:`~escnn_tensor.data.TensorFieldData`
        (refused with a clear error above :data:`~escnn_tensor.data.tasks.MAX_DATA_BYTES`)."""
        from .tasks import MAX_DATA_BYTES, TensorFieldData

        trajectories = range(self.n_trajectories) if trajectories is None else trajectories
        traj, times = self.pairs(list(trajectories))
        total = len(traj) * sum(self.channels()) * math.prod(self.grid) * 8
        if total > MAX_DATA_BYTES:
            raise DataError(f"{len(traj)} samples would take {total / 2**30:.1f} GiB in memory (limit "
                            f"{MAX_DATA_BYTES / 2**30:.0f} GiB); use load_splits, which reads lazily", self.where)
        x, y = self.read(traj, times)
        size = self.grid[0] if len(set(self.grid)) == 1 else None
        return TensorFieldData(x, y, self.name, size, 0, self.d, self.in_fields, self.out_fields,
                               {"source": self.source.path, "time_offset": self.time_offset})

    def __repr__(self) -> str:
        return f"FileTask({self.name!r}: {self.description}, grid {self.grid}, group {self.group})"


def _declarations(fields: Optional[Mapping[str, Mapping[str, Any]]], where) -> Dict[str, Dict[str, Any]]:
    out = {}
    for name, decl in (fields or {}).items():
        if not isinstance(decl, Mapping):
            raise DataError(f"declaration must be a table of {list(FIELD_KEYS)}, got {decl!r}", where, name)
        unknown = sorted(set(decl) - set(FIELD_KEYS))
        if unknown:
            raise DataError(f"has the unknown key(s) {unknown}; the keys of a field are {list(FIELD_KEYS)}", where, name)
        order = decl.get("order")
        if order is not None and (isinstance(order, bool) or not isinstance(order, int) or order < 0):
            raise DataError(f"has order {order!r}; expected an integer >= 0", where, name)
        out[name] = dict(decl)
    return out


def from_arrays(arrays: Mapping[str, Any], inputs: Sequence[str], targets: Sequence[str], *,
                fields: Optional[Mapping[str, Mapping[str, Any]]] = None, time_offset: Optional[int] = None,
                name: str = "arrays", periodic: Union[bool, Sequence[bool]] = True, time_axis: bool = True,
                padding_mode: Optional[str] = None) -> FileTask:
    """A task from arrays in memory, declared as a spec declares a file (the notebook route).

    Args:
        arrays: ``{field name: array}`` (numpy or torch), each in The Well's axis order
            ``(n_trajectories, n_time, n_x, n_y[, n_z], d[, d])``, component ``i`` along axis ``i``; with
            ``time_axis=False`` ``(n_samples, n_x, n_y[, n_z], ...)`` (each sample its own trajectory).
        inputs, targets: field names.
        fields: ``{name: {"order": k, "parity": ±1, "sample_varying": bool, "time_varying": bool}}``; order
            defaults to 0, parity to +1.
        time_offset, padding_mode: as :class:`FileTask`.
        periodic: one bool, or one per axis: whether the boundaries are periodic.

    Returns:
        a :class:`FileTask`, accepted by :func:`~escnn_tensor.data.load_splits` and the harness.
    """
    where = f"<arrays {name}>"
    decls = _declarations(fields, where)
    names = list(dict.fromkeys(list(inputs) + list(targets)))
    infos, data = {}, {}
    for n in names:
        if n not in arrays:
            raise DataError(f"is named in inputs or targets but not in arrays, which holds {sorted(arrays)}", where, n)
        decl = decls.get(n, {})
        a = arrays[n]
        data[n] = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        infos[n] = FieldInfo(n, int(decl.get("order") or 0), bool(decl.get("sample_varying", True)),
                             bool(decl.get("time_varying", time_axis)))
    from .readers.npz import infer_dimension

    d = infer_dimension(where, data, infos)
    p = (periodic,) * d if isinstance(periodic, bool) else tuple(bool(v) for v in periodic)
    source = ArraySource(where, data, infos, d, p)
    parities = {n: decl["parity"] for n, decl in decls.items() if "parity" in decl}
    return FileTask(name, source, inputs, targets, parities, time_offset, padding_mode, where=where)
