"""The harness on files: --task PATH.toml (mixed with a built-in name), the group of a rectangular grid in the
rows, --rollout T on a time series, and a bad spec ending in one line with exit status 2 and nothing written."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from escnn_tensor.compare.cli import main

from ..data.files import density_fields, write_the_well, write_npz

TINY = ["--quick", "--model", "resnet", "--family", "geometric", "--no-augment", "--epochs", "1", "--lr", "1e-2",
        "--seeds", "1", "--no-progress", "--params", "3000", "--model-option", "num_blocks=1"]


def _spec(tmp_path: Path, name: str, body: str) -> Path:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(f'name = "{name}"\n' + body)
    return spec


def test_spec_tasks_on_a_rectangle_and_a_rollout(tmp_path):
    write_the_well(tmp_path / "rect.h5", density_fields((16, 24), n_traj=6, n_time=1))
    rect = _spec(tmp_path, "rect", 'format = "the_well"\npath = "rect.h5"\ninputs = ["density"]\n'
                                   'targets = ["gradient", "hessian"]\ntime_offset = 0\n')
    write_npz(tmp_path / "series.npz", {"density": density_fields((8, 8), n_traj=6, n_time=5)["density"]})
    series = _spec(tmp_path, "series", 'format = "npz"\npath = "series.npz"\ninputs = ["density"]\n'
                                       'targets = ["density"]\n')
    out = tmp_path / "out"
    assert main(TINY + ["--task", str(rect), "--task", str(series), "--rollout", "3", "--samples", "4",
                        "--val-samples", "1", "--test-samples", "1", "--out", str(out)]) == 0
    rows = {r["task"]: r for r in json.loads((out / "results.json").read_text())}
    assert set(rows) == {"rect", "series"}
    assert rows["rect"]["group"] == "D2" and rows["rect"]["rollout_errors"] is None
    assert rows["rect"]["equivariance_error"] <= 1e-6
    assert rows["series"]["group"] == "D4"
    errors = rows["series"]["rollout_errors"]
    assert len(errors) == 3 and all(math.isfinite(e) for e in errors)


def test_bad_spec_is_one_line_and_writes_nothing(tmp_path):
    write_the_well(tmp_path / "d.h5", density_fields((8, 8), n_traj=3, n_time=1))
    spec = _spec(tmp_path, "bad", 'format = "the_well"\npath = "d.h5"\ninputs = ["density"]\n'
                                  'targets = ["vorticity"]\n')
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "escnn_tensor.compare", *TINY, "--task", str(spec), "--out",
                          str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "vorticity" in lines[0] and "d.h5" in lines[0], run.stderr
    assert "Traceback" not in run.stderr and not out.exists()


def test_navier_stokes_rollout_from_the_command_line(tmp_path):
    out = tmp_path / "out"
    assert main(TINY + ["--task", "navier-stokes", "--task", "gravity", "--size", "8", "--rollout", "2",
                        "--samples", "4", "--val-samples", "2", "--test-samples", "2", "--data-dir",
                        str(tmp_path / "cache"), "--no-progress", "--out", str(out)]) == 0
    rows = {r["task"]: r for r in json.loads((out / "results.json").read_text())}
    errors = rows["navier-stokes"]["rollout_errors"]
    assert len(errors) == 2 and all(math.isfinite(e) and e > 0 for e in errors)
    assert rows["gravity"]["rollout_errors"] is None  # not a time series: no trajectories


def test_run_counts_replacing_a_specs_split_sizes_are_said(tmp_path, capsys):
    """A spec's [splits] sizes give way to the run's sample counts, and the run says so (never silently)."""
    write_the_well(tmp_path / "d.h5", density_fields((8, 8), n_traj=8, n_time=1))
    spec = _spec(tmp_path, "sized", 'format = "the_well"\npath = "d.h5"\ninputs = ["density"]\n'
                                    'targets = ["gradient"]\ntime_offset = 0\n[splits]\nn_train = 3\n')
    out = tmp_path / "out"
    assert main(TINY + ["--task", str(spec), "--samples", "4", "--val-samples", "1", "--test-samples", "1",
                        "--no-checkpoints", "--out", str(out)]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "replace the spec's [splits]" in line]
    assert len(said) == 1 and "'n_train': 4" in said[0] and "'n_train': 3" in said[0], said
    (row,) = json.loads((out / "results.json").read_text())
    assert row["n_train"] == 4 and not any((out / "checkpoints").iterdir())
