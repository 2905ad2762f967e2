"""escnn_tensor: geometric convolutions on tensor images, as a plugin for escnn.

The main names are importable from here; the rest lives in the subpackages:

- :mod:`escnn_tensor.groups`: the hyperoctahedral group B_d and its subgroups as escnn gspaces, exact matrices,
  array layouts.
- :mod:`escnn_tensor.representations`: tensor representations and field types.
- :mod:`escnn_tensor.filters`: bases of invariant filters.
- :mod:`escnn_tensor.nn`: equivariant layers (GeometricConv and the layers of tensor-field networks).
- :mod:`escnn_tensor.image`: geometric images, MultiImage, translators to and from escnn.
- :mod:`escnn_tensor.data`: tensor-field tasks (gravity, tidal tensor, Navier-Stokes, subgrid stress, 3D magnetostatics).
- :mod:`escnn_tensor.models`: ResNet, UNet and DilResNet in three families (geometric, steerable, plain).
- :mod:`escnn_tensor.compare`: the head-to-head harness, ``python -m escnn_tensor.compare`` (imported on demand).
- :mod:`escnn_tensor.plotting`: plots of scalar, vector and tensor images.
- :mod:`escnn_tensor.grid`: the shared vocabulary of sizes, strides, padding and output shapes.
- :mod:`escnn_tensor.testing`: the equivariance check every test uses.

Importing the package makes escnn's groups, gspaces, representations and field types picklable (see
:mod:`escnn_tensor._pickling`), so whole networks mixing escnn and escnn_tensor modules pickle, deep-copy and
go to spawned worker processes.
"""
from . import _pickling, data, grid, image, models, nn, testing
from .filters import invariant_filters, invariant_filters_sparse, num_invariant_filters
from .groups import (
    escnn_to_grid,
    grid_to_escnn,
    group_elements,
    group_matrices,
    group_matrix,
    hyperoctahedral_gspace,
)
from .image import GeometricImage, MultiImage, from_geometric_tensor, to_geometric_tensor
from .nn import GeometricConv
from .plotting import plot_image, plot_images
from .representations import field_signature, tensor_rep, tensor_type

__version__ = "0.1.0"

__all__ = [
    "hyperoctahedral_gspace",
    "group_elements",
    "group_matrices",
    "group_matrix",
    "grid_to_escnn",
    "escnn_to_grid",
    "tensor_rep",
    "tensor_type",
    "field_signature",
    "invariant_filters",
    "invariant_filters_sparse",
    "num_invariant_filters",
    "GeometricConv",
    "GeometricImage",
    "MultiImage",
    "to_geometric_tensor",
    "from_geometric_tensor",
    "plot_image",
    "plot_images",
]
