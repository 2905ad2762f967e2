"""The harness's edge cases (issue 20's harness items, issue 22's runtime options): bad command-line values end in
one line with exit status 2; a diverging run is written and shown as diverged; a corrupt checkpoint is reported in
one line and its job restarts from scratch; one run per output directory; Ctrl-C says how to continue and --resume
says what it continued; no progress bars when stderr is not a terminal; --device / --amp / compile recorded in the
rows."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from escnn_tensor._io import lock_directory
from escnn_tensor.compare import TrainingInterrupted, run_comparison
from escnn_tensor.compare.cli import main, parse_args

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--task", "gravity", "--model", "resnet", "--model-option", "num_blocks=1", "--params", "1600", "--samples", "8",
    "--val-samples", "4", "--test-samples", "4", "--size", "8", "--batch-size", "4", "--seeds", "1", "--lr", "3e-3",
    "--family", "plain", "--no-augment", "--threads", "1", "--device", "cpu",
]
TIMING = {"seconds_per_epoch"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def _rows(out):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in json.loads((Path(out) / "results.json").read_text())]


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------------------------------------------
# command-line values


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "inf"], "expected a finite positive float, got 'inf'"),
        (["--lr", "nan"], "expected a finite positive float, got 'nan'"),
        (["--lr=-1e-3"], "expected a finite positive float"),
        (["--seeds", "1,1"], "repeats seed(s) [1]"),
        (["--seeds", "0"], "--seeds 0 asks for no seeds: give a count >= 1"),
        (["--seeds=-2"], "--seeds -2 is a negative count: give a count >= 1"),
        (["--seeds", "0,-1"], "a comma list of seeds >= 0"),
        (["--model-option", "unet.num_downsamples=1"], "model unet is not in this run (models: resnet)"),
        (["--device", "gpu"], "--device takes auto, cpu, cuda or cuda:N, got 'gpu'"),
        (["--amp", "fp32"], "invalid choice: 'fp32'"),
        (["--shard", "3/2"], "--shard takes i/N"),
        (["--epochs", "0"], "positive int"),
    ],
)
def test_bad_values_end_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--model", "resnet", *argv])
    assert e.value.code == 2
    assert message in _one_line_error(capsys)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model-option", "num_blocks=-1"], "num_blocks must be an integer >= 0, got -1"),
        (["--family", "steerable", "--params", "20"], "params=20: no plain ResNet"),
        pytest.param(["--device", "cuda"], "--device cuda: no CUDA device is available",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
        (["--device", f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"], "--device cuda:"),
    ],
)
def test_bad_settings_end_in_one_line_before_training(argv, message, tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    assert main(TINY + ["--out", str(out), "--data-dir", data_dir, *argv]) == 2
    assert message in _one_line_error(capsys)
    assert not (out / "checkpoints").exists()  # refused before anything was trained


# ------------------------------------------------------------------------------------------------------------------
# a diverging run


def test_diverging_run_is_written_and_shown_as_diverged(tmp_path, data_dir):
    out = tmp_path / "run"
    config = parse_args(TINY + ["--lr", "1e30", "--epochs", "2", "--seeds", "2", "--out", str(out), "--data-dir",
                                data_dir, "--no-progress"])
    config.lrs = [1e30]  # only the diverging learning rate
    rows = run_comparison(config, log=lambda s: None)
    assert len(rows) == 2 and all(r["diverged"] for r in rows)
    assert all(not math.isfinite(r["test_error"]) for r in rows)
    table = (out / "results.md").read_text()
    line = next(l for l in table.splitlines() if l.startswith("| gravity | resnet | plain |"))
    assert "diverged (2 of 2)" in line
    written = json.loads((out / "results.json").read_text())
    assert [r["diverged"] for r in written] == [True, True] and [r["seed"] for r in written] == [0, 1]
    for name in ("errors.png", "samples_gravity.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"

    # with a finite candidate beside it, the finite one is chosen and the row is not diverged
    out2 = tmp_path / "run2"
    config = parse_args(TINY + ["--lr", "1e30", "--epochs", "2", "--out", str(out2), "--data-dir", data_dir,
                                "--no-progress"])
    assert config.lrs == [3e-3, 1e30]
    (row,) = run_comparison(config, log=lambda s: None)
    assert row["lr"] == 3e-3 and not row["diverged"] and math.isfinite(row["test_error"])
    assert not math.isfinite(row["lr_candidates"]["1e+30"])


# ------------------------------------------------------------------------------------------------------------------
# checkpoints


def _config(out, data_dir, *extra):
    return parse_args(TINY + ["--epochs", "3", "--dtype", "float64", "--out", str(out), "--data-dir", data_dir,
                              "--no-progress", *extra])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("uninterrupted")
    run_comparison(_config(out, data_dir), log=lambda s: None)
    return out


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped"])
def test_corrupt_checkpoint_is_reported_and_the_job_restarts(damage, tmp_path, data_dir, uninterrupted):
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        run_comparison(_config(out, data_dir), log=lambda s: None, interrupt_after=2)
    (ckpt,) = (out / "checkpoints").glob("*.pt")
    data = ckpt.read_bytes()
    if damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "truncated":
        ckpt.write_bytes(data[: len(data) // 2])
    else:
        ckpt.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    lines = []
    run_comparison(_config(out, data_dir, "--resume"), log=lines.append)
    (report,) = [l for l in lines if "restarts from scratch" in l]
    assert str(ckpt) in report and "corrupt" in report and "\n" not in report
    assert _rows(out) == _rows(uninterrupted)  # from scratch, deterministic: the uninterrupted numbers


def test_resume_says_which_jobs_it_continued(tmp_path, data_dir, uninterrupted):
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        run_comparison(_config(out, data_dir), log=lambda s: None, interrupt_after=2)
    lines = []
    run_comparison(_config(out, data_dir, "--resume"), log=lines.append)
    (job,) = [p.stem for p in (out / "checkpoints").glob("*.pt")]
    assert f"[resume] {job}: continues from its checkpoint at epoch 2 of 3" in lines
    assert _rows(out) == _rows(uninterrupted)


def test_resume_takes_finished_rows_from_their_job_files(tmp_path, data_dir, uninterrupted):
    """A finished row's job file is enough to resume (checkpoints are large and not kept with the results): the row
    is read, not retrained, and the results equal the uninterrupted run's, timings included."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out, ignore=shutil.ignore_patterns(".lock"))
    shutil.rmtree(out / "checkpoints")
    lines = []
    run_comparison(_config(out, data_dir, "--resume"), log=lines.append)
    (row,) = [p.stem for p in (out / "jobs").glob("*.json")]
    assert f"[resume] {row}: finished, read from {out / 'jobs' / (row + '.json')}" in lines
    assert not list((out / "checkpoints").glob("*.pt"))  # nothing was trained
    assert json.loads((out / "results.json").read_text()) == json.loads((uninterrupted / "results.json").read_text())


@pytest.mark.parametrize("change", ["other-spec", "no-prediction", "rollout-asked", "unreadable"])
def test_resume_retrains_a_row_whose_job_file_does_not_match(change, tmp_path, data_dir, uninterrupted):
    """finished_row refuses a job file of another row, one without its prediction, one without the rollout errors
    asked for, and an unreadable one: such rows are trained again, never taken as they are."""
    import shutil

    from escnn_tensor.compare.execute import finished_row
    from escnn_tensor.compare.plan import plan

    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out, ignore=shutil.ignore_patterns(".lock"))
    (r,) = plan(_config(out, data_dir))
    path = out / "jobs" / f"{r.row_id}.json"
    assert finished_row(out, r, None) is not None  # the control: the untouched job file is taken
    steps = None
    if change == "other-spec":
        job = json.loads(path.read_text())
        job["jobs"][0]["spec"]["epochs"] = 2
        path.write_text(json.dumps(job))
    elif change == "no-prediction":
        for p in (out / "predictions").glob("*.pt"):
            p.unlink()
    elif change == "rollout-asked":
        steps = 3
    else:
        path.write_text(path.read_text()[:40])
    assert finished_row(out, r, steps) is None
    if change != "rollout-asked":  # gravity has no trajectories: the harness never asks it for rollouts
        lines = []
        run_comparison(_config(out, data_dir, "--resume"), log=lines.append)
        assert not [l for l in lines if "finished, read from" in l]
        assert _rows(out) == _rows(uninterrupted)


# ------------------------------------------------------------------------------------------------------------------
# one run per output directory


def test_a_second_run_on_a_busy_directory_is_refused(tmp_path, data_dir, uninterrupted, capsys):
    before = {p: p.read_bytes() for p in Path(uninterrupted).rglob("*") if p.is_file() and p.name != ".lock"}
    with lock_directory(uninterrupted, owner="a run in progress"):
        assert main(TINY + ["--epochs", "3", "--out", str(uninterrupted), "--data-dir", data_dir]) == 2
        err = _one_line_error(capsys)
        assert "is in use by" in err and "a run in progress" in err
        with pytest.raises(SystemExit) as e:
            main(["merge", str(uninterrupted), "--out", str(uninterrupted)])
        assert e.value.code == 2 and "is in use by" in _one_line_error(capsys)
    after = {p: p.read_bytes() for p in Path(uninterrupted).rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before  # nothing the finished run wrote was touched


# ------------------------------------------------------------------------------------------------------------------
# Ctrl-C, and progress bars in a log file


def test_ctrl_c_says_how_to_continue_and_no_bars_outside_a_terminal(tmp_path, data_dir, uninterrupted):
    out = tmp_path / "run"
    argv = [a for a in TINY if a != "--no-progress"] + ["--epochs", "3", "--dtype", "float64", "--out", str(out),
                                                         "--data-dir", data_dir]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([sys.executable, "-m", "escnn_tensor.compare", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list((out / "checkpoints").glob("*.pt")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run ended before it could be interrupted")
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted; continue with --resume" in stderr and "Traceback" not in stderr
    assert "\r" not in stderr  # stderr is a pipe: no progress bars
    run_comparison(parse_args(argv + ["--resume", "--no-progress"]), log=lambda s: None)
    assert _rows(out) == _rows(uninterrupted)


# ------------------------------------------------------------------------------------------------------------------
# device, amp, compile


def test_rows_record_the_runtime(tmp_path, data_dir, uninterrupted):
    (row,) = _rows(uninterrupted)
    assert (row["device"], row["world_size"], row["amp"], row["compile"]) == ("cpu", 1, "off", False)
    assert (row["group"], row["average"], row["diverged"], row["rollout_errors"]) == ("D4", False, False, None)
    job = json.loads(next((Path(uninterrupted) / "jobs").glob("*.json")).read_text())
    assert job["row"] == {**row, "seconds_per_epoch": job["row"]["seconds_per_epoch"]}
    assert [h["epoch"] for h in job["jobs"][0]["history"]] == [1, 2, 3]


def test_amp_bf16_trains_in_bf16(tmp_path, data_dir):
    rows = {}
    for amp in ("off", "bf16"):
        config = parse_args(TINY + ["--epochs", "1", "--amp", amp, "--out", str(tmp_path / amp), "--data-dir",
                                    data_dir, "--no-progress"])
        (rows[amp],) = run_comparison(config, log=lambda s: None)
    assert rows["bf16"]["amp"] == "bf16" and math.isfinite(rows["bf16"]["test_error"])
    assert rows["bf16"]["test_error"] != rows["off"]["test_error"]  # the step ran in bf16
    assert abs(rows["bf16"]["test_error"] - rows["off"]["test_error"]) < 0.1 * rows["off"]["test_error"]


def test_compiled_training_equals_eager(tmp_path, data_dir):
    """compile='eager' captures the one graph of torch.compile(fullgraph=True) (it fails on a graph break) and
    runs it without code generation: the numbers of the uncompiled run, to round-off (float64)."""
    rows = {}
    for compile in (False, "eager"):
        config = parse_args(TINY + ["--epochs", "1", "--dtype", "float64", "--out", str(tmp_path / str(compile)),
                                    "--data-dir", data_dir, "--no-progress"])
        config.families, config.compile = ["geometric"], compile
        (rows[compile],) = run_comparison(config, log=lambda s: None)
    assert rows["eager"]["compile"] is True and rows[False]["compile"] is False
    assert rows["eager"]["test_error"] == pytest.approx(rows[False]["test_error"], rel=1e-9)


def test_a_run_of_another_sweep_does_not_replace_finished_results(tmp_path, data_dir, uninterrupted, capsys):
    before = {p: p.read_bytes() for p in Path(uninterrupted).rglob("*") if p.is_file() and p.name != ".lock"}
    assert main(TINY + ["--epochs", "2", "--dtype", "float64", "--out", str(uninterrupted), "--data-dir",
                        data_dir]) == 2
    err = _one_line_error(capsys)
    assert "holds the results of another run" in err and "epochs" in err
    after = {p: p.read_bytes() for p in Path(uninterrupted).rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before
