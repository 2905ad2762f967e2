r"""A dataset spec: a TOML file that makes a data file a task (``--task PATH.toml``); :func:`read_spec`.

The schema (every key but ``name``, ``format``, ``path``, ``inputs``, ``targets`` optional)::

    name = "density-derivatives"     # the task's name in results and tables
    format = "the_well"              # "the_well" (HDF5), "netcdf" or "npz"
    path = "data/density.hdf5"       # the file, or a glob of files (trajectories one after the other),
                                     # relative to the spec
    inputs = ["density"]             # field names, in channel order
    targets = ["gradient", "hessian"]
    time_offset = 0                  # targets at t + time_offset; default 1 when inputs == targets (a time
                                     # series), else 0 (a field-to-field map)
    padding_mode = "circular"        # the models' padding; default: "circular" if every axis is periodic,
                                     # else "zeros"
    periodic = true                  # netcdf / npz only (The Well's file says it): one bool or one per axis

    [fields.gradient]                # one table per field, all keys optional
    order = 1                        # 0 scalar, 1 vector, 2 2-tensor (The Well: must match t0/t1/t2_fields)
    parity = 1                       # -1 for a pseudo-tensor
    components = ["gx", "gy"]        # netcdf: one variable per component, x, y[, z] order (row-major for k=2)
    sample_varying = true            # npz: whether the array has the trajectory axis
    time_varying = true              # npz: whether the array has the time axis

    [netcdf]                         # netcdf only
    dims = { x = "x", y = "y" }      # the file's dimension names of the axes x, y[, z]
    time_dim = "time"
    trajectory_dim = "trajectory"    # default: the first of trajectory, sample, member in the file

    [splits]                         # defaults for the harness's split sizes, or trajectory ranges
    n_train = 64                     # samples (the command line's --n-train etc. win)
    n_val = 16
    n_test = 16
    train = [0, 40]                  # trajectory ranges [start, stop) instead of a seeded draw
    val = [40, 45]
    test = [45, 50]

Any other key, a missing file or field, an order that does not fit an array, NaNs, too few trajectories: a
:class:`~escnn_tensor.data.DataError` with one line naming the file, the field and what was expected.
"""
from __future__ import annotations

import glob
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Union

from ..errors import DataError

__all__ = ["read_spec", "parse_spec", "FORMATS", "SPEC_KEYS"]

FORMATS = ("the_well", "netcdf", "npz")
SPEC_KEYS = ("name", "format", "path", "inputs", "targets", "time_offset", "padding_mode", "periodic", "fields",
             "netcdf", "splits")
NETCDF_KEYS = ("dims", "time_dim", "trajectory_dim")
SPLIT_KEYS = ("n_train", "n_val", "n_test", "train", "val", "test")


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def _unknown(table: Mapping, keys, where, what: str) -> None:
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise DataError(f"{what} has the unknown key(s) {unknown}; the keys are {list(keys)}", where)


def read_spec(path: Union[str, Path]):
    """The :class:`~escnn_tensor.data.FileTask` of the spec file ``path`` (see the module docs)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError("no such spec file (expected a TOML dataset spec)", path)
    try:
        with open(path, "rb") as f:
            spec = _toml().load(f)
    except Exception as exc:  # noqa: BLE001 - tomllib.TOMLDecodeError and OS errors
        raise DataError(f"is not valid TOML ({' '.join(str(exc).split())})", path) from None
    return parse_spec(spec, path)


def parse_spec(spec: Mapping[str, Any], path: Union[str, Path]):
    """The :class:`~escnn_tensor.data.FileTask` of a spec already parsed into ``spec``; ``path`` is the spec file
    (relative data paths are taken from its folder)."""
    from ..file_task import FileTask, _declarations

    path = Path(path)
    where = str(path)
    _unknown(spec, SPEC_KEYS, where, "the spec")
    for key in ("name", "format", "path", "inputs", "targets"):
        if key not in spec:
            raise DataError(f"lacks the key {key!r}; a spec needs name, format, path, inputs and targets", where)
    fmt = spec["format"]
    if fmt not in FORMATS:
        raise DataError(f"format = {fmt!r} is not known; the formats are {list(FORMATS)}", where)
    for key in ("inputs", "targets"):
        if not (isinstance(spec[key], list) and spec[key] and all(isinstance(v, str) for v in spec[key])):
            raise DataError(f"{key} must be a non-empty list of field names, got {spec[key]!r}", where)
    pattern = str(spec["path"])
    full = pattern if Path(pattern).is_absolute() else str(path.parent / pattern)
    files = sorted(glob.glob(full)) if glob.has_magic(full) else ([full] if Path(full).exists() else [])
    if not files:
        raise DataError(f"path = {pattern!r} matches no file (looked for {full})", where)
    decls = _declarations(spec.get("fields"), where)
    names = list(dict.fromkeys(spec["inputs"] + spec["targets"]))
    decls = {n: v for n, v in decls.items() if n in names}  # declarations of unused fields are not read
    periodic = spec.get("periodic", True)
    if fmt == "the_well":
        if "periodic" in spec or "netcdf" in spec:
            raise DataError("periodic and [netcdf] do not apply to format the_well (its file states its "
                            "boundary conditions)", where)
        from .the_well import open_the_well

        source = open_the_well(files, names)
        for name, decl in decls.items():
            if decl.get("order") is not None and decl["order"] != source.fields[name].order:
                raise DataError(f"is declared with order {decl['order']} but stored in "
                                f"t{source.fields[name].order}_fields", files[0], name)
            extra = sorted(set(decl) - {"order", "parity"})
            if extra:
                raise DataError(f"has the key(s) {extra}, which do not apply to format the_well", where, name)
    elif fmt == "netcdf":
        options = dict(spec.get("netcdf", {}))
        _unknown(options, NETCDF_KEYS, where, "[netcdf]")
        from .netcdf import open_netcdf

        source = open_netcdf(files, {n: decls.get(n, {}) for n in names}, periodic=periodic, **options)
    else:
        if "netcdf" in spec:
            raise DataError("[netcdf] does not apply to format npz", where)
        from .npz import open_npz

        source = open_npz(files, {n: decls.get(n, {}) for n in names}, periodic=periodic)
    splits = dict(spec.get("splits", {}))
    _unknown(splits, SPLIT_KEYS, where, "[splits]")
    for key in ("n_train", "n_val", "n_test"):
        v = splits.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise DataError(f"splits.{key} must be a positive integer, got {v!r}", where)
    for key in ("train", "val", "test"):
        v = splits.get(key)
        if v is not None and not (isinstance(v, list) and len(v) == 2 and all(isinstance(i, int) for i in v)):
            raise DataError(f"splits.{key} must be a trajectory range [start, stop], got {v!r}", where)
    parities = {n: d["parity"] for n, d in decls.items() if "parity" in d}
    return FileTask(str(spec["name"]), source, spec["inputs"], spec["targets"], parities, spec.get("time_offset"),
                    spec.get("padding_mode"), splits, where=where)
