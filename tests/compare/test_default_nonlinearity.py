"""The geometric family's default nonlinearity is ``'gated_quadratic'`` (chosen on validation, docs/head_to_head.md);
a job states the nonlinearity it trains, so its id names one model whatever the default: jobs run before the change
(the gate, stated nowhere) keep their ids, and the stored rows of the default profile are found by ``--resume``."""
import json
from pathlib import Path

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
