"""Equivariant layers for tensor fields, as escnn ``EquivariantModule``\\ s.

Every layer is built as ``Layer(in_type, ...)`` from an escnn ``FieldType`` of tensor fields
(:func:`escnn_tensor.tensor_type`), takes and returns ``GeometricTensor``\\ s, has ``out_type`` and
``evaluate_output_shape``, and mixes with escnn's own modules in ``escnn.nn.SequentialModule``.
"""
from ._conv import EquivarianceWarning, GeometricConv

__all__ = [
    "GeometricConv",
    "EquivarianceWarning",
]
