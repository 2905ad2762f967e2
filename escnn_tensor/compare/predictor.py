r"""The model of a job with its fixed normalisation (:class:`Predictor`), built by :func:`build_predictor`.

Normalisation: every input and target field is scaled by one number (its RMS component over the training set,
after removing the mean of true scalars), a change of units that commutes with the group, so an equivariant model
stays equivariant; predictions are mapped back before any error. The statistics are read through the split's
``len()`` and ``[idx]`` in chunks of :data:`STAT_CHUNK` samples (a training set of one chunk gives exactly the
numbers of a whole-tensor mean).
"""
from __future__ import annotations

from typing import Tuple

import torch
from escnn.nn import FieldType, GeometricTensor
from escnn.nn.modules.equivariant_module import EquivariantModule

from ..models import MODELS, GroupAverage
from ..representations import field_signature
from .splits import TensorSplit, chunks

__all__ = ["Predictor", "build_predictor", "field_affine", "DTYPES", "STAT_CHUNK"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: samples read at a time for the normalisation statistics
STAT_CHUNK = 256


def field_affine(field_type: FieldType, split, which: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per channel ``(scale, shift)`` of the inputs (``which=0``) or targets (``which=1``) of ``split``: one scale per
    field (RMS component: of the coordinates for a symmetric field), a shift only for true scalars. Float64, on the
    CPU."""
    d = field_type.gspace.dimensionality
    n = len(split)
    parts = [split[idx][which].double().cpu() for idx in chunks(n, STAT_CHUNK)]
    scale = torch.ones(field_type.size, dtype=torch.float64)
    shift = torch.zeros(field_type.size, dtype=torch.float64)
    start = 0
    for key, rep in zip(field_signature(field_type, with_symmetry=True), field_type.representations):
        stop = start + rep.size
        if key == (0, 1):
            shift[start] = sum(b[:, start:stop].mean() * (b.shape[0] / n) for b in parts)
        centre = shift[start:stop].view(1, -1, *([1] * d))
        ms = sum((b[:, start:stop] - centre).pow(2).mean() * (b.shape[0] / n) for b in parts)
        rms = ms.sqrt().item()
        scale[start:stop] = rms if rms > 0 else 1.0
        start = stop
    return scale, shift


class Predictor(EquivariantModule):
    r"""A model with fixed normalisation: :math:`x \mapsto s_y \odot f((x - m_x) / s_x) + m_y` per channel.

    ``s`` holds one number per field (repeated over its components), ``m`` is nonzero only on true scalars, so the
    map commutes with the group whenever ``f`` does. The scales are buffers.

    ``Predictor(model, train)`` takes the statistics from a split (``len`` and ``[idx]``);
    ``Predictor(model, train_inputs, train_targets)`` from two tensors.
    """

    def __init__(self, model: EquivariantModule, train_inputs, train_targets=None):
        super().__init__()
        self.model = model
        self.in_type, self.out_type = model.in_type, model.out_type
        split = train_inputs if train_targets is None else TensorSplit(train_inputs, train_targets)
        shape = (1, -1) + (1,) * model.d
        for which, (name, ft) in enumerate((("in", self.in_type), ("out", self.out_type))):
            scale, shift = field_affine(ft, split, which)
            self.register_buffer(f"{name}_scale", scale.view(shape).to(torch.get_default_dtype()))
            self.register_buffer(f"{name}_shift", shift.view(shape).to(torch.get_default_dtype()))

    def forward(self, x: GeometricTensor) -> GeometricTensor:
        t = (x.tensor - self.in_shift) / self.in_scale
        y = self.model(GeometricTensor(t, self.in_type)).tensor
        return GeometricTensor(y * self.out_scale + self.out_shift, self.out_type)

    def evaluate_output_shape(self, input_shape):
        return self.model.evaluate_output_shape(input_shape)


def build_predictor(spec, splits) -> Predictor:
    """The model of ``spec`` (a :class:`~escnn_tensor.compare.plan.JobSpec`; seeded construction, the global RNG
    state is restored) wrapped with the normalisation of ``splits.train``, in ``spec.dtype`` on the CPU; with
    ``spec.average`` the model is first wrapped in :class:`escnn_tensor.models.GroupAverage` (``plain+avg``). The
    model pads as the data ask (``splits.padding_mode``, e.g. ``'zeros'`` for a file with walls) unless the job's
    model options set ``padding_mode``."""
    cls = MODELS[spec.model]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        options = dict(spec.model_options)
        if getattr(splits, "padding_mode", "circular") != "circular":  # the data's boundaries (non-periodic files)
            options.setdefault("padding_mode", splits.padding_mode)
        model = cls(splits.in_type, splits.out_type, spec.family, params=spec.params,
                    **cls.options_for(spec.family, options))  # only what the family uses
    if getattr(spec, "average", False):  # plain+avg: averaged over the group, |G| forwards per forward
        model = GroupAverage(model, splits.in_type, splits.out_type)
    return Predictor(model, splits.train).to(DTYPES[spec.dtype])
