"""Tensor-field data sets, generated offline and deterministically by seed.

- :mod:`escnn_tensor.data.gravity`: point-mass densities and their gravitational fields (scalar -> vector).
"""
from . import gravity

__all__ = ["gravity"]
