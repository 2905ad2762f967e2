"""escnn_tensor: geometric convolutions on tensor images, as a plugin for escnn.

The public surface, by file:

- :mod:`escnn_tensor.groups`: ``hyperoctahedral_gspace``, ``group_matrix`` (gspaces, element matrices,
  grid conventions).
- :mod:`escnn_tensor.representations`: ``tensor_rep``, ``tensor_type`` (tensor representations and field
  types).
- :mod:`escnn_tensor.filters`: ``invariant_filters`` (bases of invariant filters).
- :mod:`escnn_tensor.conv`: ``GeometricConv`` (complete equivariant convolution between tensor fields).
- :mod:`escnn_tensor.images`: ``GeometricImage``, ``MultiImage`` (ginjax's data model in torch).
- :mod:`escnn_tensor.translate`: ``to_geometric_tensor``, ``from_geometric_tensor``.
- :mod:`escnn_tensor.plotting`: ``plot_image``, ``plot_images``.
"""
from .groups import (
    action_key,
    check_dimension,
    check_gspace,
    escnn_to_grid,
    grid_to_escnn,
    group_elements,
    group_matrices,
    group_matrix,
    hyperoctahedral_gspace,
)
from .representations import (
    canonical_order,
    check_order,
    check_parity,
    field_signature,
    tensor_field_info,
    tensor_matrix,
    tensor_rep,
    tensor_type,
)
from .filters import invariant_filters, num_invariant_filters
from .conv import EquivarianceWarning, GeometricConv
from .images import GeometricImage, MultiImage, levi_civita_symbol
from .translate import from_geometric_tensor, multi_image_field_type, to_geometric_tensor
from .plotting import field_name, plot_image, plot_images
from . import testing

__version__ = "0.1.0"
