"""Rollout errors against trajectories whose exact next step is known (independent of any trained model)."""
from __future__ import annotations

import math

import numpy as np
import torch
from escnn.nn import GeometricTensor

from escnn_tensor.compare.rollout import rollout_errors
from escnn_tensor.data import from_arrays, load_splits


class _Map(torch.nn.Module):
    """A GeometricTensor -> GeometricTensor map of the same type (parameters only to carry a dtype)."""

    def __init__(self, fn, field_type):
        super().__init__()
        self.fn, self.in_type, self.out_type = fn, field_type, field_type
        self.w = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x):
        return GeometricTensor(self.fn(x.tensor), self.in_type)


def test_rollout_errors_of_exact_and_wrong_models():
    rng = np.random.default_rng(0)
    start = rng.normal(size=(6, 1, 8, 8))
    # each step halves the field: s_t = s_0 / 2^t, trajectories of 5 states
    rho = np.concatenate([start / 2**t for t in range(5)], axis=1)
    splits = load_splits(from_arrays({"rho": rho}, ["rho"], ["rho"]), 4, 1, 1)
    traj = splits.trajectories
    assert traj.steps == 4 and len(traj) >= 1
    exact = _Map(lambda t: t / 2, splits.in_type)
    errors = rollout_errors(exact, traj, splits.in_type, 3)
    assert len(errors) == 3 and max(errors) < 1e-28
    # a model that keeps the state: e_t = |s_0 - s_t|^2 / |s_t|^2 = (2^t - 1)^2
    still = _Map(lambda t: t, splits.in_type)
    errors = rollout_errors(still, traj, splits.in_type, 3)
    assert np.allclose(errors, [(2**t - 1) ** 2 for t in (1, 2, 3)], rtol=1e-12)
    zero = _Map(lambda t: 0 * t, splits.in_type)
    assert rollout_errors(zero, traj, splits.in_type, 2) == [1.0, 1.0]
    assert all(math.isfinite(e) for e in errors)
