"""torchrun: 2 processes (gloo on the CPU) train each job together with DDP on split global batches, and give the
numbers of one process (float64: test error equal to 1e-9). The geometric family's TensorBatchNorm synchronises its
statistics across processes, so its default model (with batch norm) is used; torch's BatchNorm (plain family,
inside escnn's InnerBatchNorm) becomes SyncBatchNorm on CUDA only (torch has none on the CPU under DDP)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from escnn_tensor.compare import run_comparison
from escnn_tensor.compare.cli import parse_args

ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "--task", "tidal", "--model", "resnet", "--model-option", "num_blocks=1", "--params", "1600", "--samples", "8",
    "--val-samples", "6", "--test-samples", "5", "--size", "8", "--batch-size", "4", "--seeds", "1", "--lr", "3e-3",
    "--epochs", "2", "--family", "geometric", "--no-augment", "--dtype", "float64", "--device", "cpu", "--threads", "1",
    "--no-progress",
]

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


def test_two_processes_give_the_numbers_of_one(tmp_path):
    data_dir = str(tmp_path / "data")
    one = tmp_path / "one"
    rows_one = run_comparison(parse_args(ARGS + ["--out", str(one), "--data-dir", data_dir]), log=lambda s: None)
    two = tmp_path / "two"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
         "escnn_tensor.compare", *ARGS, "--out", str(two), "--data-dir", data_dir],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**env, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows_two = json.loads((two / "results.json").read_text())
    assert [r["label"] for r in rows_two] == [r["label"] for r in rows_one] == ["geometric"]
    assert proc.stdout.count("| tidal | resnet | geometric |") == 1  # only rank 0 reports
    for a, b in zip(rows_one, rows_two):
        assert (a["world_size"], b["world_size"]) == (1, 2)
        assert a["best_epoch"] == b["best_epoch"] and a["lr"] == b["lr"]
        for key in ("val_error", "test_error", "rotated_test_error"):
            assert b[key] == pytest.approx(a[key], rel=1e-9, abs=0), key
        for x, y in zip(a["rotated_test_errors"], b["rotated_test_errors"]):
            assert y == pytest.approx(x, rel=1e-9, abs=0)
        if a["family"] == "geometric":
            assert b["equivariance_error"] < 1e-10
    history_one = json.loads(next((one / "jobs").glob("tidal-resnet-geometric-*.json")).read_text())["jobs"][0]
    history_two = json.loads(next((two / "jobs").glob("tidal-resnet-geometric-*.json")).read_text())["jobs"][0]
    for h1, h2 in zip(history_one["history"], history_two["history"]):
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-9, abs=0)
