r"""Models for tensor-field regression in three families: ResNet, UNet, DilResNet.

Every model is ``Model(in_type, out_type, family='geometric', width=None, params=None, **options)``: an escnn
``EquivariantModule`` taking a ``GeometricTensor`` of ``in_type`` (tensor fields, :func:`escnn_tensor.tensor_type`)
and returning one of ``out_type`` on the same grid, in 2D or 3D. The family picks the layers
(:mod:`escnn_tensor.models._families`):

- ``'geometric'``: GeometricConv and the tensor-field layers of :mod:`escnn_tensor.nn`; hidden fields are scalars,
  vectors and 2-tensors (and their pseudo versions when the task has pseudotensors; :func:`hidden_tensor_types`).
  Exactly equivariant. The default ``nonlinearity='gated_quadratic'`` adds a bounded low-rank quadratic term to the
  gate (:class:`escnn_tensor.nn.GatedQuadratic`), chosen on validation in the head-to-head (docs/head_to_head.md);
  ``'gated'`` is the gate alone, ``'vector_neuron'`` ginjax's nonlinearity.
- ``'steerable'``: escnn's R2Conv/R3Conv on regular fields with pointwise ELU/ReLU, InnerBatchNorm,
  PointwiseMaxPool, upsampling + convolution. Equivariant to escnn's basis accuracy (~1e-7).
- ``'plain'``: torch convolutions on the tensor components as channels. Not equivariant.

``params=N`` picks the hidden size so that the model has ``N`` trainable parameters within +-10%, so the
families can be compared at equal parameter counts. :data:`MODELS` maps the names ``'resnet'``, ``'unet'``,
``'dilresnet'`` to the classes.

:class:`GroupAverage` makes any model exactly equivariant by averaging over the group (|G| forwards);
:func:`autoregressive_map` rolls a time-series model out (the harness's rollouts).
"""
from ._architectures import DilResNet, ResNet, UNet
from ._base import PARAMS_TOLERANCE, TensorFieldModel, count_parameters
from ._families import ACTIVATIONS, FAMILIES, NONLINEARITIES, NORMS, hidden_tensor_types
from ._group_average import FieldAction, GroupAverage
from ._rollout import autoregressive_map, autoregressive_step

#: model names (as the comparison harness spells them) -> classes
MODELS = {"resnet": ResNet, "unet": UNet, "dilresnet": DilResNet}

__all__ = [
    "ResNet",
    "UNet",
    "DilResNet",
    "TensorFieldModel",
    "MODELS",
    "FAMILIES",
    "ACTIVATIONS",
    "NORMS",
    "NONLINEARITIES",
    "PARAMS_TOLERANCE",
    "count_parameters",
    "hidden_tensor_types",
    "GroupAverage",
    "FieldAction",
    "autoregressive_step",
    "autoregressive_map",
]
