"""Equivariant layers for tensor fields, as escnn ``EquivariantModule``\\ s.

Every layer is built as ``Layer(in_type, ...)`` from an escnn ``FieldType`` of tensor fields
(:func:`escnn_tensor.tensor_type`), takes and returns ``GeometricTensor``\\ s, has ``out_type`` and
``evaluate_output_shape``, and mixes with escnn's own modules in ``escnn.nn.SequentialModule``.
Which fields each layer accepts, and the escnn module it stands beside, is tabulated in ``docs/layers.md``.
"""
from ._batch_norm import TensorBatchNorm
from ._change_of_basis import ChangeOfBasis
from ._conv import EquivarianceWarning, GeometricConv
from ._conv_transposed import GeometricConvTransposed
from ._gated import GatedNonLinearity
from ._gated_quadratic import GatedQuadratic
from ._isolate import isolate
from ._layer_norm import TensorLayerNorm
from ._pointwise import PointwiseNonLinearity
from ._pooling import AvgPool, NormMaxPool
from ._tensor_product import TensorProductNonLinearity
from ._upsample import Upsample
from ._vector_neuron import VectorNeuronNonLinearity

__all__ = [
    "GeometricConv",
    "GeometricConvTransposed",
    "ChangeOfBasis",
    "PointwiseNonLinearity",
    "GatedNonLinearity",
    "GatedQuadratic",
    "VectorNeuronNonLinearity",
    "TensorProductNonLinearity",
    "TensorBatchNorm",
    "TensorLayerNorm",
    "NormMaxPool",
    "AvgPool",
    "Upsample",
    "isolate",
    "EquivarianceWarning",
]
