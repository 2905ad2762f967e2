r"""Reader of NumPy ``.npz`` files: one array per field, in The Well's axis order.

A field ``NAME`` is the array ``NAME`` of shape ``([n_trajectories,] [n_time,] n_x, n_y[, n_z], d[, d])``,
component ``i`` along axis ``i``. Its ``order`` comes from the spec (``[fields.NAME] order``, default 0);
``sample_varying`` / ``time_varying`` (default true) say whether the first two axes are there. ``d`` is the
number of axes left for the grid (2 or 3). Boundaries are not in the file: pass ``periodic``.

Memory: an ``.npz`` member cannot be read in slices, so each field's array is loaded whole on first use and kept
(peak memory: the arrays of the fields used). For files larger than memory, use The Well's HDF5 or netCDF.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np

from ..errors import DataError
from .base import ArraySource, ConcatSource, FieldInfo, FieldSource

__all__ = ["open_npz", "infer_dimension"]


def infer_dimension(path, arrays: Mapping[str, np.ndarray], infos: Mapping[str, FieldInfo]) -> int:
    """``d`` from the arrays' ranks and the declared orders (the same for every field), else :class:`DataError`."""
    ds = {}
    for name, info in infos.items():
        ds[name] = arrays[name].ndim - info.order - int(info.sample_varying) - int(info.time_varying)
    counts = {}
    for v in ds.values():
        counts[v] = counts.get(v, 0) + (1 if v in (2, 3) else 0)
    d = max(counts, key=lambda v: (counts[v], v in (2, 3)))
    for name, v in ds.items():
        if v != d or v not in (2, 3):
            info = infos[name]
            axes = f"(n_trajectories, n_time, grid..., {d} x order)".replace(
                "n_trajectories, " if not info.sample_varying else "@", "").replace(
                "n_time, " if not info.time_varying else "@", "")
            raise DataError(f"has shape {tuple(arrays[name].shape)}, which does not fit order {info.order}: that "
                            f"leaves {v} grid axes, expected {d if d in (2, 3) else '2 or 3'} ({axes})", path, name)
    return d


def _load(path: Path, fields: Mapping[str, Mapping], periodic) -> FieldSource:
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot be opened as .npz ({' '.join(str(exc).split())[:200]})", path) from None
    if not hasattr(archive, "files"):
        raise DataError("is a single array, not an .npz archive of named arrays", path)
    arrays, infos = {}, {}
    for name, decl in fields.items():
        if name not in archive.files:
            raise DataError(f"is not in the file; it holds {sorted(archive.files)}", path, name)
        arrays[name] = archive[name]
        infos[name] = FieldInfo(name, int(decl.get("order", 0) or 0), bool(decl.get("sample_varying", True)),
                                bool(decl.get("time_varying", True)))
    d = infer_dimension(path, arrays, infos)
    p = (periodic,) * d if isinstance(periodic, bool) else tuple(bool(v) for v in periodic)
    if len(p) != d:
        raise DataError(f"periodic has {len(p)} entries; expected one bool or {d}", path)
    return ArraySource(str(path), arrays, infos, d, p)


def open_npz(paths: Sequence[Path], fields: Mapping[str, Mapping],
             periodic: Union[bool, Sequence[bool]] = True) -> FieldSource:
    """One source over the ``.npz`` files ``paths`` (trajectories one after the other)."""
    sources = [_load(Path(p), fields, periodic) for p in paths]
    return sources[0] if len(sources) == 1 else ConcatSource(sources)
