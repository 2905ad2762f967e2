"""Geometric images (ginjax's data model) in PyTorch, and translators to and from escnn's ``GeometricTensor``.

- :class:`GeometricImage`: one tensor image of order ``k`` and parity on a square/cubic grid, with ginjax's
  operations (geometric convolution, contractions, group action, pooling, ...).
- :class:`MultiImage`: several images keyed by ``(k, parity)``, each with batch and channel axes.
- :func:`to_geometric_tensor` / :func:`from_geometric_tensor`: lossless translation to and from escnn.
- :mod:`escnn_tensor.image.functional`: the pure functions the classes are built on (convolve, convolve_contract,
  multicontract, get_contraction_indices, permutation_parity, levi_civita_symbol, ...).
- :mod:`escnn_tensor.image.time_series`: sliding windows and autoregressive rollouts (ginjax's data helpers).
"""
from . import functional, time_series
from .functional import levi_civita_symbol
from .geometric_image import GeometricImage
from .multi_image import MultiImage
from .translate import from_geometric_tensor, multi_image_field_type, to_geometric_tensor

__all__ = [
    "GeometricImage",
    "MultiImage",
    "levi_civita_symbol",
    "functional",
    "time_series",
    "to_geometric_tensor",
    "from_geometric_tensor",
    "multi_image_field_type",
]
