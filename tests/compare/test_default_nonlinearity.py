"""The geometric family's default nonlinearity is ``'gated_quadratic'`` (chosen on validation, docs/head_to_head.md);
a job states the nonlinearity it trains, so its id names one model whatever the default: jobs run before the change
(the gate, stated nowhere) keep their ids, and the stored rows of the default profile are found by ``--resume``; a
run started before the change (its config.json says nothing of the default) is continued by ``--resume`` and merged
with its own models, the gate, and is not overwritten by a run without ``--resume``."""
import json
from pathlib import Path

import pytest

import escnn_tensor as et
from escnn_tensor.compare.cli import parse_args
from escnn_tensor.compare.plan import JobSpec, plan, stated_options
from escnn_tensor.models import MODELS, ResNet
from escnn_tensor.models._families import OnTensors
from escnn_tensor.nn import GatedNonLinearity, GatedQuadratic

ROOT = Path(__file__).resolve().parents[2]


def _stored_ids(name):
    return {p.stem for p in (ROOT / "docs" / "results" / name / "jobs").glob("*.json")}


def test_models_default_to_the_quadratic_gate():
    gs = et.hyperoctahedral_gspace(2)
    t_in, t_out = et.tensor_type(gs, [(0, 1, 1)]), et.tensor_type(gs, [(1, 1, 1)])

    def layers(**options):  # the model's own layers (GatedQuadratic holds a GatedNonLinearity inside)
        model = ResNet(t_in, t_out, "geometric", width=2, num_blocks=1, **options)
        return {type(m.module) for m in model.modules() if isinstance(m, OnTensors)}

    assert GatedQuadratic in layers() and GatedNonLinearity not in layers()
    assert GatedNonLinearity in layers(nonlinearity="gated") and GatedQuadratic not in layers(nonlinearity="gated")


def test_jobs_state_the_geometric_nonlinearity():
    assert stated_options("resnet", "geometric", {"num_blocks": 2}) == {"num_blocks": 2,
                                                                        "nonlinearity": "gated_quadratic"}
    assert stated_options("unet", "geometric", {}) == {"nonlinearity": "gated_quadratic"}
    assert stated_options("resnet", "geometric", {"nonlinearity": "gated"}) == {"nonlinearity": "gated"}
    assert stated_options("resnet", "plain", {"num_blocks": 2}) == {"num_blocks": 2}  # not the plain family's option
    assert set(MODELS) >= {"resnet", "unet", "dilresnet"}
    rows = plan(parse_args(["--quick", "--task", "gravity", "--out", "unused"]))
    options = {r.spec.family + ("+aug" if r.spec.augment else ""): dict(r.spec.model_options) for r in rows}
    assert options["geometric"]["nonlinearity"] == "gated_quadratic"
    assert all("nonlinearity" not in o for f, o in options.items() if f != "geometric")


def test_the_gate_keeps_the_ids_it_had_as_default():
    """``to_dict`` leaves out ``nonlinearity='gated'`` of a geometric job: the same dict, so the same id, as a job
    made when the gate was the default and no option was stated; other values and families are written."""
    base = dict(task="gravity", model="resnet", family="geometric", augment=False, seed=0, lr=0.01, params=6000,
                epochs=3, batch_size=8, dtype="float32", size=16, n_train=32, n_val=8, n_test=8)
    legacy = JobSpec(**base, model_options=(("num_blocks", 2),))
    gate = JobSpec(**base, model_options=(("nonlinearity", "gated"), ("num_blocks", 2)))
    quad = JobSpec(**base, model_options=(("nonlinearity", "gated_quadratic"), ("num_blocks", 2)))
    assert gate.job_id == legacy.job_id and gate.to_dict() == legacy.to_dict()
    assert quad.job_id != legacy.job_id and quad.to_dict()["model_options"]["nonlinearity"] == "gated_quadratic"
    plain = dict(base, family="plain")
    assert JobSpec(**plain, model_options=(("nonlinearity", "gated"),)).to_dict()["model_options"] == {
        "nonlinearity": "gated"}  # as written before: a plain job's ids do not change either


def test_stored_default_profile_rows_keep_their_ids():
    """The default profile's rows stored in docs/results (run at 3d0069a, when the gate was the default) are the
    rows the commands plan today: the gate's with ``--model-option nonlinearity=gated``, the quadratic gate's with
    no option (the default profile itself)."""
    gated = _stored_ids("profile-gated")
    quad = _stored_ids("profile-gq")
    assert len(gated) >= 8 and len(quad) >= 7
    with_gate = {r.row_id for r in plan(parse_args(["--out", "unused", "--model-option", "nonlinearity=gated"]))}
    default = {r.row_id for r in plan(parse_args(["--out", "unused"]))}
    stored_gated_geometric = {i for i in gated if "-geometric-" in i}
    assert stored_gated_geometric <= with_gate
    assert quad <= default
    assert not (stored_gated_geometric & default)
    config = json.loads((ROOT / "docs" / "results" / "profile-gq" / "config.json").read_text())
    assert config["model_options"]["resnet"]["nonlinearity"] == "gated_quadratic"


# ---- runs started before the change: --resume and merge keep their models ----------------------------------------

TINY = ["--task", "gravity", "--model", "resnet", "--model-option", "num_blocks=1", "--params", "1600", "--samples",
        "8", "--val-samples", "4", "--test-samples", "4", "--size", "8", "--batch-size", "4", "--seeds", "1", "--lr",
        "3e-3", "--epochs", "1", "--family", "geometric", "--no-progress", "--threads", "1"]


def test_a_config_json_of_before_the_change_reads_as_the_gate():
    from escnn_tensor.compare.config import config_from_dict

    stored = json.loads((ROOT / "docs" / "results" / "profile-gated" / "config.json").read_text())
    assert "default_nonlinearity" not in stored  # written at 3d0069a
    assert config_from_dict(stored).default_nonlinearity == "gated"
    assert config_from_dict({**stored, "default_nonlinearity": None}).default_nonlinearity is None
    assert config_from_dict({**stored, "default_nonlinearity": "gated_quadratic"}).default_nonlinearity == \
        "gated_quadratic"


def test_merge_of_the_stored_gate_profile_finds_every_row(tmp_path):
    """The default profile run with the gate (docs/results/profile-gated, config.json of 3d0069a) merges under today's
    code: its 48 rows are the ones planned, none missing."""
    from escnn_tensor.compare.merge import merge

    rows = merge([str(ROOT / "docs" / "results" / "profile-gated")], str(tmp_path / "merged"), figures=False,
                 log=lambda s: None)
    stored = json.loads((ROOT / "docs" / "results" / "profile-gated" / "results.json").read_text())
    assert len(rows) == len(stored) == 48
    assert [r["job"] for r in rows] == [r["job"] for r in stored]
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["default_nonlinearity"] == "gated"


def test_resume_of_a_run_of_before_the_change_continues_it(tmp_path):
    """A run whose config.json has no default_nonlinearity (written before the change, when the gate was the default):
    --resume plans its gate rows (found: nothing is trained again) and says so in one line; without --resume the
    same command is refused (it would train other models over its results); a new run records the default it used."""
    import dataclasses

    from escnn_tensor.compare import run_comparison
    from escnn_tensor.compare.config import ConfigError

    out, data = tmp_path / "run", str(tmp_path / "data")
    old = dataclasses.replace(parse_args(TINY + ["--out", str(out), "--data-dir", data]), default_nonlinearity="gated")
    first = run_comparison(old, log=lambda s: None)
    config = json.loads((out / "config.json").read_text())
    assert config["default_nonlinearity"] == "gated"
    del config["default_nonlinearity"]  # as written before the change
    (out / "config.json").write_text(json.dumps(config))
    jobs = sorted(p.name for p in (out / "jobs").iterdir())

    lines = []
    again = run_comparison(parse_args(TINY + ["--out", str(out), "--data-dir", data, "--resume"]), log=lines.append)
    assert [r["job"] for r in again] == [r["job"] for r in first]
    assert [r["test_error"] for r in again] == [r["test_error"] for r in first]
    assert sorted(p.name for p in (out / "jobs").iterdir()) == jobs  # no other rows trained
    assert any("nonlinearity='gated'" in line and "--resume" in line for line in lines)
    assert json.loads((out / "config.json").read_text())["default_nonlinearity"] == "gated"

    with pytest.raises(ConfigError, match="default_nonlinearity"):
        run_comparison(parse_args(TINY + ["--out", str(out), "--data-dir", data]), log=lambda s: None)

    fresh = tmp_path / "fresh"
    run_comparison(parse_args(TINY + ["--out", str(fresh), "--data-dir", data]), log=lambda s: None)
    assert json.loads((fresh / "config.json").read_text())["default_nonlinearity"] == "gated_quadratic"
