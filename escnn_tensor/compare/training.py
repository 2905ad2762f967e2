r"""Training, checkpoints and metrics of the comparison harness (:mod:`escnn_tensor.compare`).

One *job* trains one model (task, architecture, family, augmentation, seed, learning rate) and is checkpointed
after every epoch, atomically, so that a killed run continues where it stopped (``--resume``) and ends with
bit-identical parameters (float64, one thread): the checkpoint holds the model, Adam's and the scheduler's
state, the RNG states of batch order and augmentation, the global torch RNG state and the history.

Conventions:

* **error** of predictions ``p`` against targets ``t`` over a whole set: :func:`relative_error`
  :math:`\sum |p - t|^2 / \sum |t|^2` (in the data's own units); the training loss is the same quantity on each
  batch.
* **normalisation** (:class:`Predictor`): every input and target field is scaled by one number (its RMS
  component over the training set, after removing the mean of true scalars), a change of units that commutes
  with the group, so an equivariant model stays equivariant; predictions are mapped back before any error.
* **schedule**: Adam, learning rate decaying by a cosine from ``lr`` to 0 over all steps.
* **model selection on the validation split only**: after every epoch the validation error is measured; the
  parameters of the best epoch are kept (so the number of epochs is chosen on validation), and of several
  learning rates the one with the best validation error is chosen. The test split is used once, for the chosen
  model.
* **augmentation** (:func:`augment`): every training sample is moved by a random group element, input and
  target by the same one, through escnn's ``GeometricTensor.transform``.
* **data and seeds**: one data set of ``n_train + n_val + n_test`` samples per task (:func:`escnn_tensor.data.load`
  with ``data_seed``), split in that order; the job's ``seed`` sets the model's initialisation, the batch order and
  the augmentation, so seeds differ in training, not in data.
* **metrics** (:func:`evaluate`): test error; the error on the test set moved by every group element
  (model(g x) against g y; the worst is reported); the equivariance error
  ``max_g max|f(g x) - g f(x)| / max|f(x)|`` on the test inputs, measured in float64.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from escnn.nn import FieldType, GeometricTensor
from escnn.nn.modules.equivariant_module import EquivariantModule

from ..groups import group_elements, hyperoctahedral_gspace
from ..models import MODELS, count_parameters
from ..representations import field_signature
from ..testing import equivariance_errors

__all__ = [
    "JobSpec",
    "Splits",
    "Predictor",
    "TrainingInterrupted",
    "relative_error",
    "augment",
    "predict",
    "rotated_errors",
    "equivariance_error",
    "make_splits",
    "build_predictor",
    "train_job",
    "evaluate",
    "save_atomic",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class TrainingInterrupted(RuntimeError):
    """Raised by :func:`train_job` when its ``interrupt_after`` hook fires (after that epoch's checkpoint)."""


# ----------------------------------------------------------------------------------------------------------------
# metrics and augmentation
# ----------------------------------------------------------------------------------------------------------------


def relative_error(prediction: torch.Tensor, target: torch.Tensor) -> float:
    r"""Relative squared error over the whole set, :math:`\sum |p - t|^2 / \sum |t|^2` (a Python float)."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    den = target.double().pow(2).sum()
    if den == 0:
        raise ValueError("the targets are identically zero; the relative error is undefined")
    return ((prediction.double() - target.double()).pow(2).sum() / den).item()


def augment(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    in_type: FieldType,
    out_type: FieldType,
    generator: torch.Generator,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move every sample by a random group element: input and target by the same one.

    Returns ``(inputs', targets', index)`` with ``index[i]`` the position in :func:`escnn_tensor.group_elements`
    of sample ``i``'s element; ``inputs'[i] = g_i . inputs[i]`` and ``targets'[i] = g_i . targets[i]``, with
    ``g .`` escnn's ``GeometricTensor.transform`` on ``in_type`` / ``out_type``. Draws from ``generator`` only.
    """
    elements = group_elements(in_type.gspace)
    index = torch.randint(len(elements), (inputs.shape[0],), generator=generator)
    x, y = inputs.clone(), targets.clone()
    for e in index.unique().tolist():
        sel = (index == e).nonzero().squeeze(1)
        g = elements[e]
        x[sel] = GeometricTensor(inputs[sel], in_type).transform(g).tensor
        y[sel] = GeometricTensor(targets[sel], out_type).transform(g).tensor
    return x, y, index


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: torch.Tensor, in_type: FieldType, batch_size: int = 64) -> torch.Tensor:
    """``model`` applied to ``inputs`` (cast to the model's dtype) in eval mode, in batches; a plain tensor."""
    model.eval()
    dtype = next(model.parameters()).dtype
    out = [model(GeometricTensor(inputs[i : i + batch_size].to(dtype), in_type)).tensor
           for i in range(0, inputs.shape[0], batch_size)]
    return torch.cat(out)


def rotated_errors(model, inputs, targets, in_type: FieldType, out_type: FieldType) -> List[float]:
    """``[relative_error(model(g.x), g.y) for g in group_elements]`` over the whole set, in eval mode."""
    errors = []
    for g in group_elements(in_type.gspace):
        xg = GeometricTensor(inputs, in_type).transform(g).tensor
        yg = GeometricTensor(targets, out_type).transform(g).tensor
        errors.append(relative_error(predict(model, xg, in_type), yg))
    return errors


def equivariance_error(model: torch.nn.Module, inputs: torch.Tensor, in_type: FieldType) -> float:
    r"""``max_g max|f(g.x) - g.f(x)| / max|f(x)|`` over the whole set, computed in float64.

    The model is cast to float64 for the measurement and cast back afterwards (a float32 -> float64 -> float32
    round trip is exact), so the number shows the construction's equivariance, not float32 round-off.
    """
    dtype = next(model.parameters()).dtype
    model.double()
    try:
        f = lambda x: GeometricTensor(predict(model, x.tensor, in_type), model.out_type)  # noqa: E731
        errors = equivariance_errors(f, GeometricTensor(inputs.double(), in_type))
    finally:
        model.to(dtype)
    return max(errors.values())


# ----------------------------------------------------------------------------------------------------------------
# data and normalisation
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Splits:
    """Train / validation / test inputs and targets (float64, escnn layout) with their field types."""

    task: str
    in_type: FieldType
    out_type: FieldType
    train: Tuple[torch.Tensor, torch.Tensor]
    val: Tuple[torch.Tensor, torch.Tensor]
    test: Tuple[torch.Tensor, torch.Tensor]


def make_splits(task: str, n_train: int, n_val: int, n_test: int, size: int, data_seed: int = 0,
                cache_dir: Optional[str] = None) -> Splits:
    """One data set of ``n_train + n_val + n_test`` samples from :func:`escnn_tensor.data.load`, split in order."""
    from ..data import get_task, load

    t = get_task(task)
    data = load(task, n_train + n_val + n_test, size, data_seed, cache_dir=cache_dir)
    gs = hyperoctahedral_gspace(t.d)
    x, y = data.inputs, data.targets
    a, b = n_train, n_train + n_val
    return Splits(task, t.in_type(gs), t.out_type(gs), (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:]))


def _field_affine(field_type: FieldType, data: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per channel ``(scale, shift)``: one scale per field (RMS component), a shift only for true scalars."""
    d = field_type.gspace.dimensionality
    scale = torch.ones(field_type.size, dtype=torch.float64)
    shift = torch.zeros(field_type.size, dtype=torch.float64)
    start = 0
    for k, p in field_signature(field_type):
        stop = start + d**k
        block = data[:, start:stop].double()
        if (k, p) == (0, 1):
            shift[start] = block.mean()
        rms = (block - shift[start:stop].view(1, -1, *([1] * d))).pow(2).mean().sqrt().item()
        scale[start:stop] = rms if rms > 0 else 1.0
        start = stop
    return scale, shift


class Predictor(EquivariantModule):
    r"""A model with fixed normalisation: :math:`x \mapsto s_y \odot f((x - m_x) / s_x) + m_y` per channel.

    ``s`` holds one number per field (repeated over its components), ``m`` is nonzero only on true scalars, so the
    map commutes with the group whenever ``f`` does. Built by :func:`build_predictor`; the scales are buffers.
    """

    def __init__(self, model: EquivariantModule, train_inputs: torch.Tensor, train_targets: torch.Tensor):
        super().__init__()
        self.model = model
        self.in_type, self.out_type = model.in_type, model.out_type
        d = model.d
        shape = (1, -1) + (1,) * d
        for name, ft, data in (("in", self.in_type, train_inputs), ("out", self.out_type, train_targets)):
            scale, shift = _field_affine(ft, data)
            self.register_buffer(f"{name}_scale", scale.view(shape).to(torch.get_default_dtype()))
            self.register_buffer(f"{name}_shift", shift.view(shape).to(torch.get_default_dtype()))

    def forward(self, x: GeometricTensor) -> GeometricTensor:
        t = (x.tensor - self.in_shift) / self.in_scale
        y = self.model(GeometricTensor(t, self.in_type)).tensor
        return GeometricTensor(y * self.out_scale + self.out_shift, self.out_type)

    def evaluate_output_shape(self, input_shape):
        return self.model.evaluate_output_shape(input_shape)


# ----------------------------------------------------------------------------------------------------------------
# jobs
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """Everything that determines one training run (its id hashes all of it)."""

    task: str
    model: str
    family: str
    augment: bool
    seed: int
    lr: float
    params: Optional[int]
    epochs: int
    batch_size: int
    dtype: str
    size: int
    n_train: int
    n_val: int
    n_test: int
    data_seed: int = 0
    model_options: Tuple[Tuple[str, Any], ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model_options"] = {k: v for k, v in self.model_options}
        return out

    @property
    def job_id(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        aug = "-aug" if self.augment else ""
        return f"{self.task}-{self.model}-{self.family}{aug}-s{self.seed}-lr{self.lr:g}-{digest}"


def build_predictor(spec: JobSpec, splits: Splits) -> Predictor:
    """The model of ``spec`` (seeded construction, the global RNG state is restored) wrapped with normalisation."""
    cls = MODELS[spec.model]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = cls(splits.in_type, splits.out_type, spec.family, params=spec.params,
                    **cls.options_for(spec.family, dict(spec.model_options)))  # only what the family uses
    return Predictor(model, *splits.train).to(DTYPES[spec.dtype])


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same directory, then rename over ``path`` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _train_state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """A copy of the state dict taken in train mode (escnn convolutions add buffers to it in eval mode)."""
    model.train()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _batches(n: int, batch_size: int, generator: torch.Generator) -> List[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def train_job(
    spec: JobSpec,
    splits: Splits,
    checkpoint: Path,
    resume: bool = False,
    progress: Optional[Callable] = None,
    interrupt_after: Optional[int] = None,
) -> Tuple[Predictor, Dict[str, Any]]:
    """Train the job ``spec`` (or continue it from ``checkpoint`` with ``resume``); returns the predictor holding
    the parameters of its best validation epoch, and a summary (``val_error``, ``best_epoch``, ``history``,
    ``seconds_per_epoch``, ``params``, ``hidden``).

    A checkpoint is written (atomically) after every epoch. ``progress``: a tqdm-like factory or ``None``.
    ``interrupt_after``: testing hook: raise :class:`TrainingInterrupted` right after epoch ``interrupt_after`` is
    saved (if the job passes through that epoch in this call and has more to go), as a kill would stop it.
    """
    predictor = build_predictor(spec, splits)
    dtype = DTYPES[spec.dtype]
    params = [p for p in predictor.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=spec.lr)
    steps_per_epoch = math.ceil(splits.train[0].shape[0] / spec.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, spec.epochs * steps_per_epoch))
    batch_gen = torch.Generator().manual_seed(1_000_003 * spec.seed + 1)
    aug_gen = torch.Generator().manual_seed(1_000_003 * spec.seed + 2)
    state: Dict[str, Any] = {"epoch": 0, "history": [], "seconds": [], "best": None}

    if resume and Path(checkpoint).exists():
        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if ck.get("spec") != spec.to_dict():
            raise ValueError(f"checkpoint {checkpoint} belongs to another job ({ck.get('spec')}); not resuming it")
        predictor.train()
        predictor.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        batch_gen.set_state(ck["batch_gen"])
        aug_gen.set_state(ck["aug_gen"])
        torch.set_rng_state(ck["torch_rng"])
        state = {k: ck[k] for k in ("epoch", "history", "seconds", "best")}

    x_train, y_train = (t.to(dtype) for t in splits.train)
    x_val, y_val = splits.val
    in_type, out_type = splits.in_type, splits.out_type
    epochs = range(state["epoch"], spec.epochs)
    bar = progress(epochs, desc=spec.job_id[: spec.job_id.rindex("-")], unit="epoch", leave=False) if progress else epochs
    for epoch in bar:
        t0 = time.perf_counter()
        predictor.train()
        total = 0.0
        for idx in _batches(x_train.shape[0], spec.batch_size, batch_gen):
            x, y = x_train[idx], y_train[idx]
            if spec.augment:
                x, y, _ = augment(x, y, in_type, out_type, aug_gen)
            pred = predictor(GeometricTensor(x, in_type)).tensor
            loss = (pred - y).pow(2).sum() / y.pow(2).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
        seconds = time.perf_counter() - t0
        val = relative_error(predict(predictor, x_val, in_type), y_val)
        state["history"].append({"epoch": epoch + 1, "train_loss": total / x_train.shape[0], "val_error": val})
        state["seconds"].append(seconds)
        if state["best"] is None or val < state["best"]["val_error"]:
            state["best"] = {"epoch": epoch + 1, "val_error": val, "model": _train_state(predictor)}
        state["epoch"] = epoch + 1
        save_atomic(
            {
                "spec": spec.to_dict(),
                "model": _train_state(predictor),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "batch_gen": batch_gen.get_state(),
                "aug_gen": aug_gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                **state,
            },
            checkpoint,
        )
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{state['history'][-1]['train_loss']:.3g}", val=f"{val:.3g}")
        if interrupt_after is not None and epoch + 1 == interrupt_after < spec.epochs:
            raise TrainingInterrupted(f"{spec.job_id}: interrupted after epoch {epoch + 1} (testing hook)")

    if state["best"] is None:
        raise ValueError(f"job {spec.job_id} has epochs={spec.epochs}; it needs at least one epoch")
    predictor.train()
    predictor.load_state_dict(state["best"]["model"])
    predictor.eval()
    summary = {
        "val_error": state["best"]["val_error"],
        "best_epoch": state["best"]["epoch"],
        "history": state["history"],
        "seconds_per_epoch": sum(state["seconds"]) / len(state["seconds"]),
        "params": count_parameters(predictor),
        "hidden": predictor.model.hidden,
    }
    return predictor, summary


def evaluate(predictor: Predictor, splits: Splits) -> Dict[str, Any]:
    """Test metrics of a trained predictor: ``test_error``, ``rotated_test_error`` (worst over the group),
    ``rotated_test_errors`` (per element, in :func:`escnn_tensor.group_elements` order), ``equivariance_error``."""
    x, y = splits.test
    rotated = rotated_errors(predictor, x, y, splits.in_type, splits.out_type)
    return {
        "test_error": relative_error(predict(predictor, x, splits.in_type), y),
        "rotated_test_error": max(rotated),
        "rotated_test_errors": rotated,
        "equivariance_error": equivariance_error(predictor, x, splits.in_type),
    }
