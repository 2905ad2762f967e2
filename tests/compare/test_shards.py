"""--shard i/N and the merge subcommand: the shards of a sweep are disjoint and cover it, and merged they give the
results of the unsplit run (every number but the timings), through the command line."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from escnn_tensor.compare import run_comparison
from escnn_tensor.compare.cli import main, parse_args
from escnn_tensor.compare.plan import plan, shard

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--task", "gravity", "--model", "resnet", "--model-option", "num_blocks=1", "--params", "1600", "--samples", "8",
    "--val-samples", "4", "--test-samples", "4", "--size", "8", "--batch-size", "4", "--seeds", "2", "--lr", "3e-3",
    "--epochs", "1", "--family", "geometric", "--family", "plain", "--augment", "--no-progress", "--threads", "1",
]
TIMING = {"seconds_per_epoch"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def _rows(out):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in json.loads((Path(out) / "results.json").read_text())]


def _table(out):
    """results.md without the timings (the total and the s / epoch column)."""
    text = (Path(out) / "results.md").read_text()
    text = re.sub(r"total [0-9.]+ min", "total T min", text)
    return [re.sub(r"\| [^|]* \|$", "| T |", line) if line.startswith("| gravity") else line
            for line in text.splitlines()]


def test_shards_are_disjoint_and_cover_the_plan():
    config = parse_args(TINY + ["--seeds", "5", "--out", "x"])
    rows = plan(config)
    for n in (1, 2, 3, 7, 20):
        parts = [shard(rows, i, n) for i in range(1, n + 1)]
        ids = [r.row_id for p in parts for r in p]
        assert sorted(ids) == sorted(r.row_id for r in rows) and len(set(ids)) == len(rows)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        for p in parts:  # each shard in plan order
            assert [r.index for r in p] == sorted(r.index for r in p)
    # deterministic by row id: the same shards whatever the order of the command line's lists
    other = plan(parse_args(TINY + ["--seeds", "4,3,2,1,0", "--out", "x"]))
    assert {r.row_id for r in shard(other, 2, 3)} == {r.row_id for r in shard(rows, 2, 3)}


def test_merged_shards_equal_the_unsplit_run(tmp_path, data_dir):
    whole = tmp_path / "whole"
    run_comparison(parse_args(TINY + ["--out", str(whole), "--data-dir", data_dir]), log=lambda s: None)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    for i in (1, 2):
        proc = subprocess.run([sys.executable, "-m", "escnn_tensor.compare", "run", *TINY, "--shard", f"{i}/2",
                               "--out", str(tmp_path / f"shard{i}"), "--data-dir", data_dir], cwd=ROOT,
                              capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"shard {i}/2: 3 of 6 rows" in proc.stdout
    assert len(_rows(tmp_path / "shard1")) == len(_rows(tmp_path / "shard2")) == 3
    merged = tmp_path / "merged"
    proc = subprocess.run([sys.executable, "-m", "escnn_tensor.compare", "merge", str(tmp_path / "shard2"),
                           str(tmp_path / "shard1"), "--out", str(merged)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _rows(merged) == _rows(whole)
    assert _table(merged) == _table(whole)
    assert sorted(p.name for p in merged.glob("*.png")) == sorted(p.name for p in whole.glob("*.png"))
    assert sorted(p.name for p in (merged / "jobs").glob("*.json")) == sorted(
        p.name for p in (whole / "jobs").glob("*.json"))
    assert "6 rows merged from 2 directories" in proc.stdout


def test_merge_refuses_missing_rows_and_other_sweeps(tmp_path, data_dir, capsys):
    one = tmp_path / "one"
    run_comparison(parse_args(TINY + ["--seeds", "1", "--family", "plain", "--no-augment", "--shard", "1/2", "--out",
                                      str(one), "--data-dir", data_dir]), log=lambda s: None)
    with pytest.raises(SystemExit) as e:  # shard 2/2 was not run
        main(["merge", str(one), "--out", str(tmp_path / "m")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rows missing" in err and "--partial" in err
    assert main(["merge", str(one), "--out", str(tmp_path / "m"), "--partial", "--no-figures"]) == 0
    assert len(_rows(tmp_path / "m")) == 1
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((one / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "epochs": 3}))
    with pytest.raises(SystemExit) as e:
        main(["merge", str(one), str(other), "--out", str(tmp_path / "m2")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another sweep" in err and "epochs" in err
    with pytest.raises(SystemExit) as e:
        main(["merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "m3")])
    assert e.value.code == 2 and "no config.json" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_bad_shard_is_refused(text, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["--shard", text])
    assert e.value.code == 2 and "--shard takes i/N" in capsys.readouterr().err
