r"""Worked example: your own tensor-field data in the head-to-head, from a file in The Well's HDF5 layout.

Run it with ``python examples/own_data.py --out DIR`` (``bash scripts/dev.sh example own_data --out DIR``). It

1. makes a few 2D Navier-Stokes trajectories with the project's own solver
   (:mod:`escnn_tensor.data.navier_stokes`) and writes them with h5py in The Well's layout: ``t1_fields/velocity``
   ``(n_trajectories, n_time, n_x, n_y, 2)`` (component i along axis i), ``t0_fields/vorticity``, the
   ``dimensions`` group and periodic ``boundary_conditions`` -- as a simulation code would;
2. writes the dataset spec ``DIR/navier_stokes.toml`` (velocity at t -> velocity at t + 1, split by trajectory);
3. runs the head-to-head on it (the quick profile: three families and plain+aug, ResNet, about 6,000
   parameters) with 3-step rollouts on the two test trajectories: ``python -m escnn_tensor.compare --quick
   --task DIR/navier_stokes.toml --samples 40 --val-samples 10 --test-samples 10 --rollout 3 ...`` (``--no-run``
   stops after writing the two files; other options are passed on).

Nothing here is special to the example: any file in that layout and a spec naming its fields does the same.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from escnn_tensor.data import navier_stokes


def write_the_well(path: Path, n_trajectories: int = 12, n_time: int = 6, size: int = 16, interval: float = 0.2,
                   seed: int = 0) -> None:
    """``n_trajectories`` trajectories of ``n_time`` states ``interval`` apart (after a spin-up of 1), size^2 grid."""
    import h5py

    solver = navier_stokes.VorticitySolver(size, viscosity=1e-3, forcing_amplitude=0.0)
    w = navier_stokes.initial_vorticity(n_trajectories, size, torch.Generator().manual_seed(seed))
    w = solver.evolve(w, 1.0)
    states = [w]
    for _ in range(n_time - 1):
        states.append(solver.evolve(states[-1], interval))
    omega = torch.stack(states, dim=1)  # (n, T, x, y), grid layout
    velocity = solver.velocity(omega)  # (n, T, x, y, 2), component i along axis i
    with h5py.File(path, "w") as f:
        f.attrs["dataset_name"] = "navier_stokes_example"
        f.attrs["grid_type"] = "cartesian"
        f.attrs["n_spatial_dims"] = 2
        f.attrs["n_trajectories"] = n_trajectories
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        dims.create_dataset("time", data=np.arange(n_time) * interval)
        for name in ("x", "y"):
            dims.create_dataset(name, data=(np.arange(size) + 0.5) / size)
        bcs = f.create_group("boundary_conditions")
        for name in ("x", "y"):
            bc = bcs.create_group(f"{name}_periodic")
            bc.attrs["associated_dims"] = [name]
            bc.attrs["bc_type"] = "PERIODIC"
        for group, name, data in (("t0_fields", "vorticity", omega), ("t1_fields", "velocity", velocity)):
            g = f.create_group(group)
            g.attrs["field_names"] = [name]
            ds = g.create_dataset(name, data=data.numpy().astype(np.float32))
            ds.attrs["sample_varying"] = True
            ds.attrs["time_varying"] = True
            ds.attrs["dim_varying"] = [True, True]
        f.create_group("t2_fields").attrs["field_names"] = []


SPEC = """\
name = "ns-file"
format = "the_well"
path = "navier_stokes.h5"
inputs = ["velocity"]
targets = ["velocity"]
time_offset = 1

[splits]
train = [0, 8]
val = [8, 10]
test = [10, 12]
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/own_data", help="folder for the file, the spec and the results")
    parser.add_argument("--no-run", action="store_true", help="only write the data file and the spec")
    parser.add_argument("--epochs", type=int, default=10)
    args, rest = parser.parse_known_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_the_well(out / "navier_stokes.h5")
    (out / "navier_stokes.toml").write_text(SPEC)
    print(f"wrote {out / 'navier_stokes.h5'} and {out / 'navier_stokes.toml'}")
    if args.no_run:
        return 0
    cmd = [sys.executable, "-m", "escnn_tensor.compare", "--quick", "--task", str(out / "navier_stokes.toml"),
           "--epochs", str(args.epochs), "--samples", "40", "--val-samples", "10", "--test-samples", "10",
           "--rollout", "3", "--no-progress", "--out", str(out / "results"), *rest]
    print(" ".join(cmd))
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
