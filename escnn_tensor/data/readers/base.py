r"""What every reader gives: a :class:`FieldSource`, a lazily read set of tensor fields on one grid.

A source holds ``n_trajectories`` trajectories of ``n_times`` time steps (1 when the data have no time axis) of
named fields on one grid ``(n_x, n_y[, n_z])``. :meth:`FieldSource.read` returns a field at chosen
``(trajectory, time)`` pairs as a float64 array in grid layout ``(n, *grid, (d,)*k)``
(:mod:`escnn_tensor.data.fields`), reading only those slices from the file. Fields that do not vary between
trajectories (or over time) are broadcast. Every read is checked for NaN and infinity.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError

__all__ = ["FieldInfo", "FieldSource", "ArraySource", "ConcatSource", "check_field_shape"]


@dataclass(frozen=True)
class FieldInfo:
    """How a field is stored: its ``order`` and whether it varies between trajectories and over time."""

    name: str
    order: int
    sample_varying: bool = True
    time_varying: bool = True


class FieldSource:
    """A lazily read set of tensor fields on one grid (see the module docs).

    Attributes:
        path: the file (or files) read, for messages.
        d: the dimension of space, 2 or 3.
        grid: ``(n_x, n_y[, n_z])``.
        n_trajectories, n_times: the trajectories and their time steps (``n_times`` is 1 without a time axis).
        fields: ``{name: FieldInfo}``.
        periodic: per axis, whether its boundary is periodic.
        boundary: per axis, the boundary condition as the file names it (e.g. ``"periodic"``, ``"wall"``).
    """

    path: str
    d: int
    grid: Tuple[int, ...]
    n_trajectories: int
    n_times: int
    fields: Dict[str, FieldInfo]
    periodic: Tuple[bool, ...]
    boundary: Tuple[str, ...]

    def _read(self, name: str, trajectory: int, time: int) -> np.ndarray:
        """One field at one (trajectory, time): ``(*grid, (d,)*k)`` in grid layout (any float dtype)."""
        raise NotImplementedError

    def read(self, name: str, trajectories: Sequence[int], times: Sequence[int]) -> np.ndarray:
        """The field ``name`` at the pairs ``zip(trajectories, times)``: float64 ``(n, *grid, (d,)*k)``.

        Raises :class:`DataError` (naming the file, the field, the trajectory and time) for NaN or infinity.
        """
        info = self.fields[name]
        out = np.empty((len(trajectories),) + self.grid + (self.d,) * info.order, dtype=np.float64)
        for i, (n, t) in enumerate(zip(trajectories, times)):
            out[i] = self._read(name, int(n), int(t))
            if not np.isfinite(out[i]).all():
                raise DataError(
                    f"holds NaN or infinite values at trajectory {int(n)}, time step {int(t)}; expected finite "
                    f"numbers", self.path, name,
                )
        return out

    def describe(self) -> str:
        """One line: grid, trajectories, time steps, fields with their orders, boundaries."""
        fields = ", ".join(f"{n} (t{f.order})" for n, f in self.fields.items())
        return (f"{self.path}: grid {self.grid}, {self.n_trajectories} trajectories x {self.n_times} time steps, "
                f"fields {fields}, boundaries {list(self.boundary)}")


def check_field_shape(path, name: str, shape: Sequence[int], info: FieldInfo, d: int,
                      n_trajectories: Optional[int], n_times: Optional[int], grid: Optional[Tuple[int, ...]],
                      flat_components: bool = False) -> Tuple[int, ...]:
    """Check a stored field's ``shape`` in The Well's axis order against ``info``; returns its grid.

    The expected shape is ``([n_trajectories,] [n_times,] *grid, (d,)*order)`` (the first two only when the field
    varies between trajectories / over time). ``flat_components``: also accept ``d**order`` components in one axis.
    ``None`` for ``n_trajectories`` / ``n_times`` / ``grid``: not known yet (taken from this field).
    """
    shape = tuple(int(s) for s in shape)
    lead = int(info.sample_varying) + int(info.time_varying)
    comps = (d,) * info.order
    what = (("(n_trajectories, " if info.sample_varying else "(") + ("n_time, " if info.time_varying else "")
            + ", ".join("xyz"[:d]) + "".join(f", {d}" for _ in comps) + ")")
    ok_comps = shape[lead + d :] == comps or (flat_components and info.order > 1 and shape[lead + d :] == (d**info.order,))
    if len(shape) < lead + d or not ok_comps:
        raise DataError(
            f"has shape {shape}, which does not fit order {info.order} in {d}D: expected {what}", path, name
        )
    if info.sample_varying and n_trajectories is not None and shape[0] != n_trajectories:
        raise DataError(f"has {shape[0]} trajectories, expected {n_trajectories} as the other fields", path, name)
    if info.time_varying and n_times is not None and shape[lead - 1] != n_times:
        raise DataError(f"has {shape[lead - 1]} time steps, expected {n_times} as the other fields", path, name)
    field_grid = shape[lead : lead + d]
    if grid is not None and field_grid != tuple(grid):
        raise DataError(f"lies on the grid {field_grid}, expected the grid {tuple(grid)} of the other fields", path, name)
    return field_grid


class ArraySource(FieldSource):
    """A source over arrays in memory (or memory-mapped), each in The Well's axis order.

    Args:
        path: a name for messages (e.g. the ``.npz`` file or ``"<arrays>"``).
        arrays: ``{name: array}``, each ``([n_trajectories,] [n_time,] *grid, (d,)*order)``.
        infos: ``{name: FieldInfo}`` for the same names.
        d: 2 or 3.
        periodic, boundary: per axis (default: all periodic).
    """

    def __init__(self, path: str, arrays: Dict[str, np.ndarray], infos: Dict[str, FieldInfo], d: int,
                 periodic: Optional[Sequence[bool]] = None, boundary: Optional[Sequence[str]] = None):
        self.path, self.d, self.fields = str(path), d, dict(infos)
        n_traj = n_times = grid = None
        for name, info in infos.items():
            a = arrays[name]
            grid = check_field_shape(path, name, a.shape, info, d, n_traj, n_times, grid)
            if info.sample_varying:
                n_traj = a.shape[0]
            if info.time_varying:
                n_times = a.shape[int(info.sample_varying)]
        if grid is None:
            raise DataError("declares no fields", path)
        self.grid = tuple(grid)
        self.n_trajectories = 1 if n_traj is None else int(n_traj)
        self.n_times = 1 if n_times is None else int(n_times)
        self.periodic = tuple(periodic) if periodic is not None else (True,) * d
        self.boundary = tuple(boundary) if boundary is not None else tuple(
            "periodic" if p else "open" for p in self.periodic)
        self._arrays = arrays

    def _read(self, name, trajectory, time):
        info, a = self.fields[name], self._arrays[name]
        index = ((trajectory,) if info.sample_varying else ()) + ((time,) if info.time_varying else ())
        return a[index] if index else a


class ConcatSource(FieldSource):
    """Several sources of the same fields on the same grid, their trajectories one after the other (a glob)."""

    def __init__(self, sources: List[FieldSource]):
        first = sources[0]
        for s in sources[1:]:
            for what in ("d", "grid", "n_times", "periodic"):
                if getattr(s, what) != getattr(first, what):
                    raise DataError(f"has {what} {getattr(s, what)}, but {first.path} has {getattr(first, what)}; "
                                    f"the files of one glob must agree", s.path)
            if {n: f.order for n, f in s.fields.items()} != {n: f.order for n, f in first.fields.items()}:
                raise DataError(f"holds the fields {sorted(s.fields)} but {first.path} holds {sorted(first.fields)}; "
                                f"the files of one glob must hold the same fields with the same orders", s.path)
        self.sources = sources
        self.path = f"{first.path} (+{len(sources) - 1} more)" if len(sources) > 1 else first.path
        self.d, self.grid, self.n_times = first.d, first.grid, first.n_times
        self.fields, self.periodic, self.boundary = first.fields, first.periodic, first.boundary
        self.n_trajectories = sum(s.n_trajectories for s in sources)
        self._offsets = np.cumsum([0] + [s.n_trajectories for s in sources])

    def _locate(self, trajectory: int) -> Tuple[FieldSource, int]:
        i = int(np.searchsorted(self._offsets, trajectory, side="right") - 1)
        return self.sources[i], trajectory - int(self._offsets[i])

    def read(self, name, trajectories, times):
        out = [None] * len(trajectories)
        for i, (n, t) in enumerate(zip(trajectories, times)):
            src, local = self._locate(int(n))
            out[i] = src.read(name, [local], [t])[0]
        return np.stack(out) if out else np.empty((0,) + self.grid + (self.d,) * self.fields[name].order)
