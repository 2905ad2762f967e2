r"""Reader of The Well's HDF5 layout (https://polymathic-ai.org/the_well), lazily through h5py.

What it reads from a file:

* ``t0_fields`` / ``t1_fields`` / ``t2_fields``: the groups give each field's order (0, 1, 2); a field is an array
  ``([n_trajectories,] [n_time,] n_x, n_y[, n_z], d[, d])`` with component ``i`` along spatial axis ``i``; the
  attributes ``sample_varying`` / ``time_varying`` (default true) say whether the first two axes are there.
  A 2-tensor stored with ``d*d`` components in one axis is accepted too (row-major).
* ``dimensions``: the attribute ``spatial_dims`` (e.g. ``["x", "y"]``) gives the spatial axes in array order; its
  length is ``d`` (else the root attribute ``n_spatial_dims``).
* ``boundary_conditions``: each subgroup's ``bc_type`` (``periodic``, ``wall``, ``open``; any case) and
  ``associated_dims`` give each axis's boundary; an axis is periodic only when every condition on it is. A file
  without the group is taken as periodic on every axis.

Reading is lazy: a file is opened once per process and only the slices asked for are read, so peak memory is the
arrays of one batch (plus h5py's chunk cache, 1 MiB per dataset by default), whatever the file's size.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from ..errors import DataError
from .base import FieldInfo, FieldSource, check_field_shape

__all__ = ["TheWellSource", "open_the_well", "FIELD_GROUPS"]

FIELD_GROUPS = {"t0_fields": 0, "t1_fields": 1, "t2_fields": 2}


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a dependency
        raise DataError(f"reading The Well's HDF5 files needs h5py ({exc}); pip install h5py") from None
    return h5py


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [_text(value)]
    return [_text(v) for v in np.asarray(value).ravel()]


class TheWellSource(FieldSource):
    """The fields of one HDF5 file in The Well's layout (see the module docs); opened with :func:`open_the_well`."""

    def __init__(self, path: Path, names: Optional[Sequence[str]] = None):
        h5py = _h5py()
        self.path = str(path)
        self._file = None
        self._pid = None
        try:
            f = h5py.File(path, "r")
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot be opened as HDF5 ({' '.join(str(exc).split())}); expected a file in The "
                            f"Well's layout", path) from None
        with f:
            self.d = self._dimension(f)
            self.fields: Dict[str, FieldInfo] = {}
            self._dataset: Dict[str, str] = {}
            n_traj = n_times = grid = None
            wanted = None if names is None else set(names)
            for group, order in FIELD_GROUPS.items():
                if group not in f:
                    continue
                names = _texts(f[group].attrs.get("field_names")) or list(f[group].keys())
                for name in names:
                    if wanted is not None and name not in wanted:
                        continue
                    if name not in f[group]:
                        raise DataError(f"is listed in {group}/field_names but {group} holds no dataset of that "
                                        f"name", path, name)
                    if name in self.fields:
                        raise DataError(f"appears in two field groups; expected one of {list(FIELD_GROUPS)}",
                                        path, name)
                    ds = f[group][name]
                    info = FieldInfo(name, order, bool(ds.attrs.get("sample_varying", True)),
                                     bool(ds.attrs.get("time_varying", True)))
                    grid = check_field_shape(path, name, ds.shape, info, self.d, n_traj, n_times, grid,
                                             flat_components=True)
                    if info.sample_varying:
                        n_traj = ds.shape[0]
                    if info.time_varying:
                        n_times = ds.shape[int(info.sample_varying)]
                    self.fields[name] = info
                    self._dataset[name] = f"{group}/{name}"
            if wanted is not None and wanted - set(self.fields):
                name = sorted(wanted - set(self.fields))[0]
                held = sorted(n for g in FIELD_GROUPS if g in f for n in f[g].keys())
                raise DataError(f"is not in the file; expected a dataset of that name in one of {list(FIELD_GROUPS)}, "
                                f"which hold {held}", path, name)
            if not self.fields:
                raise DataError(f"holds no fields; expected datasets in the groups {list(FIELD_GROUPS)}", path)
            self.grid = tuple(grid)
            self.n_trajectories = int(n_traj) if n_traj is not None else int(f.attrs.get("n_trajectories", 1))
            self.n_times = 1 if n_times is None else int(n_times)
            self.boundary, self.periodic = self._boundaries(f)

    def _dimension(self, f) -> int:
        dims = _texts(f["dimensions"].attrs.get("spatial_dims")) if "dimensions" in f else []
        d = len(dims) if dims else int(f.attrs.get("n_spatial_dims", 0))
        if d not in (2, 3):
            raise DataError(f"has {d} spatial dimensions (dimensions/spatial_dims or n_spatial_dims); expected 2 or 3",
                            self.path)
        self.spatial_dims = dims or ["x", "y", "z"][:d]
        return d

    def _boundaries(self, f):
        kinds = [set() for _ in range(self.d)]
        if "boundary_conditions" in f:
            for key, bc in f["boundary_conditions"].items():
                kind = _text(bc.attrs.get("bc_type", "")).lower()
                for dim in _texts(bc.attrs.get("associated_dims")):
                    if dim not in self.spatial_dims:
                        raise DataError(f"boundary condition {key!r} names the dimension {dim!r}; expected one of "
                                        f"{self.spatial_dims}", self.path)
                    kinds[self.spatial_dims.index(dim)].add(kind)
        boundary = tuple("/".join(sorted(k)) if k else "periodic" for k in kinds)
        periodic = tuple(not k or k == {"periodic"} for k in kinds)
        return boundary, periodic

    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            self._file = _h5py().File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def _read(self, name, trajectory, time):
        info = self.fields[name]
        index = ((trajectory,) if info.sample_varying else ()) + ((time,) if info.time_varying else ())
        ds = self._handle()[self._dataset[name]]
        a = ds[index] if index else ds[()]
        return a.reshape(self.grid + (self.d,) * info.order)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None
        return state


def open_the_well(paths: Sequence[Path], names: Optional[Sequence[str]] = None) -> FieldSource:
    """One source over the files ``paths`` (their trajectories one after the other); ``names``: the fields to
    declare (default: all), each of which must be in the files."""
    from .base import ConcatSource

    sources = [TheWellSource(Path(p), names) for p in paths]
    return sources[0] if len(sources) == 1 else ConcatSource(sources)
