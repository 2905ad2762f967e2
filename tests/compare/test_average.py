"""``--average``: plain+avg rows (the plain model wrapped in models.GroupAverage), exactly equivariant."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from escnn_tensor.compare.cli import parse_args
from escnn_tensor.compare.plan import JobSpec, label, plan, row_variants
from tests.compare.test_compare import TINY, rows_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def _argv(out, data_dir, *extra):
    return TINY + ["--task", "gravity", "--family", "plain", "--family", "geometric", "--no-augment", "--epochs", "1",
                   "--dtype", "float64", "--out", str(out), "--data-dir", data_dir, *extra]


def test_plan_and_ids(tmp_path, data_dir):
    config = parse_args(_argv(tmp_path / "run", data_dir, "--average"))
    assert config.average is True
    rows = plan(config)
    assert [r.label for r in rows] == ["plain", "geometric", "plain+avg"]
    avg = rows[-1].spec
    assert avg.family == "plain" and avg.average and "-avg-" in avg.job_id and "-avg-" in rows[-1].row_id
    assert avg.to_dict()["average"] is True and len({r.row_id for r in rows}) == 3
    # without --average: no such row, and the jobs are those of earlier versions (no new key in their ids)
    plain = plan(parse_args(_argv(tmp_path / "run", data_dir)))
    assert [r.label for r in plain] == ["plain", "geometric"]
    spec = plain[0].spec
    assert "average" not in spec.to_dict()
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(JobSpec) if f.name != "average"}
    assert JobSpec(**fields).job_id == spec.job_id
    assert label("plain", False, True) == "plain+avg" and row_variants(["plain"], True, True)[-1] == ("plain", False, True)


def test_cli_average_rows_are_equivariant(tmp_path, data_dir):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "escnn_tensor.compare", *_argv(out, data_dir, "--average")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["label"]: r for r in rows_of(out)}
    assert sorted(rows) == ["geometric", "plain", "plain+avg"]
    avg, plain = rows["plain+avg"], rows["plain"]
    assert avg["average"] is True and plain["average"] is False and rows["geometric"]["average"] is False
    assert avg["family"] == "plain" and avg["params"] == plain["params"]  # averaging adds no parameter
    assert avg["equivariance_error"] <= 1e-12 < 1e-3 < plain["equivariance_error"]  # float64, every element
    assert max(avg["rotated_test_errors"]) - min(avg["rotated_test_errors"]) <= 1e-10 * avg["test_error"]
    assert "| gravity | resnet | plain+avg |" in (out / "results.md").read_text()
    assert json.loads((out / "config.json").read_text())["average"] is True
