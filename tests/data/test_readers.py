"""The readers against files written independently of them (tests/data/files.py), in all three formats.

A reader that mixed up axes, components or orientation would fail the layout test; the group-image test shows
that a field and its exactly known image under EVERY group element (8 / 48, or the grid's subgroup) read to
GeometricTensors related by escnn's own transform.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from escnn.nn import GeometricTensor

from escnn_tensor.data import (
    DataError,
    escnn_to_grid_layout,
    from_arrays,
    grid_to_escnn_layout,
    load_splits,
    read_spec,
)
from escnn_tensor.groups import group_elements, group_matrix

from .files import density_fields, write_netcdf, write_npz, write_the_well

FORMATS = ("the_well", "netcdf", "npz")
FILES = {"the_well": "data.h5", "netcdf": "data.nc", "npz": "data.npz"}


def write(tmp_path: Path, fmt: str, fields, extra: str = "", inputs='["density"]',
          targets='["gradient", "hessian"]') -> Path:
    """Write the data file and its spec; returns the spec's path."""
    data = tmp_path / FILES[fmt]
    d = fields["density"].ndim - 2
    decl = ""
    if fmt == "the_well":
        write_the_well(data, fields)
    elif fmt == "netcdf":
        write_netcdf(data, fields)
        comps = "xyz"[:d]
        decl = (f'[fields.gradient]\ncomponents = {[f"gradient_{c}" for c in comps]}\n'
                f'[fields.hessian]\ncomponents = {[f"hessian_{a}{b}" for a in comps for b in comps]}\n')
    else:
        write_npz(data, fields)
        decl = "[fields.gradient]\norder = 1\n[fields.hessian]\norder = 2\n"
    spec = tmp_path / f"{fmt}.toml"
    spec.write_text(f'name = "deriv-{fmt}"\nformat = "{fmt}"\npath = "{data.name}"\ninputs = {inputs}\n'
                    f'targets = {targets}\ntime_offset = 0\n{extra}\n{decl}')
    return spec


def expected_escnn(a: np.ndarray, d: int, k: int) -> torch.Tensor:
    """Independent statement of escnn's layout: out[c, (n_z-1-z,) n_y-1-y, x] = a[x, y(, z), components of c]."""
    grid = a.shape[:d]
    out = np.empty((d**k,) + grid[::-1])
    for idx in itertools.product(*[range(n) for n in grid]):
        pos = tuple(grid[i] - 1 - idx[i] if i > 0 else idx[i] for i in range(d))[::-1]
        for c, comp in enumerate(itertools.product(range(d), repeat=k)):
            out[(c,) + pos] = a[idx + comp]
    return torch.from_numpy(out)


def image(a: np.ndarray, m: np.ndarray, k: int) -> np.ndarray:
    """The image of a field in grid layout ``(*grid, (d,)*k)`` under the signed permutation ``m``:
    ``a'(M p) = rho_k(M) a(p)`` with positions ``p`` about the grid's centre."""
    d = m.shape[0]
    grid = a.shape[:d]
    out = np.empty_like(a)
    centre = (np.array(grid) - 1) / 2
    for idx in itertools.product(*[range(n) for n in grid]):
        new = m @ (np.array(idx) - centre) + centre
        value = a[idx]
        for _ in range(k):  # act on every component index
            value = np.tensordot(m, value, axes=([1], [0]))
            value = np.moveaxis(value, 0, -1)
        out[tuple(np.rint(new).astype(int))] = value
    return out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("grid", [(8, 8), (6, 10), (4, 5, 6)])
def test_reader_gives_escnn_layout(tmp_path, fmt, grid):
    fields = density_fields(grid, n_traj=3, n_time=2, seed=sum(grid))
    task = read_spec(write(tmp_path, fmt, fields))
    d = len(grid)
    assert task.grid == grid and task.d == d
    assert task.in_fields == ((0, 1, 1),) and task.out_fields == ((1, 1, 1), (2, 1, 1))
    x, y = task.read([2, 0], [1, 0])
    assert x.dtype == torch.float64 and x.shape == (2, 1) + grid[::-1]
    assert y.shape == (2, d + d * d) + grid[::-1]
    for i, (n, t) in enumerate([(2, 1), (0, 0)]):
        torch.testing.assert_close(x[i], expected_escnn(fields["density"][n, t][..., None], d, 0), rtol=0, atol=0)
        torch.testing.assert_close(y[i, :d], expected_escnn(fields["gradient"][n, t], d, 1), rtol=0, atol=0)
        torch.testing.assert_close(y[i, d:], expected_escnn(fields["hessian"][n, t], d, 2), rtol=0, atol=0)


@pytest.mark.parametrize("grid", [(6, 6), (4, 6), (4, 4, 4), (4, 4, 6), (3, 4, 5)])
def test_group_images_read_as_escnn_transforms(tmp_path, grid):
    """For every element g of the grid's group: reading g's image of the file = escnn's transform of the reading."""
    fields = density_fields(grid, n_traj=1, n_time=1, seed=1)
    task = from_arrays(fields, ["density"], ["gradient", "hessian"], fields={"gradient": {"order": 1},
                                                                            "hessian": {"order": 2}})
    expected_group = {(6, 6): "D4", (4, 6): "D2", (4, 4, 4): "Oh", (4, 4, 6): "D4h", (3, 4, 5): "D2h"}[grid]
    assert task.group == expected_group
    gs = task.gspace
    elements = group_elements(gs)
    assert len(elements) == {"D4": 8, "D2": 4, "Oh": 48, "D4h": 16, "D2h": 8}[expected_group]
    x, y = task.read([0], [0])
    for g in elements:
        m = group_matrix(gs, g)
        moved = {name: image(a[0, 0], m, k)[None, None] for (name, a), k in zip(fields.items(), (0, 1, 2))}
        xg, yg = from_arrays(moved, ["density"], ["gradient", "hessian"], fields={
            "gradient": {"order": 1}, "hessian": {"order": 2}}).read([0], [0])
        torch.testing.assert_close(xg, GeometricTensor(x, task.in_type()).transform(g).tensor, rtol=0, atol=0)
        torch.testing.assert_close(yg, GeometricTensor(y, task.out_type()).transform(g).tensor, rtol=0, atol=0)


@pytest.mark.parametrize("grid", [(5, 7), (3, 4, 5)])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_layout_round_trip(grid, k):
    d = len(grid)
    a = torch.randn((2,) + grid + (d,) * k, dtype=torch.float64)
    e = grid_to_escnn_layout(a, d, k)
    assert e.shape == (2, d**k) + grid[::-1]
    torch.testing.assert_close(e[1], expected_escnn(a[1].numpy(), d, k), rtol=0, atol=0)
    assert torch.equal(escnn_to_grid_layout(e, d, k), a)


def test_boundaries_decide_padding_and_group(tmp_path):
    fields = density_fields((6, 6), n_traj=3, n_time=1)
    data = tmp_path / "walls.h5"
    write_the_well(data, fields, periodic=(True, False))
    spec = tmp_path / "s.toml"
    spec.write_text(f'name = "w"\nformat = "the_well"\npath = "{data.name}"\ninputs = ["density"]\n'
                    f'targets = ["gradient"]\n')
    task = read_spec(spec)
    assert task.padding_mode == "zeros"
    assert task.group == "D2"  # x periodic, y a wall: the axes may not be swapped
    assert task.source.boundary == ("periodic", "wall")


# ---------------------------------------------------------------------------------------------------------------
# splits and time series
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_time_series_splits_by_trajectory(tmp_path, fmt):
    fields = density_fields((6, 6), n_traj=7, n_time=5, seed=3)
    spec = write(tmp_path, fmt, fields, inputs='["density"]', targets='["density"]')
    spec.write_text(spec.read_text().replace("time_offset = 0\n", ""))  # default 1 for a time series
    task = read_spec(spec)
    assert task.time_offset == 1 and task.is_time_series
    lazy = load_splits(spec, None, None, None, seed=1, lazy=True)
    eager = load_splits(spec, None, None, None, seed=1, lazy=False)
    sets = [set(s.trajectory.tolist()) for s in (lazy.train, lazy.val, lazy.test)]
    assert sum(len(s) for s in sets) == 7 and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    for split in (lazy.train, lazy.val, lazy.test):
        assert len(split) == 4 * len(set(split.trajectory.tolist()))  # every next-step pair of its trajectories
    idx = torch.tensor([0, 2, 3])
    for a, b in zip(lazy.train[idx], eager.train[idx]):
        assert torch.equal(a, b)
    x, y = lazy.train[torch.tensor([1])]
    n, t = int(lazy.train.trajectory[1]), int(lazy.train.time[1])
    torch.testing.assert_close(x[0], expected_escnn(fields["density"][n, t][..., None], 2, 0), rtol=0, atol=0)
    torch.testing.assert_close(y[0], expected_escnn(fields["density"][n, t + 1][..., None], 2, 0), rtol=0, atol=0)
    traj = lazy.trajectories
    assert traj.steps == 4 and len(traj) == len(sets[2])
    states = traj[torch.arange(len(traj))]
    assert states.shape == (len(sets[2]), 5, 1, 6, 6)
    first = sorted(sets[2])[0]
    torch.testing.assert_close(states[0, 3], expected_escnn(fields["density"][first, 3][..., None], 2, 0), rtol=0,
                               atol=0)
    assert lazy.group == "D4" and lazy.padding_mode == "circular" and lazy.grid == (6, 6)
    x_all, y_all = eager.test  # in-memory splits still unpack
    assert x_all.shape[0] == len(eager.test)


def test_split_sizes_and_ranges(tmp_path):
    fields = density_fields((4, 4), n_traj=6, n_time=3)
    spec = write(tmp_path, "npz", fields, inputs='["density"]', targets='["density"]',
                 extra="time_offset = 1\n[splits]\ntrain = [0, 4]\nval = [4, 5]\ntest = [5, 6]\nn_train = 5\n")
    spec.write_text(spec.read_text().replace("time_offset = 0\n", ""))
    s = load_splits(spec, None, None, None)
    assert len(s.train) == 5 and len(s.val) == 2 and len(s.test) == 2
    assert set(s.train.trajectory.tolist()) <= {0, 1, 2, 3} and set(s.test.trajectory.tolist()) == {5}
    s = load_splits(spec, 3, 1, 1)
    assert (len(s.train), len(s.val), len(s.test)) == (3, 1, 1)


def test_navier_stokes_rollout_trajectories(tmp_path):
    from escnn_tensor.data import get_task, load

    s = load_splits("navier-stokes", 2, 1, 2, size=8, cache_dir=tmp_path, rollout_steps=3)
    assert s.trajectories.steps == 3
    states = s.trajectories[torch.arange(2)]
    assert states.shape == (2, 4, 2, 8, 8)
    x, y = s.test[torch.arange(2)]
    assert torch.equal(states[:, 0], x)
    torch.testing.assert_close(states[:, 1], y, rtol=1e-8, atol=1e-10)  # the generator's own next step
    task = get_task("navier-stokes")
    torch.testing.assert_close(states[:, 3], task.solve(task.solve(task.solve(x))), rtol=0, atol=0)
    # the default data and cache are those of before: the same file, the same tensors
    data = load("navier-stokes", 5, 8, 0, cache_dir=tmp_path)
    assert torch.equal(data.inputs[3:], x) and len(list(tmp_path.glob("*.pt"))) == 1
    assert load_splits("navier-stokes", 2, 1, 2, size=8, cache_dir=tmp_path).trajectories is None


# ---------------------------------------------------------------------------------------------------------------
# bad input: one line naming the file, the field and what was expected
# ---------------------------------------------------------------------------------------------------------------


def _one_line(exc: DataError, *words):
    text = str(exc)
    assert "\n" not in text
    for w in words:
        assert w in text, (w, text)


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_field(tmp_path, fmt):
    fields = density_fields((4, 4), n_traj=3, n_time=1)
    spec = write(tmp_path, fmt, fields, targets='["gradient", "vorticity"]')
    with pytest.raises(DataError) as e:
        read_spec(spec)
    _one_line(e.value, "vorticity", FILES[fmt])


def test_order_that_does_not_fit(tmp_path):
    fields = density_fields((4, 4), n_traj=3, n_time=1)
    spec = write(tmp_path, "npz", fields)
    spec.write_text(spec.read_text().replace("[fields.gradient]\norder = 1", "[fields.gradient]\norder = 2"))
    with pytest.raises(DataError) as e:
        read_spec(spec)
    _one_line(e.value, "gradient", "data.npz", "order 2")
    spec = write(tmp_path, "the_well", fields, extra="[fields.hessian]\norder = 1\n")
    with pytest.raises(DataError) as e:
        read_spec(spec)
    _one_line(e.value, "hessian", "t2_fields")


def test_different_grids_and_nans(tmp_path):
    fields = density_fields((4, 4), n_traj=3, n_time=1)
    fields["gradient"] = density_fields((4, 6), n_traj=3, n_time=1)["gradient"]
    with pytest.raises(DataError) as e:
        read_spec(write(tmp_path, "npz", fields))
    _one_line(e.value, "gradient", "grid", "(4, 6)", "(4, 4)")
    fields = density_fields((4, 4), n_traj=3, n_time=1)
    fields["hessian"][1, 0, 2, 3, 0, 1] = np.nan
    spec = write(tmp_path, "the_well", fields)
    with pytest.raises(DataError) as e:
        load_splits(spec, None, None, None, lazy=True)
    _one_line(e.value, "hessian", "NaN", "trajectory 1", "data.h5")


@pytest.mark.parametrize("text, words", [
    ('format = "csv"', ["csv", "the_well"]),
    ('colour = "red"', ["colour", "unknown"]),
    ('[splits]\nsize = 3', ["size", "[splits]"]),
    ('[fields.density]\nrank = 0', ["rank", "density"]),
])
def test_unknown_format_or_key(tmp_path, text, words):
    fields = density_fields((4, 4), n_traj=3, n_time=1)
    spec = write(tmp_path, "npz", fields)
    body = spec.read_text()
    body = body.replace('format = "npz"', text) if text.startswith("format") else text + "\n" + body \
        if not text.startswith("[") else body + "\n" + text + "\n"
    spec.write_text(body)
    with pytest.raises(DataError) as e:
        read_spec(spec)
    _one_line(e.value, "npz.toml", *words)


def test_static_fields_are_broadcast(tmp_path):
    """A field that varies neither between trajectories nor over time (e.g. a coefficient map) is read for every
    sample; one that varies between trajectories only, for every time step."""
    import h5py

    fields = density_fields((6, 4), n_traj=4, n_time=3)
    data = tmp_path / "static.h5"
    write_the_well(data, fields)
    rng = np.random.default_rng(5)
    coef, per_traj = rng.normal(size=(6, 4)), rng.normal(size=(4, 6, 4, 2))
    with h5py.File(data, "a") as f:
        ds = f["t0_fields"].create_dataset("coef", data=coef)
        ds.attrs["sample_varying"], ds.attrs["time_varying"] = False, False
        ds = f["t1_fields"].create_dataset("wind", data=per_traj)
        ds.attrs["sample_varying"], ds.attrs["time_varying"] = True, False
        f["t0_fields"].attrs["field_names"] = ["density", "coef"]
        f["t1_fields"].attrs["field_names"] = ["gradient", "wind"]
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\nformat = "the_well"\npath = "static.h5"\ninputs = ["density", "coef", "wind"]\n'
                    'targets = ["gradient"]\n')
    task = read_spec(spec)
    assert task.source.fields["coef"].time_varying is False and task.source.fields["wind"].sample_varying
    x, _ = task.read([3, 1], [2, 0])
    for i, n in enumerate((3, 1)):
        torch.testing.assert_close(x[i, 1:2], expected_escnn(coef[..., None], 2, 0), rtol=0, atol=0)
        torch.testing.assert_close(x[i, 2:4], expected_escnn(per_traj[n], 2, 1), rtol=0, atol=0)


def test_netcdf_dimension_names_are_configurable(tmp_path):
    fields = density_fields((5, 7), n_traj=3, n_time=2, seed=2)
    write_netcdf(tmp_path / "ocean.nc", fields, dim_names=("xu_ocean", "yu_ocean"))
    import xarray as xr

    ds = xr.open_dataset(tmp_path / "ocean.nc").load().rename({"trajectory": "member"})
    ds.to_netcdf(tmp_path / "ocean2.nc", engine="h5netcdf")
    spec = tmp_path / "s.toml"
    spec.write_text('name = "o"\nformat = "netcdf"\npath = "ocean2.nc"\ninputs = ["density"]\n'
                    'targets = ["gradient"]\ntime_offset = 1\nperiodic = false\n'
                    '[fields.gradient]\ncomponents = ["gradient_x", "gradient_y"]\n'
                    '[netcdf]\ndims = { x = "xu_ocean", y = "yu_ocean" }\n')
    task = read_spec(spec)
    assert task.grid == (5, 7) and task.padding_mode == "zeros" and task.source.n_trajectories == 3
    x, y = task.read([2], [0])
    torch.testing.assert_close(x[0], expected_escnn(fields["density"][2, 0][..., None], 2, 0), rtol=0, atol=0)
    torch.testing.assert_close(y[0], expected_escnn(fields["gradient"][2, 1], 2, 1), rtol=0, atol=0)
    spec.write_text(spec.read_text().replace('x = "xu_ocean"', 'x = "lon"'))
    with pytest.raises(DataError) as e:
        read_spec(spec)
    _one_line(e.value, "ocean2.nc", "xu_ocean")
