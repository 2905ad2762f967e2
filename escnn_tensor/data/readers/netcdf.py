r"""Reader of netCDF files through xarray (engine chosen by xarray: h5netcdf for netCDF4, scipy for netCDF3).

Orientation comes from **dimension names**, never from axis positions: ``dims`` maps the axes ``x``, ``y`` (and
``z``) to the file's dimension names (default: ``x``, ``y``, ``z``; the file's spatial dimensions are those of
the mapping that it has, so ``d`` is 2 or 3), ``time_dim`` names the time dimension (default ``time``; absent:
no time axis) and ``trajectory_dim`` the trajectory dimension (default: the first of ``trajectory``,
``sample``, ``member`` that the file has; absent: one trajectory). Every variable is transposed by name to
``(trajectory, time, x, y[, z])`` before it is read.

A field is either one variable (a scalar; or a tensor whose variable has ``order`` more dimensions, each of
length ``d``, holding its components in that order), or, with ``components``, one variable per component: ``d``
names for a vector in ``x, y[, z]`` order, ``d**2`` names for a 2-tensor in row-major order (``xx, xy, yx,
yy``), as ocean and atmosphere data store ``u`` and ``v``.

Boundaries are not in a netCDF file: pass ``periodic`` (one bool, or one per axis; default true).

Reading is lazy (xarray's lazy indexing without dask): only the slices of one batch are read, so peak memory is
one batch, whatever the file's size.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import DataError
from .base import ConcatSource, FieldInfo, FieldSource

__all__ = ["NetCDFSource", "open_netcdf", "DEFAULT_DIMS", "TRAJECTORY_DIMS"]

DEFAULT_DIMS = {"x": "x", "y": "y", "z": "z"}
TRAJECTORY_DIMS = ("trajectory", "sample", "member")


def _xarray():
    try:
        import xarray
    except ImportError as exc:  # pragma: no cover - xarray is a dependency
        raise DataError(f"reading netCDF needs xarray and h5netcdf ({exc}); pip install xarray h5netcdf") from None
    return xarray


def _open(path):
    xr = _xarray()
    try:
        return xr.open_dataset(path, cache=False)
    except Exception as exc:  # noqa: BLE001 - xarray raises many kinds for a file it cannot read
        raise DataError(f"cannot be opened as netCDF ({' '.join(str(exc).split())[:200]})", path) from None


class NetCDFSource(FieldSource):
    """The declared fields of one netCDF file (see the module docs).

    Args:
        path: the file.
        fields: ``{name: {"order": k or None, "components": [variable names] or None}}``.
        dims, time_dim, trajectory_dim, periodic: see the module docs.
    """

    def __init__(self, path: Path, fields: Mapping[str, Mapping], dims: Optional[Mapping[str, str]] = None,
                 time_dim: str = "time", trajectory_dim: Optional[str] = None,
                 periodic: Union[bool, Sequence[bool]] = True):
        self.path = str(path)
        self._ds, self._pid = None, None
        ds = _open(path)
        try:
            mapping = dict(DEFAULT_DIMS if dims is None else dims)
            unknown = sorted(set(mapping) - set(DEFAULT_DIMS))
            if unknown:
                raise DataError(f"dims names the axes {unknown}; the axes are x, y, z", path)
            self.spatial = [mapping[a] for a in ("x", "y", "z") if a in mapping and mapping[a] in ds.dims]
            if len(self.spatial) not in (2, 3) or self.spatial[:2] != [mapping.get("x"), mapping.get("y")]:
                raise DataError(f"has the dimensions {sorted(map(str, ds.dims))}; expected the spatial dimensions "
                                f"{ {a: mapping.get(a) for a in ('x', 'y')} } (set dims to the file's names)", path)
            self.d = len(self.spatial)
            self.grid = tuple(int(ds.sizes[n]) for n in self.spatial)
            self.time_dim = time_dim if time_dim in ds.dims else None
            if trajectory_dim is not None and trajectory_dim not in ds.dims:
                raise DataError(f"has no dimension {trajectory_dim!r} (trajectory_dim); it has "
                                f"{sorted(map(str, ds.dims))}", path)
            self.trajectory_dim = trajectory_dim or next((n for n in TRAJECTORY_DIMS if n in ds.dims), None)
            self.n_times = int(ds.sizes[self.time_dim]) if self.time_dim else 1
            self.n_trajectories = int(ds.sizes[self.trajectory_dim]) if self.trajectory_dim else 1
            self.fields: Dict[str, FieldInfo] = {}
            self._variables: Dict[str, list] = {}
            for name, decl in fields.items():
                self._declare(ds, name, decl)
        finally:
            ds.close()
        p = (periodic,) * self.d if isinstance(periodic, bool) else tuple(bool(v) for v in periodic)
        if len(p) != self.d:
            raise DataError(f"periodic has {len(p)} entries; expected one bool or {self.d}", path)
        self.periodic = p
        self.boundary = tuple("periodic" if v else "open" for v in p)

    def _declare(self, ds, name: str, decl: Mapping) -> None:
        components = decl.get("components")
        variables = list(components) if components else [name]
        missing = [v for v in variables if v not in ds.variables]
        if missing:
            raise DataError(f"needs the variable(s) {missing}, which the file lacks; it has "
                            f"{sorted(map(str, ds.data_vars))}", self.path, name)
        known = set(self.spatial) | {self.time_dim, self.trajectory_dim}
        extra = [[dim for dim in ds[v].dims if dim not in known] for v in variables]
        order = decl.get("order")
        if components:
            k = next((k for k in range(4) if self.d**k == len(variables)), None)
            if k is None or (order is not None and order != k) or any(extra):
                raise DataError(f"has {len(variables)} components {variables} (each with the extra dimensions "
                                f"{extra[0]}); expected d**order = {self.d}**{order if order is not None else 'k'} "
                                f"variables on the dimensions (trajectory, time, x, y[, z]) only", self.path, name)
        else:
            k = len(extra[0])
            bad = [dim for dim in extra[0] if ds.sizes[dim] != self.d]
            if bad or (order is not None and order != k):
                raise DataError(f"has the dimensions {list(ds[name].dims)}; expected order "
                                f"{order if order is not None else k}: (trajectory, time, {', '.join(self.spatial)}) "
                                f"and {order if order is not None else k} component dimensions of length {self.d} "
                                f"(or give components)", self.path, name)
        dims0 = ds[variables[0]].dims
        for v in variables:
            missing_space = [s for s in self.spatial if s not in ds[v].dims]
            if missing_space:
                raise DataError(f"variable {v!r} lacks the spatial dimension(s) {missing_space}", self.path, name)
        self.fields[name] = FieldInfo(name, k, self.trajectory_dim in dims0, self.time_dim in dims0)
        self._variables[name] = variables

    def _dataset(self):
        if self._ds is None or self._pid != os.getpid():
            self._ds = _open(self.path)
            self._pid = os.getpid()
        return self._ds

    def _read(self, name, trajectory, time):
        info = self.fields[name]
        ds = self._dataset()
        parts = []
        for v in self._variables[name]:
            var = ds[v]
            sel = {}
            if info.sample_varying:
                sel[self.trajectory_dim] = trajectory
            if info.time_varying:
                sel[self.time_dim] = time
            var = var.isel(sel) if sel else var
            comp_dims = [dim for dim in var.dims if dim not in self.spatial]
            parts.append(np.asarray(var.transpose(*self.spatial, *comp_dims).values))
        a = parts[0] if len(parts) == 1 and len(self._variables[name]) == 1 else np.stack(parts, axis=-1)
        return a.reshape(self.grid + (self.d,) * info.order)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_ds"] = None
        return state


def open_netcdf(paths: Sequence[Path], fields: Mapping[str, Mapping], **options) -> FieldSource:
    """One source over the files ``paths`` (trajectories one after the other); ``options`` as
    :class:`NetCDFSource`."""
    sources = [NetCDFSource(Path(p), fields, **options) for p in paths]
    return sources[0] if len(sources) == 1 else ConcatSource(sources)
