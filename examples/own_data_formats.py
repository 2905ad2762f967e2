r"""The done-when check of your-own-data (issue 19), measured: density -> (gradient, Hessian) in three file formats.

Writes, with h5py / xarray / numpy directly (not with escnn_tensor's readers), a smooth periodic scalar
``density``, its central-difference gradient (t1) and Hessian (t2), component i along axis i, as The Well's HDF5,
netCDF (one variable per component, dimensions stored as (..., y, x)) and ``.npz``; a spec per file; and a
*control* file in which the gradient's and Hessian's components are swapped (x <-> y), as a reader mixing up axes
and components would deliver them. Then runs the head-to-head (geometric family) on each spec, in one process, and
prints the test errors: the three formats agree (they are the same samples), the control cannot be fitted by an
equivariant model. ``--rect`` adds the same data on a 16 x 24 grid (the flips, D2) and prints its group and
equivariance error.

    python examples/own_data_formats.py --out outputs/own_data_formats [--rect] [--epochs 20]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "data"))  # the independent writers of the tests
from files import density_fields, write_netcdf, write_npz, write_the_well  # noqa: E402


def write_all(out: Path, grid, n_traj: int, tag: str = "") -> list:
    fields = density_fields(grid, n_traj=n_traj, n_time=1, seed=0)
    d = len(grid)
    comps = "xyz"[:d]
    specs = []
    head = 'inputs = ["density"]\ntargets = ["gradient", "hessian"]\ntime_offset = 0\n'
    write_the_well(out / f"density{tag}.h5", fields)
    specs.append(("the_well" + tag, f'format = "the_well"\npath = "density{tag}.h5"\n' + head))
    write_netcdf(out / f"density{tag}.nc", fields)
    specs.append(("netcdf" + tag, f'format = "netcdf"\npath = "density{tag}.nc"\n' + head
                  + f'[fields.gradient]\ncomponents = {[f"gradient_{c}" for c in comps]}\n'
                  + f'[fields.hessian]\ncomponents = {[f"hessian_{a}{b}" for a in comps for b in comps]}\n'))
    write_npz(out / f"density{tag}.npz", fields)
    specs.append(("npz" + tag, f'format = "npz"\npath = "density{tag}.npz"\n' + head
                  + "[fields.gradient]\norder = 1\n[fields.hessian]\norder = 2\n"))
    if not tag:  # the control: components swapped, as a reader mixing up axes would give them
        swapped = dict(fields)
        swapped["gradient"] = fields["gradient"][..., ::-1].copy()
        swapped["hessian"] = fields["hessian"][..., ::-1, :].copy()
        write_npz(out / "density_swapped.npz", swapped)
        specs.append(("control-swapped", 'format = "npz"\npath = "density_swapped.npz"\n' + head
                      + "[fields.gradient]\norder = 1\n[fields.hessian]\norder = 2\n"))
    paths = []
    for name, body in specs:
        p = out / f"{name}.toml"
        p.write_text(f'name = "{name}"\n' + body)
        paths.append(p)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/own_data_formats")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rect", action="store_true", help="also the 16 x 24 grid")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    specs = write_all(out, (16, 16), 80)
    if args.rect:
        specs += write_all(out, (16, 24), 80, tag="-16x24")
    from escnn_tensor.compare.cli import main as compare

    argv = ["--quick", "--family", "geometric", "--no-augment", "--epochs", str(args.epochs), "--lr", "1e-2",
            "--seeds", "1", "--samples", "64", "--val-samples", "8", "--test-samples", "8", "--no-progress",
            "--out", str(out / "results")]
    for s in specs:
        argv += ["--task", str(s)]
    print("python -m escnn_tensor.compare " + " ".join(argv))
    compare(argv)
    rows = json.loads((out / "results" / "results.json").read_text())
    print(f"{'task':24s} {'group':6s} {'test error':>11s} {'equivariance':>13s}")
    for r in rows:
        print(f"{r['task']:24s} {r['group']:6s} {r['test_error']:11.4g} {r['equivariance_error']:13.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
