"""The worked example of docs/own_data.md (examples/own_data.py): Navier-Stokes trajectories from the project's
solver written in The Well's layout, then the head-to-head run on them from the spec, with rollouts."""
import json
import math

import h5py
import numpy as np

import own_data as E  # examples/ is on sys.path (tests/examples/conftest.py)
from escnn_tensor.data import read_spec


def test_the_file_holds_the_solvers_velocity_with_component_i_along_axis_i(tmp_path):
    path = tmp_path / "ns.h5"
    E.write_the_well(path, n_trajectories=2, n_time=3, size=8)
    with h5py.File(path, "r") as f:
        velocity = f["t1_fields/velocity"][...]
        omega = f["t0_fields/vorticity"][...]
    assert velocity.shape == (2, 3, 8, 8, 2) and omega.shape == (2, 3, 8, 8)
    # independent of the writer's own velocity call: u = (d_y psi, -d_x psi) with lap psi = -omega, by FFT here
    k = 2 * np.pi * np.fft.fftfreq(8, d=1 / 8)
    kx, ky = np.meshgrid(k, k, indexing="ij")  # axis 0 is x, axis 1 is y
    k2 = kx**2 + ky**2
    k2[0, 0] = 1.0
    psi_hat = np.fft.fft2(omega.astype(np.float64), axes=(-2, -1)) / k2
    psi_hat[..., 0, 0] = 0.0
    for axis in (0, 1):  # the Nyquist wavenumber carries no derivative, as in the solver
        index = [slice(None)] * 4
        index[2 + axis] = 4
        psi_hat[tuple(index)] = 0.0
    u = np.real(np.fft.ifft2(1j * ky * psi_hat, axes=(-2, -1)))
    v = np.real(np.fft.ifft2(-1j * kx * psi_hat, axes=(-2, -1)))
    scale = np.abs(velocity).max()
    assert np.abs(velocity[..., 0] - u).max() <= 1e-5 * scale
    assert np.abs(velocity[..., 1] - v).max() <= 1e-5 * scale


def test_the_head_to_head_runs_on_the_file_from_its_spec(tmp_path):
    out = tmp_path / "example"
    assert E.main(["--out", str(out), "--epochs", "1", "--family", "geometric", "--no-augment", "--params", "2000",
                   "--model-option", "num_blocks=1", "--lr", "1e-2"]) == 0
    task = read_spec(out / "navier_stokes.toml")
    assert task.name == "ns-file"
    (row,) = json.loads((out / "results" / "results.json").read_text())
    assert row["task"] == "ns-file" and row["group"] == "D4" and row["family"] == "geometric"
    assert math.isfinite(row["test_error"]) and row["equivariance_error"] <= 1e-5
    errors = row["rollout_errors"]
    assert len(errors) == 3 and all(math.isfinite(e) and e > 0 for e in errors)
