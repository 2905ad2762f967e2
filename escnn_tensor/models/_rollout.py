r"""Autoregressive rollouts of GeometricTensor models (the harness's ``compare/rollout.py`` calls these).

A time-series model maps the fields at step ``t`` to the fields at ``t + 1`` (``in_type == out_type``). A rollout
feeds each prediction back as the next input. The loop itself is :func:`escnn_tensor.image.time_series.rollout`,
shared with the MultiImage rollouts (ginjax's ``autoregressive_map``); with ``past_steps > 1`` or constant fields
the next input is made by :func:`escnn_tensor.image.time_series.autoregressive_step` (ginjax's layout).
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from escnn.nn import GeometricTensor

from ..image import from_geometric_tensor, multi_image_field_type, to_geometric_tensor
from ..image import time_series as ts
from ..image.multi_image import SignatureLike

__all__ = ["autoregressive_step", "autoregressive_map"]

Field = Union[GeometricTensor, torch.Tensor]


def autoregressive_step(
    x: Field, y: Field, past_steps: int = 1, constant_fields: Optional[SignatureLike] = None
) -> Field:
    """The next model input from the current input ``x`` and the model's prediction ``y`` of one step.

    - ``past_steps=1`` without constant fields (the usual case): ``y`` itself, as a ``GeometricTensor`` of ``x``'s
      type (``y`` must have the same field type, or for plain tensors the same shape).
    - otherwise (GeometricTensors only): ``x`` holds, per tensor type ``(k, parity)`` in canonical order,
      ``C * past_steps`` dynamic fields (field major, time minor) then ``constant_fields[(k, parity)]`` constant
      fields, and ``y`` the ``C`` fields of the new step; each field's oldest step is dropped and the new one
      appended, as :func:`escnn_tensor.image.time_series.autoregressive_step`.

    Raises:
        ValueError / TypeError: types or shapes that do not fit, named in the message.
    """
    simple = past_steps == 1 and not constant_fields
    if isinstance(x, GeometricTensor):
        if not isinstance(y, GeometricTensor):
            raise TypeError(f"autoregressive_step: y must be a GeometricTensor like x, got {type(y).__name__}")
        if simple:
            if y.type != x.type or y.tensor.shape != x.tensor.shape:
                raise ValueError(
                    f"autoregressive_step: the prediction must have the input's field type and shape to be fed back "
                    f"(a time-series model has in_type == out_type), got {y.type} {tuple(y.tensor.shape)} for input "
                    f"{x.type} {tuple(x.tensor.shape)}"
                )
            return GeometricTensor(y.tensor, x.type)
        gs = x.type.gspace
        new = ts.autoregressive_step(from_geometric_tensor(x), from_geometric_tensor(y), past_steps, constant_fields)
        if multi_image_field_type(new, gs).representations != x.type.representations:
            raise ValueError(
                "autoregressive_step: with past_steps > 1 or constant fields, x's fields must be in canonical order "
                f"(escnn_tensor.multi_image_field_type), got {x.type}"
            )
        return GeometricTensor(to_geometric_tensor(new, gs).tensor, x.type)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"autoregressive_step: x and y must both be GeometricTensors or both torch tensors, got "
            f"{type(x).__name__} and {type(y).__name__}"
        )
    if not simple:
        raise ValueError("autoregressive_step: past_steps > 1 and constant fields need GeometricTensors (field types)")
    if y.shape != x.shape:
        raise ValueError(
            f"autoregressive_step: the prediction must have the input's shape to be fed back, got {tuple(y.shape)} "
            f"for input {tuple(x.shape)}"
        )
    return y


def autoregressive_map(
    model: Callable[[Field], Field],
    x0: Field,
    steps: int,
    past_steps: int = 1,
    constant_fields: Optional[SignatureLike] = None,
) -> torch.Tensor:
    """Roll ``model`` out for ``steps`` steps from ``x0``, feeding each prediction back as the next input
    (:func:`autoregressive_step`).

    Args:
        model: ``GeometricTensor -> GeometricTensor`` (e.g. a model of :mod:`escnn_tensor.models` with
            ``in_type == out_type``), or a plain ``tensor -> tensor`` callable when ``x0`` is a tensor.
        x0: the initial input, a ``GeometricTensor`` ``(B, C, *grid)`` or a tensor of that shape.
        steps: the number of predicted steps ``T >= 1``.
        past_steps, constant_fields: see :func:`autoregressive_step` (default: one step in, one out).

    Returns:
        the predictions stacked along a new time axis: a tensor ``(B, T, C_out, *grid)``; entry ``t`` is the
        prediction of step ``t + 1`` (gradients flow unless called under ``torch.no_grad()``).
    """
    if not isinstance(x0, (GeometricTensor, torch.Tensor)):
        raise TypeError(f"x0 must be an escnn GeometricTensor or a torch tensor, got {type(x0).__name__}")

    def step(x: Field) -> Field:
        y = model(x)
        if isinstance(x, GeometricTensor) != isinstance(y, GeometricTensor) or not isinstance(
            y, (GeometricTensor, torch.Tensor)
        ):
            raise TypeError(
                f"autoregressive_map: the model maps a {type(x).__name__} to a {type(y).__name__}; it must return "
                f"the same kind (GeometricTensor or tensor)"
            )
        return y

    outputs = ts.rollout(step, x0, steps, lambda x, y: autoregressive_step(x, y, past_steps, constant_fields))
    return torch.stack([y.tensor if isinstance(y, GeometricTensor) else y for y in outputs], 1)
