"""escnn_tensor: geometric convolutions on tensor images, as a plugin for escnn.

The public surface, by file:

- :mod:`escnn_tensor.groups`: ``hyperoctahedral_gspace``, ``group_matrix`` (gspaces, element matrices,
  grid conventions).
- :mod:`escnn_tensor.representations`: ``tensor_rep``, ``tensor_type`` (tensor representations and field
  types).
- :mod:`escnn_tensor.filters`: ``invariant_filters`` (bases of invariant filters).
"""
from .groups import (
    action_key,
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
from . import testing

__version__ = "0.1.0"
