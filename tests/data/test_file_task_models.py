"""Tasks from files with the models: the three families build on the subgroup of a rectangular grid and the
geometric family is equivariant there; the geometric family learns density -> (gradient, Hessian) from a file."""
from __future__ import annotations

import pytest
import torch
from escnn.nn import GeometricTensor

from escnn_tensor.compare.training import JobSpec, evaluate, train_job
from escnn_tensor.data import load_splits, read_spec
from escnn_tensor.models import MODELS
from escnn_tensor.testing import equivariance_errors

from .files import density_fields, write_the_well


def _spec(tmp_path, grid, n_traj, seed=0):
    write_the_well(tmp_path / "d.h5", density_fields(grid, n_traj=n_traj, n_time=1, seed=seed))
    spec = tmp_path / "s.toml"
    spec.write_text('name = "deriv"\nformat = "the_well"\npath = "d.h5"\ninputs = ["density"]\n'
                    'targets = ["gradient", "hessian"]\ntime_offset = 0\n')
    return spec


@pytest.mark.parametrize("family", ["geometric", "steerable", "plain"])
def test_families_on_the_flips_of_a_16x24_grid(tmp_path, family):
    splits = load_splits(_spec(tmp_path, (16, 24), 5), 3, 1, 1)
    assert splits.group == "D2" and splits.grid == (16, 24) and len(splits.gspace.fibergroup.elements) == 4
    torch.manual_seed(0)
    model = MODELS["resnet"](splits.in_type, splits.out_type, family, padding_mode=splits.padding_mode).double()
    model.eval()
    x, _ = splits.test[torch.arange(1)]
    assert x.shape == (1, 1, 24, 16)
    errors = equivariance_errors(model, GeometricTensor(x, splits.in_type))
    assert len(errors) == 4
    if family == "geometric":
        assert max(errors.values()) < 1e-10
    elif family == "plain":
        assert max(errors.values()) > 1e-2  # not equivariant: the check can fail


def test_geometric_family_learns_derivatives_from_a_file(tmp_path):
    """Tiny settings (8x8 grid, 32 training samples, 12 epochs): test error <= 0.05 (measured 0.025)."""
    splits = load_splits(read_spec(_spec(tmp_path, (8, 8), 40)), None, None, None)
    spec = JobSpec(task="deriv", model="resnet", family="geometric", augment=False, seed=0, lr=1e-2, params=None,
                   epochs=12, batch_size=8, dtype="float32", size=8, n_train=len(splits.train),
                   n_val=len(splits.val), n_test=len(splits.test))
    predictor, _ = train_job(spec, splits, tmp_path / "ck.pt")
    metrics = evaluate(predictor, splits)
    assert metrics["test_error"] <= 0.05, metrics["test_error"]
    assert metrics["equivariance_error"] < 1e-10
