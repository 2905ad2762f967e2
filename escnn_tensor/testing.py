"""Equivariance checks shared by every module's tests (and usable by anyone building layers).

The check is the definition: for every element ``g`` of the group, ``f(g . x)`` must equal ``g . f(x)``,
where ``g .`` is escnn's ``GeometricTensor.transform`` (exact on the grid for :math:`B_d` and its subgroups).
"""
from __future__ import annotations

import numbers
from typing import Callable, Dict, Optional

import torch
from escnn.group import GroupElement
from escnn.nn import FieldType, GeometricTensor

from .groups import group_elements

__all__ = ["default_tolerance", "equivariance_errors", "assert_equivariant", "random_input"]


def default_tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance of the project's equivariance tests: 1e-10 for float64, 1e-5 for float32."""
    return 1e-10 if dtype == torch.float64 else 1e-5


def random_input(
    field_type: FieldType,
    spatial: int = 9,
    batch: int = 2,
    dtype: torch.dtype = torch.float64,
    generator: Optional[torch.Generator] = None,
) -> GeometricTensor:
    """A random (Gaussian, so non-symmetric) ``GeometricTensor`` of shape ``(batch, C, spatial, ...)``.

    ``C = field_type.size``; there are ``d = field_type.gspace.dimensionality`` spatial axes of size ``spatial``.

    Raises:
        TypeError: ``field_type`` is not an escnn ``FieldType``, or ``spatial``/``batch`` are not integers, or
            ``dtype`` is not a floating torch dtype.
        ValueError: ``spatial`` or ``batch`` is < 1.
    """
    if not isinstance(field_type, FieldType):
        raise TypeError(
            f"random_input: field_type must be an escnn FieldType (e.g. from escnn_tensor.tensor_type), got "
            f"{type(field_type).__name__}"
        )
    for name, v in (("spatial", spatial), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"random_input: {name} must be a positive integer, got {v!r}")
        if v < 1:
            raise ValueError(f"random_input: {name} must be a positive integer, got {v!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"random_input: dtype must be a floating-point torch dtype (e.g. torch.float64), got {dtype!r}")
    d = field_type.gspace.dimensionality
    t = torch.randn((batch, field_type.size) + (spatial,) * d, dtype=dtype, generator=generator)
    return GeometricTensor(t, field_type)


def equivariance_errors(
    f: Callable[[GeometricTensor], GeometricTensor],
    x: GeometricTensor,
) -> Dict[GroupElement, float]:
    """Relative equivariance error of ``f`` at ``x`` for every element of the group.

    ``error(g) = max |f(g.x) - g.f(x)| / max |g.f(x)|``, with ``g.`` escnn's ``GeometricTensor.transform``.
    Returns a dict ``{element: error}`` over all elements of ``x.type.gspace.fibergroup``.

    Raises:
        TypeError: ``x`` is not an escnn ``GeometricTensor`` or ``f`` is not callable.
        ValueError: ``f(x)`` is identically zero (the check could not fail).
    """
    if not isinstance(x, GeometricTensor):
        raise TypeError(
            f"x must be an escnn GeometricTensor (e.g. field_type(tensor) or escnn_tensor.testing.random_input), got "
            f"{type(x).__name__}"
        )
    if not callable(f):
        raise TypeError(
            f"f must be callable (a module or function GeometricTensor -> GeometricTensor), got {type(f).__name__}"
        )
    y = f(x)
    if not isinstance(y, GeometricTensor):
        raise TypeError(f"f must return an escnn GeometricTensor, got {type(y).__name__}")
    scale = y.tensor.abs().max().item()
    if scale == 0:
        raise ValueError("f(x) is identically zero: an equivariance check on it cannot fail; use another input")
    out = {}
    for g in group_elements(x.type.gspace):
        a = f(x.transform(g)).tensor
        b = y.transform(g).tensor
        if a.shape != b.shape:
            raise AssertionError(f"shape mismatch at {g}: f(g.x) {tuple(a.shape)} vs g.f(x) {tuple(b.shape)}")
        out[g] = (a - b).abs().max().item() / scale
    return out


def assert_equivariant(
    f: Callable[[GeometricTensor], GeometricTensor],
    x: GeometricTensor,
    rtol: Optional[float] = None,
) -> Dict[GroupElement, float]:
    """Assert ``f(g.x) == g.f(x)`` for every group element, to relative tolerance ``rtol``.

    ``rtol`` defaults to :func:`default_tolerance` of ``x``'s dtype. Returns the errors (see
    :func:`equivariance_errors`); raises ``AssertionError`` listing the elements that fail.
    """
    if not isinstance(x, GeometricTensor):
        raise TypeError(
            f"x must be an escnn GeometricTensor (e.g. field_type(tensor) or escnn_tensor.testing.random_input), got "
            f"{type(x).__name__}"
        )
    if rtol is None:
        rtol = default_tolerance(x.tensor.dtype)
    errs = equivariance_errors(f, x)
    bad = {str(g): e for g, e in errs.items() if not e <= rtol}
    if bad:
        raise AssertionError(f"not equivariant to rtol={rtol:g} for {len(bad)}/{len(errs)} elements: {bad}")
    return errs
