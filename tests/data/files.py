"""Writers of test files, made INDEPENDENTLY of the readers: h5py, xarray and numpy called directly.

The field: a smooth periodic scalar ``density`` on a grid ``(n_x, n_y[, n_z])`` (array axis i along x_i), its
central-difference gradient (t1: component i = (rho(a + e_i) - rho(a - e_i)) / 2) and Hessian (t2: H_ij the central
difference along i of gradient component j), each array in The Well's axis order (trajectory, time, *grid, comps).
"""
from __future__ import annotations

import numpy as np


def density_fields(grid, n_traj=3, n_time=2, seed=0):
    """``{"density": (n_traj, n_time, *grid), "gradient": (..., d), "hessian": (..., d, d)}`` float64."""
    rng = np.random.default_rng(seed)
    d = len(grid)
    axes = np.meshgrid(*[np.arange(n) / n for n in grid], indexing="ij")
    rho = np.zeros((n_traj, n_time) + tuple(grid))
    for n in range(n_traj):
        for t in range(n_time):
            for _ in range(4):  # a few random low modes with random phases: smooth, periodic, not symmetric
                k = rng.integers(-2, 3, size=d)
                phase = rng.uniform(0, 2 * np.pi)
                amp = rng.normal()
                rho[n, t] += amp * np.cos(2 * np.pi * sum(ki * a for ki, a in zip(k, axes)) + phase)
            rho[n, t] += 0.3 * rng.normal()
    lead = 2  # axes before the grid

    def diff(f, i):
        return (np.roll(f, -1, axis=lead + i) - np.roll(f, 1, axis=lead + i)) / 2.0

    grad = np.stack([diff(rho, i) for i in range(d)], axis=-1)
    hess = np.stack([np.stack([diff(grad[..., j], i) for j in range(d)], axis=-1) for i in range(d)], axis=-2)
    return {"density": rho, "gradient": grad, "hessian": hess}


def write_the_well(path, fields, periodic=True, dtype=np.float64):
    import h5py

    any_field = next(iter(fields.values()))
    d = any_field.ndim - 2 if "density" not in fields else fields["density"].ndim - 2
    names = ["x", "y", "z"][:d]
    with h5py.File(path, "w") as f:
        f.attrs["n_spatial_dims"] = d
        f.attrs["n_trajectories"] = any_field.shape[0]
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = names
        bcs = f.create_group("boundary_conditions")
        for i, name in enumerate(names):
            g = bcs.create_group(f"{name}_boundary")
            g.attrs["associated_dims"] = [name]
            p = periodic if isinstance(periodic, bool) else periodic[i]
            g.attrs["bc_type"] = "PERIODIC" if p else "WALL"
        groups = {0: [], 1: [], 2: []}
        for name, a in fields.items():
            groups[a.ndim - 2 - d].append(name)
        for k, group_names in groups.items():
            g = f.create_group(f"t{k}_fields")
            g.attrs["field_names"] = group_names
            for name in group_names:
                ds = g.create_dataset(name, data=fields[name].astype(dtype))
                ds.attrs["sample_varying"] = True
                ds.attrs["time_varying"] = True
                ds.attrs["dim_varying"] = [True] * d


def write_netcdf(path, fields, dim_names=("x", "y", "z")):
    """One variable per component: density; gradient_x, gradient_y; hessian_xx, ... on dims (trajectory, time,
    then the spatial dims in a deliberately different order, so a reader using positions would fail)."""
    import xarray as xr

    d = fields["density"].ndim - 2
    spatial = list(dim_names[:d])
    order = spatial[::-1]  # stored as (..., y, x): orientation must come from the names
    data_vars = {}
    comp = "xyz"

    def put(name, a):
        data_vars[name] = (["trajectory", "time"] + order, np.transpose(a, (0, 1) + tuple(range(d + 1, 1, -1))))

    put("density", fields["density"])
    for i in range(d):
        put(f"gradient_{comp[i]}", fields["gradient"][..., i])
        for j in range(d):
            put(f"hessian_{comp[i]}{comp[j]}", fields["hessian"][..., i, j])
    xr.Dataset(data_vars).to_netcdf(path, engine="h5netcdf")


def write_npz(path, fields):
    np.savez(path, **fields)
