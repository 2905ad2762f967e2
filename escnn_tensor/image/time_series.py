r"""Time series of geometric images: sliding windows (ginjax's data helpers) and autoregressive rollouts.

Layout (ginjax's): a time series of ``C`` fields over ``T`` steps is a :class:`MultiImage` block
``(B, C * T, *spatial, tensor)``, field major and time minor (channel ``c * T + t``); ``expand(1, T)`` shows it as
``(B, C, T, ...)``. A model input made of ``past_steps`` steps and constant fields holds, per key,
``C * past_steps`` dynamic channels followed by that key's constant channels.

- :func:`time_series_idxs`: the input and output time indices of every window.
- :func:`times_series_to_multi_images` / :func:`batch_time_series`: windows ``(X, Y)`` of one / many trajectories.
- :func:`autoregressive_step`: the next input from the current input and one predicted step.
- :func:`rollout`: the one autoregressive loop of the project; :func:`autoregressive_map` (MultiImage models, here)
  and :func:`escnn_tensor.models.autoregressive_map` (GeometricTensor models, used by the harness) run on it.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, List, Optional, Tuple, TypeVar

import torch

from ..groups import is_integer
from .multi_image import MultiImage, SignatureLike, _signature_dict

__all__ = [
    "time_series_idxs",
    "times_series_to_multi_images",
    "batch_time_series",
    "autoregressive_step",
    "autoregressive_map",
    "rollout",
]

X = TypeVar("X")
Y = TypeVar("Y")


def _positive(value, name: str, minimum: int = 1) -> int:
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def time_series_idxs(
    past_steps: int, future_steps: int, delta_t: int, total_steps: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Time indices of every sliding window over ``total_steps`` steps (ginjax's ``time_series_idxs``).

    Window ``w`` (``w = 0, 1, ...``) reads the inputs ``w, w + delta_t, ..., w + (past_steps - 1) delta_t`` and
    predicts ``w + past_steps delta_t, ..., w + (past_steps + future_steps - 1) delta_t``; every window that fits
    is listed: ``W = total_steps - (past_steps + future_steps - 1) delta_t`` of them.

    Returns:
        ``(input_idxs, output_idxs)``: LongTensors ``(W, past_steps)`` and ``(W, future_steps)``.

    Raises:
        ValueError: a non-positive argument, or no window fits.
    """
    past_steps = _positive(past_steps, "past_steps")
    future_steps = _positive(future_steps, "future_steps")
    delta_t = _positive(delta_t, "delta_t")
    total_steps = _positive(total_steps, "total_steps")
    n_windows = total_steps - (past_steps + future_steps - 1) * delta_t
    if n_windows < 1:
        raise ValueError(
            f"no window of past_steps={past_steps} + future_steps={future_steps} steps, delta_t={delta_t} apart, fits "
            f"in total_steps={total_steps}"
        )
    start = torch.arange(n_windows)[:, None]
    inputs = start + delta_t * torch.arange(past_steps)[None, :]
    outputs = start + delta_t * (past_steps + torch.arange(future_steps))[None, :]
    return inputs, outputs


def batch_time_series(
    dynamic_fields: MultiImage,
    constant_fields: MultiImage,
    total_steps: int,
    past_steps: int,
    future_steps: int,
    skip_initial: int = 0,
    delta_t: int = 1,
    downsample: int = 0,
) -> Tuple[MultiImage, MultiImage]:
    """Sliding windows ``(X, Y)`` of ``B`` trajectories (ginjax's ``batch_time_series``).

    Args:
        dynamic_fields: blocks ``(B, C * total_steps, *spatial, tensor)`` (field major, time minor).
        constant_fields: blocks ``(B, C', *spatial, tensor)`` (may be empty): appended to every input window.
        total_steps, past_steps, future_steps, delta_t: see :func:`time_series_idxs`.
        skip_initial: leading time steps to drop first.
        downsample: average-pool ``X`` and ``Y`` by 2 this many times.

    Returns:
        ``X`` with blocks ``(B * W, C * past_steps [+ C'], ...)`` (window ``w`` of trajectory ``b`` at batch entry
        ``b * W + w``; dynamic channels field major, time minor, then the key's constant channels) and ``Y`` with
        blocks ``(B * W, C * future_steps, ...)``.
    """
    for name, mi in (("dynamic_fields", dynamic_fields), ("constant_fields", constant_fields)):
        if not isinstance(mi, MultiImage):
            raise TypeError(f"{name} must be a MultiImage, got {type(mi).__name__}")
    if not dynamic_fields:
        raise ValueError("dynamic_fields is empty: a time series needs at least one dynamic field")
    if dynamic_fields.n_leading != 2:
        raise ValueError(f"dynamic_fields must have (batch, channels * time) leading axes, got {dynamic_fields.n_leading}")
    total_steps = _positive(total_steps, "total_steps")
    skip_initial = _positive(skip_initial, "skip_initial", 0)
    downsample = _positive(downsample, "downsample", 0)
    inputs, outputs = time_series_idxs(past_steps, future_steps, delta_t, total_steps - skip_initial)
    W = inputs.shape[0]
    B, n = dynamic_fields.batch_size, dynamic_fields.n_leading
    x, y = {}, {}
    for key, v in dynamic_fields.items():
        if v.shape[1] % total_steps:
            raise ValueError(
                f"key {key} of dynamic_fields has {v.shape[1]} channels, not a multiple of total_steps={total_steps}"
            )
        v = v.reshape((B, -1, total_steps) + v.shape[n:])[:, :, skip_initial:]  # (B, C, T, ...)
        rest = v.shape[3:]
        xi = v[:, :, inputs.to(v.device)]  # (B, C, W, past, ...)
        yi = v[:, :, outputs.to(v.device)]
        x[key] = xi.transpose(1, 2).reshape((B * W, -1) + rest)
        y[key] = yi.transpose(1, 2).reshape((B * W, -1) + rest)
    X, Y = dynamic_fields._new(x), dynamic_fields._new(y)
    if constant_fields:
        if constant_fields.n_leading != 2 or constant_fields.batch_size != B:
            raise ValueError(
                f"constant_fields must have leading axes (B={B}, channels), got leading shape "
                f"{constant_fields.leading_shape} with {constant_fields.n_leading} leading axes"
            )
        const = {key: v.repeat_interleave(W, dim=0) for key, v in constant_fields.items()}
        X = X.concat(constant_fields._new(const))
    for _ in range(downsample):
        X, Y = X.average_pool(2), Y.average_pool(2)
    return X, Y


def times_series_to_multi_images(
    dynamic_fields: MultiImage,
    constant_fields: MultiImage,
    total_steps: int,
    past_steps: int,
    future_steps: int,
    skip_initial: int = 0,
    delta_t: int = 1,
    downsample: int = 0,
) -> Tuple[MultiImage, MultiImage]:
    """Sliding windows of **one** trajectory (ginjax's ``times_series_to_multi_images``, ginjax's spelling):
    :func:`batch_time_series` for ``dynamic_fields`` (and ``constant_fields``) with batch size 1; the windows
    become the batch of ``X`` and ``Y``."""
    if isinstance(dynamic_fields, MultiImage) and dynamic_fields and dynamic_fields.batch_size != 1:
        raise ValueError(
            f"times_series_to_multi_images takes one trajectory (batch size 1), got batch size "
            f"{dynamic_fields.batch_size}; use batch_time_series"
        )
    return batch_time_series(
        dynamic_fields, constant_fields, total_steps, past_steps, future_steps, skip_initial, delta_t, downsample
    )


def autoregressive_step(
    input: MultiImage,
    output: MultiImage,
    past_steps: int,
    constant_fields: Optional[SignatureLike] = None,
    future_steps: int = 1,
) -> MultiImage:
    """The next model input after one predicted step (ginjax's ``autoregressive_step``).

    Per key, ``input`` holds ``C * past_steps`` dynamic channels (field major, time minor) and then
    ``constant_fields[key]`` constant channels; ``output`` holds the ``C`` fields of one new step. The new input
    drops each field's oldest step, appends the predicted one, and keeps the constant channels (at the end).

    Args:
        input: blocks ``(B, C * past_steps + C', ...)``.
        output: blocks ``(B, C, ...)`` for the keys that have dynamic channels.
        past_steps: steps per field in ``input``.
        constant_fields: ``{(k, parity): C'}`` (or a signature) of the constant channels; default none.
        future_steps: must be 1 (the model predicts one step), as in ginjax.
    """
    if future_steps != 1:
        raise ValueError(f"autoregressive_step: future_steps must be 1, got {future_steps!r}")
    past_steps = _positive(past_steps, "past_steps")
    for name, mi in (("input", input), ("output", output)):
        if not isinstance(mi, MultiImage):
            raise TypeError(f"{name} must be a MultiImage, got {type(mi).__name__}")
    const = _signature_dict(constant_fields or {}, "constant_fields")
    dynamic, constant = input.concat_inverse(const)
    n = input.n_leading
    new = input.empty()
    for key in input:
        if key in dynamic:
            if key not in output:
                raise ValueError(f"autoregressive_step: output has no key {key}, which input has dynamic fields of")
            d = dynamic.expand(n - 1, past_steps)[key]  # (..., C, past, ...)
            step = output[key].unsqueeze(n)  # (..., C, 1, ...)
            if d.shape[: n] != step.shape[: n] or d.shape[n + 1 :] != step.shape[n + 1 :]:
                raise ValueError(
                    f"autoregressive_step: key {key}: input has {d.shape[n - 1]} fields of {past_steps} steps "
                    f"(shape {tuple(input[key].shape)}), output block has shape {tuple(output[key].shape)}"
                )
            block = torch.cat([d.narrow(n, 1, past_steps - 1), step.to(d.dtype)], n).flatten(n - 1, n)
            new.append(key[0], key[1], block)
        if key in constant:
            new.append(key[0], key[1], constant[key])
    return new


def rollout(
    step: Callable[[X], Y],
    x0: X,
    steps: int,
    advance: Callable[[X, Y], X],
) -> List[Y]:
    """The autoregressive loop: ``y_t = step(x_t)``, ``x_{t+1} = advance(x_t, y_t)`` for ``t < steps``; returns
    ``[y_0, ..., y_{steps-1}]``. Every rollout of the project (MultiImage models here, GeometricTensor models in
    :func:`escnn_tensor.models.autoregressive_map`, the harness's per-step errors) runs through this function."""
    steps = _positive(steps, "steps")
    if not callable(step):
        raise TypeError(f"the model must be callable, got {type(step).__name__}")
    outputs = []
    x = x0
    for t in range(steps):
        y = step(x)
        outputs.append(y)
        if t + 1 < steps:
            x = advance(x, y)
    return outputs


def autoregressive_map(
    model: Callable[[MultiImage], MultiImage],
    x: MultiImage,
    past_steps: int = 1,
    steps: int = 1,
    constant_fields: Optional[SignatureLike] = None,
) -> MultiImage:
    """Apply a MultiImage model ``steps`` times, feeding each prediction back with :func:`autoregressive_step`
    (ginjax's ``autoregressive_map``, without its auxiliary state: the model returns only a MultiImage).

    Returns:
        the predictions with a time axis: blocks ``(B, steps, C, *spatial, tensor)`` (three leading axes;
        ``combine_axes((1, 2))`` gives ginjax's flat ``(B, steps * C, ...)``, step major).
    """
    if not isinstance(x, MultiImage):
        raise TypeError(f"x must be a MultiImage, got {type(x).__name__}")

    def checked(inp: MultiImage) -> MultiImage:
        out = model(inp)
        if not isinstance(out, MultiImage):
            raise TypeError(f"the model must return a MultiImage, got {type(out).__name__}")
        return out

    outputs = rollout(checked, x, steps, lambda inp, out: autoregressive_step(inp, out, past_steps, constant_fields))
    first = outputs[0]
    n = first.n_leading
    return first._new({key: torch.stack([o[key] for o in outputs], n - 1) for key in first})
