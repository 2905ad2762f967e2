r"""Metrics of the comparison harness; none of them changes the model it measures.

* **error** of predictions ``p`` against targets ``t`` over a whole set: :func:`relative_error`
  :math:`\sum |p - t|^2 / \sum |t|^2` (in the data's own units), from float64 sums of the numerator and the
  denominator over all samples (over every process under torch.distributed), so the error of a set does not depend
  on how it is split into chunks or processes.
* **rotated errors** (:func:`rotated_errors`, :func:`split_rotated_errors`): the error on the set moved by every
  group element ``g``: model(g x) against g y, in :func:`escnn_tensor.group_elements` order.
* **equivariance error** (:func:`equivariance_error`, :func:`split_equivariance_error`):
  ``max_g max|f(g x) - g f(x)| / max|f(x)|`` over the set, measured on a float64 **copy** of the model.

The ``split_*`` functions read data only through ``len(split)`` and ``split[idx]``, in chunks of
:data:`EVAL_CHUNK` samples; for a set of one chunk they give exactly the numbers of the whole-tensor functions.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

import torch
from escnn.nn import FieldType, GeometricTensor

from ..groups import group_elements
from .splits import TensorSplit, chunks, fetch

__all__ = [
    "relative_error",
    "predict",
    "rotated_errors",
    "equivariance_error",
    "split_error",
    "split_rotated_errors",
    "split_equivariance_error",
    "evaluate",
    "float64_copy",
    "EVAL_CHUNK",
]

#: samples evaluated at a time by the ``split_*`` metrics (predictions are made in batches of 64 inside a chunk)
EVAL_CHUNK = 256


def relative_error(prediction: torch.Tensor, target: torch.Tensor) -> float:
    r"""Relative squared error over the whole set, :math:`\sum |p - t|^2 / \sum |t|^2` (a Python float)."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    den = target.double().pow(2).sum()
    if den == 0:
        raise ValueError("the targets are identically zero; the relative error is undefined")
    return ((prediction.double() - target.double()).pow(2).sum() / den).item()


def _module(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel / compiled wrapper."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: torch.Tensor, in_type: FieldType, batch_size: int = 64) -> torch.Tensor:
    """``model`` applied to ``inputs`` (cast to the model's dtype and device) in eval mode, in batches; a plain
    tensor on the model's device."""
    model.eval()
    p = next(model.parameters())
    out = [model(GeometricTensor(inputs[i : i + batch_size].to(device=p.device, dtype=p.dtype), in_type)).tensor
           for i in range(0, inputs.shape[0], batch_size)]
    return torch.cat(out)


def float64_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 deep copy of ``model`` (unwrapped from DDP / torch.compile); ``model`` itself is untouched."""
    return copy.deepcopy(_module(model)).double()


def _dist_sum(t: torch.Tensor, dist) -> torch.Tensor:
    return dist.all_reduce_sum(t) if dist is not None else t


def _dist_max(t: torch.Tensor, dist) -> torch.Tensor:
    return dist.all_reduce_max(t) if dist is not None else t


def _error_sums(model, split, in_type: FieldType, out_type: FieldType, elements, dist) -> List[torch.Tensor]:
    """``[(numerator, denominator)]`` (float64 tensors) of the relative error per element of ``elements`` (``None``:
    the identity only), summed over this process's chunks of ``split``."""
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    device = next(model.parameters()).device
    zero = torch.zeros((), dtype=torch.float64, device=device)
    sums = [[zero, zero] for _ in (elements if elements is not None else [None])]
    for idx in chunks(len(split), EVAL_CHUNK, rank, world):
        x, y = fetch(split, idx)
        x, y = x.to(device), y.to(device)
        for s, g in zip(sums, elements if elements is not None else [None]):
            xg = x if g is None else GeometricTensor(x, in_type).transform(g).tensor
            yg = y if g is None else GeometricTensor(y, out_type).transform(g).tensor
            p = predict(model, xg, in_type)
            if p.shape != yg.shape:
                raise ValueError(f"prediction {tuple(p.shape)} and target {tuple(yg.shape)} differ in shape")
            s[0] = s[0] + (p.double() - yg.double()).pow(2).sum()
            s[1] = s[1] + yg.double().pow(2).sum()
    return [(_dist_sum(n, dist), _dist_sum(d, dist)) for n, d in sums]


def _ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    if den == 0:
        raise ValueError("the targets are identically zero; the relative error is undefined")
    return (num / den).item()


def split_error(model, split, in_type: FieldType, out_type: FieldType, dist=None) -> float:
    """:func:`relative_error` of ``model``'s predictions on ``split`` (read through ``len`` / ``[idx]``)."""
    ((num, den),) = _error_sums(model, split, in_type, out_type, None, dist)
    return _ratio(num, den)


def split_rotated_errors(model, split, in_type: FieldType, out_type: FieldType, dist=None) -> List[float]:
    """The relative error of ``model(g.x)`` against ``g.y`` on ``split``, for every group element ``g``."""
    sums = _error_sums(model, split, in_type, out_type, group_elements(in_type.gspace), dist)
    return [_ratio(n, d) for n, d in sums]


def split_equivariance_error(model, split, in_type: FieldType, dist=None) -> float:
    r"""``max_g max|f(g.x) - g.f(x)| / max|f(x)|`` over the inputs of ``split``, with ``f`` a float64 copy of
    ``model`` (so the number shows the construction's equivariance, not float32 round-off)."""
    f64 = float64_copy(model)
    out_type = f64.out_type
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    device = next(f64.parameters()).device
    elements = group_elements(in_type.gspace)
    scale = torch.zeros((), dtype=torch.float64, device=device)
    nums = [scale] * len(elements)
    for idx in chunks(len(split), EVAL_CHUNK, rank, world):
        x = fetch(split, idx)[0].to(device=device, dtype=torch.float64)
        fx = GeometricTensor(predict(f64, x, in_type), out_type)
        scale = torch.maximum(scale, fx.tensor.abs().max())
        xt = GeometricTensor(x, in_type)
        for i, g in enumerate(elements):
            a = predict(f64, xt.transform(g).tensor, in_type)
            nums[i] = torch.maximum(nums[i], (a - fx.transform(g).tensor).abs().max())
    scale = _dist_max(scale, dist)
    if scale == 0:
        raise ValueError("f(x) is identically zero: an equivariance check on it cannot fail; use another input")
    return max(_dist_max(n, dist).item() / scale.item() for n in nums)


def rotated_errors(model, inputs, targets, in_type: FieldType, out_type: FieldType) -> List[float]:
    """``[relative_error(model(g.x), g.y) for g in group_elements]`` over the whole set, in eval mode."""
    return split_rotated_errors(model, TensorSplit(inputs, targets), in_type, out_type)


def equivariance_error(model: torch.nn.Module, inputs: torch.Tensor, in_type: FieldType) -> float:
    r"""``max_g max|f(g.x) - g.f(x)| / max|f(x)|`` over the whole set, computed on a float64 copy of ``model``."""
    return split_equivariance_error(model, TensorSplit(inputs, inputs[:, :0]), in_type)


def evaluate(predictor, splits, dist=None) -> Dict[str, Any]:
    """Test metrics of a trained predictor: ``test_error``, ``rotated_test_error`` (worst over the group),
    ``rotated_test_errors`` (per element, in :func:`escnn_tensor.group_elements` order), ``equivariance_error``."""
    in_type, out_type = splits.in_type, splits.out_type
    rotated = split_rotated_errors(predictor, splits.test, in_type, out_type, dist)
    return {
        "test_error": split_error(predictor, splits.test, in_type, out_type, dist),
        "rotated_test_error": max(rotated),
        "rotated_test_errors": rotated,
        "equivariance_error": split_equivariance_error(predictor, splits.test, in_type, dist),
    }
