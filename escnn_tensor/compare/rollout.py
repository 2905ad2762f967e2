r"""Autoregressive rollouts of a trained time-series model on the test trajectories, and their errors per step.

A time-series task (inputs and targets the same fields, ``time_offset >= 1``; or the built-in ``navier-stokes``
with ``--rollout``) keeps its test trajectories whole (``Splits.trajectories``: states at times ``0, τ, 2τ, ...``).
:func:`rollout_errors` starts the model at each trajectory's first state, feeds its predictions back for ``steps``
steps (:func:`escnn_tensor.models.autoregressive_map`, the project's one rollout loop) and returns one relative
error per step over all test trajectories: :math:`e_t = \sum |\hat s_t - s_t|^2 / \sum |s_t|^2`, the same measure
as the one-step test error (``e_1`` is the test error on the trajectories' first pairs).
"""
from __future__ import annotations

from typing import List, Optional

import torch
from escnn.nn import FieldType, GeometricTensor

from ..models import autoregressive_map

__all__ = ["rollout_errors"]


@torch.no_grad()
def rollout_errors(model: torch.nn.Module, trajectories, in_type: FieldType, steps: int, batch_size: int = 16,
                   device: Optional[torch.device] = None) -> List[float]:
    """The relative error of each of ``steps`` rollout steps over ``trajectories`` (``len()`` and
    ``[idx] -> (n, S, C, *grid)`` with ``S >= steps + 1``, escnn layout; see the module docs).

    ``model`` maps a ``GeometricTensor`` of ``in_type`` to one of the same type; it runs in eval mode, in its own
    dtype, on ``device`` (default: where its parameters are); errors are summed in float64.
    """
    if getattr(trajectories, "steps", steps) < steps:
        raise ValueError(f"rollout of {steps} steps asked for, but the test trajectories hold {trajectories.steps}")
    model.eval()
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float64
    device = device if device is not None else (param.device if param is not None else torch.device("cpu"))
    num = torch.zeros(steps, dtype=torch.float64)
    den = torch.zeros(steps, dtype=torch.float64)
    n = len(trajectories)
    for start in range(0, n, batch_size):
        states = trajectories[torch.arange(start, min(start + batch_size, n))]
        x0 = GeometricTensor(states[:, 0].to(device=device, dtype=dtype), in_type)
        pred = autoregressive_map(model, x0, steps).double().cpu()  # (b, T, C, *grid)
        true = states[:, 1 : steps + 1].double()
        dims = [0] + list(range(2, true.dim()))
        num += (pred - true).pow(2).sum(dim=dims)
        den += true.pow(2).sum(dim=dims)
    return (num / den).tolist()
