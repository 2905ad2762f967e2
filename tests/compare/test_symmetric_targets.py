"""The harness on tasks with symmetric 2-tensor targets (tidal, subgrid-stress, boussinesq-flux: version 2 of their
definition, targets as symmetric fields): new job ids for exactly those tasks (so --resume never reuses rows of the
full-tensor definition), and every family trains on tidal with the equivariance it had, rotated errors, normalisation
and the predictions file of the symmetric field."""
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

from escnn_tensor._io import load_checkpoint
from escnn_tensor.compare.cli import parse_args
from escnn_tensor.compare.figures import field_images
from escnn_tensor.compare.plan import plan
from escnn_tensor.compare.predictor import field_affine
from escnn_tensor.compare.splits import TensorSplit
from escnn_tensor.data import get_task
from escnn_tensor.groups import hyperoctahedral_gspace
from escnn_tensor.representations import to_full_tensor

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--model", "resnet", "--model-option", "num_blocks=1", "--params", "1600", "--samples", "8", "--val-samples", "4",
    "--test-samples", "4", "--size", "8", "--batch-size", "4", "--seeds", "1", "--lr", "3e-3", "--no-progress",
    "--device", "cpu",
]
# the fields every job id hashed before JobSpec had task_version (the first release's plus n_pool / average when set)
FIRST_RELEASE = ("task", "model", "family", "augment", "seed", "lr", "params", "epochs", "batch_size", "dtype", "size",
                 "n_train", "n_val", "n_test", "data_seed", "model_options")


def _old_job_id(spec) -> str:
    """The id the job had before task versions: the hash of the first release's fields, written out here."""
    settings = {name: getattr(spec, name) for name in FIRST_RELEASE}
    settings["model_options"] = dict(spec.model_options)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{spec.task}-{spec.model}-{spec.family}{'-aug' if spec.augment else ''}-s{spec.seed}-lr{spec.lr:g}-{digest}"


def test_job_ids_change_only_for_the_tasks_whose_definition_changed(tmp_path):
    """gravity and navier-stokes (version 1) keep the ids they had; tidal, subgrid-stress and boussinesq-flux (version
    2: symmetric targets) get new ones, with task_version in the hashed settings, so their row ids change too."""
    tasks = ["gravity", "navier-stokes", "tidal", "subgrid-stress", "boussinesq-flux"]
    argv = TINY + ["--epochs", "1", "--augment", "--out", str(tmp_path / "run")]
    for t in tasks:
        argv += ["--task", t]
    rows = plan(parse_args(argv))
    assert {r.spec.task for r in rows} == set(tasks) and len(rows) == 4 * len(tasks)
    for row in rows:
        spec = row.spec
        if spec.task in ("gravity", "navier-stokes"):
            assert spec.job_id == _old_job_id(spec) and "task_version" not in spec.to_dict()
        else:
            assert spec.job_id != _old_job_id(spec) and spec.to_dict()["task_version"] == 2
    assert len({r.row_id for r in rows}) == len(rows)


def test_normalisation_scales_of_a_symmetric_field():
    """field_affine: one RMS scale per field over the field's own channels (3 coordinates of the symmetric 2-tensor,
    2 of the vector), no shift but for true scalars."""
    gs = hyperoctahedral_gspace(2)
    task = get_task("boussinesq-flux")
    y = torch.randn(6, 5, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y[:, 2:] *= 3.0
    scale, shift = field_affine(task.out_type(gs), TensorSplit(torch.zeros(6, 3, 4, 4), y), 1)
    expected = [y[:, :2].pow(2).mean().sqrt()] * 2 + [y[:, 2:].pow(2).mean().sqrt()] * 3
    torch.testing.assert_close(scale, torch.stack(expected), rtol=1e-12, atol=0)
    assert torch.equal(shift, torch.zeros(5, dtype=torch.float64))


def test_every_family_trains_on_symmetric_tidal_targets(tmp_path):
    """A tiny float64 run on tidal: one row per family (and plain+aug) with 3-channel targets; geometric equivariant to 1e-10 and its 8
    rotated errors equal, steerable to 1e-5, plain not; the predictions file names the symmetric field and its
    relative error on the coordinates is the full tensors' Frobenius error; the samples figure is drawn."""
    out = tmp_path / "run"
    argv = TINY + ["--task", "tidal", "--epochs", "2", "--dtype", "float64", "--out", str(out),
                   "--data-dir", str(tmp_path / "data")]
    proc = subprocess.run([sys.executable, "-m", "escnn_tensor.compare", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["label"]: r for r in json.loads((out / "results.json").read_text())}
    assert sorted(rows) == ["geometric", "plain", "plain+aug", "steerable"]
    for label, r in rows.items():
        assert 0 < r["test_error"] <= r["rotated_test_error"] + 1e-12 and math.isfinite(r["test_error"])
        pred = load_checkpoint(out / "predictions" / f"{r['job']}.pt", map_location="cpu")
        assert pred["out_fields"] == [(2, 1, "symmetric")] and pred["in_fields"] == [(0, 1)]
        assert pred["target"].shape == pred["prediction"].shape == (3, 8, 8)
        full = lambda c: to_full_tensor(c[None], 2, 2, "symmetric", dim=1)[0]
        coords = (pred["prediction"] - pred["target"]).pow(2).sum() / pred["target"].pow(2).sum()
        frob = (full(pred["prediction"]) - full(pred["target"])).pow(2).sum() / full(pred["target"]).pow(2).sum()
        assert abs(coords - frob) <= 1e-12 * frob
        (arr, p, k), = field_images(pred["target"], pred["out_fields"], 2)
        assert arr.shape == (8, 8, 2, 2) and (p, k) == (1, 2) and (arr == arr.transpose(0, 1, 3, 2)).all()
    geo = rows["geometric"]
    assert geo["equivariance_error"] <= 1e-10
    assert max(geo["rotated_test_errors"]) - min(geo["rotated_test_errors"]) <= 1e-10 * geo["test_error"]
    assert rows["steerable"]["equivariance_error"] <= 1e-5
    assert min(rows["plain"]["equivariance_error"], rows["plain+aug"]["equivariance_error"]) > 1e-3
    assert (out / "samples_tidal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
