r"""The pixel grid: one vocabulary for sizes, strides, padding and output shapes, shared by every module.

Every layer, image operation and plot of escnn_tensor reads its grid arguments through these helpers, so the
words mean the same everywhere:

* **per-axis integers** (``kernel_size``, ``stride``, ``dilation``, pool sizes): an int, or a tuple of ``d``
  ints. Layers need them *equal on all axes* (:func:`same_on_axes`), because a 90 degree rotation swaps the
  axes and would map the layer to a different one; image operations accept per-axis values
  (:func:`per_axis`).
* **padding**: an int (that many pixels before and after, on every axis), a tuple of ``d`` ints, a tuple of
  ``d`` ``(before, after)`` pairs, ``'valid'`` (none) or ``'same'`` (``dilation * (kernel_size - 1) / 2`` on
  each side, an integer only for odd reach). Strings are case-insensitive, so ginjax's ``'SAME'``/``'VALID'``
  work too. Images add ``'torus'`` (``'same'``, wrapped around on periodic axes), which layers spell
  ``padding_mode='circular'``. :func:`resolve_padding` turns every form into ``(before, after)`` pairs.
* **output size** of a convolution along one axis (:func:`conv_output_size`):
  ``floor((N + before + after - dilation (K - 1) - 1) / stride) + 1``, and of a transposed convolution
  (:func:`conv_transpose_output_size`): ``(N - 1) stride - before - after + dilation (K - 1) + output_padding + 1``.
* **equivariant sampling**: a strided layer is equivariant only when its sampled output pixels sit
  symmetrically about the centre of the grid, i.e. ``(N + before + after - dilation (K - 1) - 1) % stride == 0``
  (:func:`stride_fits`).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

from .groups import is_integer

__all__ = [
    "PADDING_MODES",
    "same_on_axes",
    "per_axis",
    "resolve_padding",
    "symmetric_padding",
    "conv_output_size",
    "conv_transpose_output_size",
    "stride_fits",
]

#: the padding modes of the layers (torch's names); all of them commute with every signed permutation of a
#: square/cubic grid
PADDING_MODES = ("zeros", "circular", "reflect", "replicate")

IntOrTuple = Union[int, Sequence[int]]
PaddingArg = Union[int, str, Sequence[int], Sequence[Tuple[int, int]]]


def _check_int(value, name: str, minimum: int) -> int:
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def per_axis(value: IntOrTuple, d: int, name: str, minimum: int = 1) -> Tuple[int, ...]:
    """An int or a tuple of ``d`` ints, each ``>= minimum``, as a ``d``-tuple."""
    if isinstance(value, (tuple, list)):
        if len(value) != d:
            raise ValueError(f"{name} must be an integer or a tuple of {d} integers, got {value!r}")
        return tuple(_check_int(v, name, minimum) for v in value)
    return (_check_int(value, name, minimum),) * d


def same_on_axes(value: IntOrTuple, d: int, name: str, minimum: int = 1) -> int:
    """An int, or a tuple of ``d`` equal ints, ``>= minimum``, as one int (what an equivariant layer needs)."""
    if not (is_integer(value) or isinstance(value, (tuple, list))):
        raise TypeError(f"{name} must be an integer or a tuple of {d} equal integers, got {value!r}")
    values = per_axis(value, d, name, minimum)
    if len(set(values)) != 1:
        raise ValueError(
            f"{name}={values} differs between axes; a group element that swaps axes (a 90 degree rotation "
            f"or a diagonal reflection) maps it to a different {name}, so the layer would not be equivariant. "
            f"Give one integer (or {d} equal ones)."
        )
    return values[0]


def resolve_padding(
    padding: PaddingArg, d: int, kernel_size: IntOrTuple, dilation: IntOrTuple = 1, name: str = "padding"
) -> List[Tuple[int, int]]:
    """Any accepted padding (see module docs; not ``'torus'``) as ``d`` pairs ``(before, after)``.

    ``'same'`` needs an even reach ``dilation * (kernel_size - 1)`` on every axis: torch would otherwise split
    the padding unevenly between the two sides, which moves the output grid's centre by half a pixel.
    """
    ks = per_axis(kernel_size, d, "kernel_size")
    dil = per_axis(dilation, d, "dilation")
    accepted = (
        f"an integer >= 0, a tuple of {d} integers, a tuple of {d} (before, after) pairs, 'same' or 'valid'"
    )
    if isinstance(padding, str):
        word = padding.lower()
        if word == "valid":
            return [(0, 0)] * d
        if word == "same":
            spans = [e * (k - 1) for k, e in zip(ks, dil)]
            odd = [s for s in spans if s % 2]
            if odd:
                raise ValueError(
                    f"{name}='same' with kernel_size={kernel_size}, dilation={dilation} needs {odd[0]} padding "
                    f"pixels per axis, an odd number, which cannot be split evenly between the two sides; that "
                    f"moves the centre of the output grid by half a pixel and breaks equivariance. Use an integer "
                    f"{name} or an odd kernel_size."
                )
            return [(s // 2, s // 2) for s in spans]
        raise ValueError(f"{name} must be {accepted}; got the string {padding!r}")
    if is_integer(padding):
        p = _check_int(padding, name, 0)
        return [(p, p)] * d
    if isinstance(padding, (tuple, list)) and len(padding) == d:
        if all(is_integer(p) for p in padding):
            return [(_check_int(p, name, 0),) * 2 for p in padding]
        if all(isinstance(p, (tuple, list)) and len(p) == 2 for p in padding):
            return [(_check_int(a, name, 0), _check_int(b, name, 0)) for a, b in padding]
    raise TypeError(f"{name} must be {accepted}; got {padding!r}")


def symmetric_padding(
    padding: PaddingArg, d: int, kernel_size: int, dilation: int = 1, name: str = "padding"
) -> int:
    """:func:`resolve_padding` for an equivariant layer: the same amount on both sides of every axis, as one int."""
    pairs = resolve_padding(padding, d, kernel_size, dilation, name)
    where = "between axes" if len(set(pairs)) != 1 else "between the two sides" if pairs[0][0] != pairs[0][1] else ""
    if where:
        raise ValueError(
            f"{name}={padding!r} differs {where}; a rotation or reflection maps it to another padding, so the "
            f"layer would not be equivariant. Give one integer, 'same' or 'valid'."
        )
    return pairs[0][0]


def conv_output_size(n: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output side of a convolution along one axis; ``padding`` is the total (before + after) on that axis."""
    return (n + padding - dilation * (kernel_size - 1) - 1) // stride + 1


def conv_transpose_output_size(
    n: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1, output_padding: int = 0
) -> int:
    """Output side of a transposed convolution along one axis; ``padding`` is the total (before + after)."""
    return (n - 1) * stride - padding + dilation * (kernel_size - 1) + output_padding + 1


def stride_fits(n: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> bool:
    """Whether the sampled output pixels of a strided convolution sit symmetrically about the grid's centre."""
    return (n + padding - dilation * (kernel_size - 1) - 1) % stride == 0
