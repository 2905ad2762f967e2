"""``--samples`` repeatable (sample efficiency): one row per training-set size, nested training sets that share
the validation and test samples, ids of single-size runs unchanged, efficiency.png and its table."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from escnn_tensor.compare import runner
from escnn_tensor.compare.cli import parse_args
from escnn_tensor.compare.config import check_config, train_sizes
from escnn_tensor.compare.plan import JobSpec, plan
from escnn_tensor.compare.splits import TensorSplit, first
from tests.compare.test_compare import TINY, rows_of

ROOT = Path(__file__).resolve().parents[2]
_AT = TINY.index("--samples")
BASE = TINY[:_AT] + TINY[_AT + 2 :]  # TINY without its own --samples 8


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def _config(tmp_path, data_dir, samples, extra=()):
    argv = list(BASE)
    for n in samples:
        argv += ["--samples", str(n)]
    return parse_args(argv + ["--task", "gravity", "--family", "geometric", "--family", "plain", "--no-augment",
                              "--epochs", "1", "--out", str(tmp_path / "run"), "--data-dir", data_dir, *extra])


def test_cli_sizes_and_plan(tmp_path, data_dir):
    """Repeated --samples -> the distinct sizes ascending, one row per (size, family, seed); once -> an int, and
    the jobs are exactly those of earlier versions (no new key in their ids)."""
    config = _config(tmp_path, data_dir, [16, 8, 16])
    assert config.n_train == [8, 16] and train_sizes(config) == [8, 16]
    rows = plan(config)
    assert [(r.spec.n_train, r.spec.family) for r in rows] == [(8, "geometric"), (8, "plain"), (16, "geometric"),
                                                               (16, "plain")]
    assert {r.spec.n_pool for r in rows} == {16}
    assert len({r.row_id for r in rows}) == 4
    single = _config(tmp_path, data_dir, [8])
    assert single.n_train == 8
    spec = plan(single)[0].spec
    assert spec.n_pool is None and "n_pool" not in spec.to_dict()
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(JobSpec) if f.name != "n_pool"}
    assert JobSpec(**fields).job_id == spec.job_id
    with_pool = plan(config)[0].spec  # n=8 inside a pool of 16: another data set, so another job
    assert with_pool.job_id != dataclasses.replace(with_pool, n_pool=None).job_id


def test_bad_sizes_are_refused(tmp_path, data_dir):
    config = _config(tmp_path, data_dir, [8])
    for bad in ([], [8, 0], 0, "8"):
        with pytest.raises(ValueError, match="n_train must be a positive integer or a non-empty list"):
            check_config(dataclasses.replace(config, n_train=bad))
    proc = subprocess.run([sys.executable, "-m", "escnn_tensor.compare", "--samples", "8", "--samples", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--samples" in proc.stderr


def test_first_samples_of_a_split():
    x, y = torch.arange(10.0).reshape(5, 2), torch.arange(5.0)
    split = TensorSplit(x, y)
    part = first(split, 3)
    assert len(part) == 3 and torch.equal(part.inputs, x[:3]) and torch.equal(part.targets, y[:3])
    assert first(split, 5) is split

    class Lazy:
        def __len__(self):
            return 5

        def __getitem__(self, idx):
            return x[idx], y[idx]

    lazy = first(Lazy(), 2)
    assert len(lazy) == 2 and torch.equal(lazy[torch.tensor([1])][0], x[1:2])
    with pytest.raises(ValueError, match="fewer than the 6"):
        first(split, 6)


def test_rows_see_nested_training_sets_and_the_same_validation_and_test(tmp_path, data_dir, monkeypatch):
    """What each row trains and is tested on: the first n of one pool of 16, the same validation and test."""
    seen = {}

    def fake_run_row(row, splits, out, *args, **kwargs):
        seen[row.spec.n_train, row.spec.family] = splits
        return {"params": 0, "test_error": 1.0, "rotated_test_error": 1.0, "equivariance_error": 0.0,
                "seconds_per_epoch": 0.0}

    monkeypatch.setattr(runner, "run_row", fake_run_row)
    config = dataclasses.replace(_config(tmp_path, data_dir, [8, 16]), figures=False)
    runner.run_comparison(config, log=lambda s: None)
    assert sorted(seen) == [(8, "geometric"), (8, "plain"), (16, "geometric"), (16, "plain")]
    small, big = seen[8, "plain"], seen[16, "plain"]
    assert len(small.train) == 8 and len(big.train) == 16
    assert torch.equal(small.train.inputs, big.train.inputs[:8])
    for name in ("val", "test"):
        assert torch.equal(getattr(small, name).inputs, getattr(big, name).inputs)
        assert torch.equal(getattr(small, name).targets, getattr(big, name).targets)


def test_cli_end_to_end_with_two_sizes(tmp_path, data_dir):
    """``--samples 8 --samples 16``: rows with n_train 8 and 16, efficiency.png, and the table of error against
    size in results.md with each row's test error."""
    out = tmp_path / "run"
    argv = BASE + [
        "--samples", "8", "--samples", "16", "--task", "gravity", "--family", "geometric", "--family", "plain",
        "--no-augment", "--epochs", "1", "--out", str(out), "--data-dir", data_dir]
    proc = subprocess.run([sys.executable, "-m", "escnn_tensor.compare", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = rows_of(out)
    assert sorted((r["n_train"], r["label"]) for r in rows) == [(8, "geometric"), (8, "plain"), (16, "geometric"),
                                                                (16, "plain")]
    assert (out / "efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "results.md").read_text()
    assert "| task | model | family | n_train 8 | n_train 16 |" in table and "(efficiency.png)" in table
    for lab in ("geometric", "plain"):
        line = next(l for l in table.splitlines() if l.startswith(f"| gravity | resnet | {lab} | ") and "n_train" not in l)
        errs = {r["n_train"]: r["test_error"] for r in rows if r["label"] == lab}
        assert line.endswith(f"| {errs[8]:.3g} | {errs[16]:.3g} |")
        assert f"| gravity | resnet | {lab} (n_train 16) |" in table  # the main table: one line per size
    config = json.loads((out / "config.json").read_text())
    assert config["n_train"] == [8, 16]
