"""escnn_tensor.compare: the harness end to end (CLI), checkpoint/resume (bit-identical after an interruption and
after a real kill), augmentation, metrics, model selection and bad command lines."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from escnn.nn import GeometricTensor

from escnn_tensor._io import load_checkpoint
from escnn_tensor.compare import TrainingInterrupted, augment, relative_error, run_comparison
from escnn_tensor.compare.cli import parse_args
from escnn_tensor.compare.runner import ROW_FIELDS
from escnn_tensor.compare.training import JobSpec, make_splits, rotated_errors, train_job
from escnn_tensor.data import get_task
from escnn_tensor.groups import group_elements, hyperoctahedral_gspace

ROOT = Path(__file__).resolve().parents[2]
# a tiny run: ResNet with one block, 8x8 grids, a few samples and epochs
TINY = [
    "--model", "resnet", "--model-option", "num_blocks=1", "--params", "1600", "--samples", "8", "--val-samples", "4",
    "--test-samples", "4", "--size", "8", "--batch-size", "4", "--seeds", "1", "--lr", "3e-3", "--no-progress",
    "--device", "cpu",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def rows_of(out):
    return json.loads((Path(out) / "results.json").read_text())


# ------------------------------------------------------------------------------------------------------------------
# the command line, end to end


def test_cli_end_to_end(tmp_path, data_dir):
    out = tmp_path / "run"
    argv = TINY + ["--task", "gravity", "--task", "tidal", "--epochs", "2", "--augment", "--out", str(out),
                   "--data-dir", data_dir]
    proc = subprocess.run([sys.executable, "-m", "escnn_tensor.compare", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = rows_of(out)
    assert [(r["task"], r["label"]) for r in rows] == [
        (t, f) for t in ("gravity", "tidal") for f in ("geometric", "steerable", "plain", "plain+aug")
    ]
    for r in rows:
        assert set(ROW_FIELDS) <= set(r)
        assert abs(r["params"] - 1600) <= 160
        assert 0 < r["test_error"] <= r["rotated_test_error"] + 1e-12
        assert len(r["rotated_test_errors"]) == 8 and r["rotated_test_error"] == max(r["rotated_test_errors"])
        assert r["seconds_per_epoch"] > 0 and r["best_epoch"] in (1, 2)
    eq = {r["task"] + r["label"]: r["equivariance_error"] for r in rows}
    for t in ("gravity", "tidal"):
        assert eq[t + "geometric"] < 1e-10 and eq[t + "steerable"] < 1e-5
        assert eq[t + "plain"] > 1e-3 and eq[t + "plain+aug"] > 1e-3
    # the table: one line per row, and the same numbers as results.json
    table = (out / "results.md").read_text()
    for r in rows:
        line = next(l for l in table.splitlines() if l.startswith(f"| {r['task']} | resnet | {r['label']} |"))
        assert f"{r['test_error']:.3g}" in line and f"{r['params']:,}" in line
    assert table in proc.stdout  # printed at the end, with where the figures are
    for name in ("errors.png", "samples_gravity.png", "samples_tidal.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name})" in table  # linked from the table


# ------------------------------------------------------------------------------------------------------------------
# resume


def _config(out, data_dir, extra=()):
    return parse_args(TINY + ["--task", "gravity", "--epochs", "4", "--dtype", "float64", "--augment", "--out",
                              str(out), "--data-dir", data_dir, "--threads", "1", *extra])


def _final_states(out):
    states = {}
    for f in sorted((Path(out) / "checkpoints").glob("*.pt")):
        ck = load_checkpoint(f)
        states[f.name] = (ck["epoch"], ck["model"], ck["best"]["model"], ck["optimizer"]["state"])
    return states


def _assert_same_run(a, b):
    sa, sb = _final_states(a), _final_states(b)
    assert sa.keys() == sb.keys() and len(sa) == 4
    for name in sa:
        (ea, ma, ba, oa), (eb, mb, bb, ob) = sa[name], sb[name]
        assert ea == eb == 4
        for key in ma:
            assert torch.equal(ma[key], mb[key]), (name, key)
            assert torch.equal(ba[key], bb[key]), (name, key)
        for i in oa:
            for key in oa[i]:
                assert torch.equal(oa[i][key], ob[i][key]), (name, "adam", i, key)
    ra, rb = rows_of(a), rows_of(b)
    timing = {"seconds_per_epoch"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in ra] == [
        {k: v for k, v in r.items() if k not in timing} for r in rb
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("uninterrupted")
    run_comparison(_config(out, data_dir), log=lambda s: None)
    return out


def test_resume_after_interruption_is_bit_identical(tmp_path, data_dir, uninterrupted):
    out = tmp_path / "interrupted"
    config = _config(out, data_dir)
    interruptions = 0
    while True:  # every job is interrupted once, after epoch 2, and continued by the next call
        try:
            run_comparison(config, log=lambda s: None, interrupt_after=2)
            break
        except TrainingInterrupted:
            interruptions += 1
            config.resume = True
    assert interruptions == 4
    _assert_same_run(uninterrupted, out)


def test_run_without_checkpoints_writes_none_and_gives_the_same_rows(tmp_path, data_dir, uninterrupted):
    """``checkpoints=False`` (``--no-checkpoints``): no file under checkpoints/, every number as with them."""
    import dataclasses

    out = tmp_path / "no-checkpoints"
    run_comparison(dataclasses.replace(_config(out, data_dir), checkpoints=False), log=lambda s: None)
    assert list((out / "checkpoints").iterdir()) == []
    assert list((Path(uninterrupted) / "checkpoints").iterdir())  # the run it is compared with did write them
    timing = {"seconds_per_epoch"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows_of(out)] == [
        {k: v for k, v in r.items() if k not in timing} for r in rows_of(uninterrupted)
    ]
    assert parse_args(_argv(out, data_dir) + ["--no-checkpoints"]).checkpoints is False
    assert parse_args(_argv(out, data_dir)).checkpoints is True


def test_resume_after_kill_is_bit_identical(tmp_path, data_dir, uninterrupted):
    """A real process, killed (SIGKILL) as soon as a checkpoint exists, then continued with --resume (in this
    process, with the configuration the same command line gives)."""
    out = tmp_path / "killed"
    argv = _argv(out, data_dir)
    cmd = [sys.executable, "-m", "escnn_tensor.compare", *argv]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    ckpts = out / "checkpoints"
    while time.time() < deadline and proc.poll() is None:
        if ckpts.exists() and any(ckpts.glob("*.pt")):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "results.md").exists()
    killed_in = [load_checkpoint(f)["epoch"] for f in (out / "checkpoints").glob("*.pt")]
    assert killed_in and min(killed_in) < 4  # stopped mid-training
    run_comparison(parse_args(argv + ["--resume"]), log=lambda s: None)
    _assert_same_run(uninterrupted, out)


def _argv(out, data_dir):
    return TINY + ["--task", "gravity", "--epochs", "4", "--dtype", "float64", "--augment", "--out", str(out),
                   "--data-dir", data_dir, "--threads", "1"]


def test_cli_and_python_configs_agree(tmp_path, data_dir):
    """The kill test compares a CLI run with the Python run of the same arguments: same configuration."""
    assert _config(tmp_path, data_dir) == parse_args(_argv(tmp_path, data_dir))


# ------------------------------------------------------------------------------------------------------------------
# augmentation, metrics, model selection


def test_augmentation_moves_input_and_target_by_the_same_element():
    task = get_task("gravity")
    gs = hyperoctahedral_gspace(2)
    data = task.make(16, 8, seed=4)
    in_type, out_type = task.in_type(gs), task.out_type(gs)
    x, y, index = augment(data.inputs, data.targets, in_type, out_type, torch.Generator().manual_seed(0))
    assert len(index.unique()) > 3  # several different elements
    elements = group_elements(gs)
    for i in range(16):
        g = elements[index[i]]
        assert torch.equal(x[i : i + 1], GeometricTensor(data.inputs[i : i + 1], in_type).transform(g).tensor)
        assert torch.equal(y[i : i + 1], GeometricTensor(data.targets[i : i + 1], out_type).transform(g).tensor)
    # and the pairs are still pairs of the task: the field of the moved density is the moved field
    assert torch.allclose(task.solve(x), y, rtol=0, atol=1e-12 * y.abs().max())
    moved = [i for i in range(16) if not torch.equal(x[i], data.inputs[i])]
    assert len(moved) >= 8


def test_augmented_training_sees_other_samples(tmp_path, data_dir):
    splits = make_splits("gravity", 8, 4, 4, 8, 0, data_dir)
    states = []
    for aug in (False, True):
        spec = JobSpec(task="gravity", model="resnet", family="plain", augment=aug, seed=0, lr=3e-3, params=None,
                       epochs=1, batch_size=4, dtype="float64", size=8, n_train=8, n_val=4, n_test=4,
                       model_options=(("num_blocks", 1),))
        predictor, summary = train_job(spec, splits, tmp_path / f"{aug}.pt")
        states.append(summary["history"][0]["train_loss"])
    assert states[0] != states[1]


def test_relative_error_is_the_whole_set_ratio():
    g = torch.Generator().manual_seed(0)
    p, t = torch.randn(5, 2, 4, 4, generator=g), torch.randn(5, 2, 4, 4, generator=g)
    a, b = p.double().numpy(), t.double().numpy()
    expected = float(((a - b) ** 2).sum() / (b**2).sum())
    assert relative_error(p, t) == pytest.approx(expected, rel=1e-12)
    assert relative_error(t, t) == 0
    with pytest.raises(ValueError, match="shape"):
        relative_error(p, t[:, :1])


def test_rotated_errors_of_an_equivariant_map_are_all_equal():
    task = get_task("gravity")
    gs = hyperoctahedral_gspace(2)
    data = task.make(4, 8, seed=1)

    class Solver(torch.nn.Module):  # the exact (equivariant) physics, plus a perturbation that is not
        def __init__(self, eps):
            super().__init__()
            self.eps = eps
            self.w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
            self.out_type = task.out_type(gs)

        def forward(self, x):
            y = task.solve(x.tensor)
            ramp = torch.arange(x.tensor.shape[-1], dtype=torch.float64)  # along the last axis: not symmetric
            y[:, 0] += self.eps * ramp * x.tensor[:, 0]
            return GeometricTensor(y, self.out_type)

    errs = rotated_errors(Solver(0.0), data.inputs, data.targets, task.in_type(gs), task.out_type(gs))
    assert max(errs) < 1e-20
    errs = rotated_errors(Solver(1e-3), data.inputs, data.targets, task.in_type(gs), task.out_type(gs))
    assert max(errs) > 1e-9 and np.ptp(errs) > 0.1 * max(errs)


def test_learning_rate_chosen_on_validation(tmp_path, data_dir):
    config = parse_args(TINY + ["--task", "gravity", "--family", "plain", "--no-augment", "--epochs", "2", "--lr",
                                "1e-5", "--lr", "3e-3", "--out", str(tmp_path), "--data-dir", data_dir])
    (row,) = run_comparison(config, log=lambda s: None)
    assert set(row["lr_candidates"]) == {"1e-05", "0.003"}
    assert row["lr"] == float(min(row["lr_candidates"], key=row["lr_candidates"].get))
    assert row["val_error"] == min(row["lr_candidates"].values())


# ------------------------------------------------------------------------------------------------------------------
# bad command lines


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "x"], "--seeds takes a count"),
        (["--task", "weather"], "unknown task"),
        (["--model-option", "num_downsamples=2", "--model", "resnet"], "none of the models"),
        (["--model-option", "oops"], "key=value"),
        (["--epochs", "0"], "positive int"),
    ],
)
def test_bad_command_lines(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err


def test_unreachable_params_is_a_clear_error(tmp_path, data_dir):
    config = parse_args(TINY + ["--task", "gravity", "--family", "steerable", "--params", "20", "--out",
                                str(tmp_path), "--data-dir", data_dir])
    with pytest.raises(ValueError, match="params=20"):
        run_comparison(config, log=lambda s: None)
    assert not list((tmp_path / "checkpoints").glob("*"))  # refused before any training


def test_bad_model_options_refused_before_training(tmp_path, data_dir):
    config = parse_args(TINY + ["--task", "gravity", "--model-option", "num_blocks=-1", "--out", str(tmp_path),
                                "--data-dir", data_dir])
    with pytest.raises(ValueError, match="num_blocks must be an integer >= 0"):
        run_comparison(config, log=lambda s: None)
    assert not list((tmp_path / "checkpoints").glob("*"))


def test_family_options_go_only_to_the_families_that_use_them(tmp_path, data_dir):
    """Issue 20 item 8: a model constructor refuses an option its family ignores, so the harness passes each family
    only the options it uses (models.TensorFieldModel.options_for): --model-option nonlinearity=... runs every
    family, the geometric one with the quadratic gate, the others as without it."""
    config = parse_args(TINY + ["--task", "gravity", "--epochs", "1", "--model-option", "nonlinearity=gated_quadratic",
                                "--out", str(tmp_path), "--data-dir", data_dir])
    assert config.model_options["resnet"]["nonlinearity"] == "gated_quadratic"
    rows = run_comparison(config, log=lambda s: None)
    assert [r["label"] for r in rows] == ["geometric", "steerable", "plain", "plain+aug"]
    assert all(np.isfinite(r["test_error"]) for r in rows)
    from escnn_tensor.compare.training import build_predictor

    splits = make_splits("gravity", 8, 4, 4, 8, data_seed=0, cache_dir=data_dir)
    spec = dict(task="gravity", model="resnet", augment=False, seed=0, lr=1e-3, params=1600, epochs=1, batch_size=4,
                dtype="float32", size=8, n_train=8, n_val=4, n_test=4,
                model_options=(("nonlinearity", "gated_quadratic"), ("num_blocks", 1)))
    geometric = build_predictor(JobSpec(family="geometric", **spec), splits).model
    steerable = build_predictor(JobSpec(family="steerable", **spec), splits).model
    assert geometric.options["nonlinearity"] == "gated_quadratic" and "nonlinearity" not in steerable.options


def test_family_option_no_family_of_the_run_uses_is_refused(tmp_path, data_dir):
    config = parse_args(TINY + ["--task", "gravity", "--family", "steerable", "--family", "plain", "--model-option",
                                "nonlinearity=gated_quadratic", "--out", str(tmp_path), "--data-dir", data_dir])
    with pytest.raises(ValueError, match=r"^model option\(s\) nonlinearity='gated_quadratic' of resnet: no family of "
                                         r"this run \(steerable, plain\) uses them"):
        run_comparison(config, log=lambda s: None)
    assert not list((tmp_path / "checkpoints").glob("*"))
