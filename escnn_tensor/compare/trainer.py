r"""The training loop of the harness, and nothing else: :class:`Trainer` and the augmentation it applies.

The trainer is handed everything it works with: the model (a :class:`~escnn_tensor.compare.predictor.Predictor`
on its device), the optimizer and the scheduler (stepped once per batch), the loss, the device, the AMP setting
(``'off'``, ``'bf16'``, ``'fp16'`` with a gradient scaler), ``torch.compile`` and the processes
(:class:`~escnn_tensor.compare.distributed.Distributed`). It reads data only through ``len(split)`` and
``split[idx]`` (:mod:`~escnn_tensor.compare.splits`).

Conventions:

* one epoch: the training set in a random order (``torch.randperm`` from a generator seeded by the job's seed), cut
  into global batches of ``batch_size``; each batch optionally moved by random group elements (:func:`augment`,
  its own seeded generator), one optimizer and scheduler step per batch. The generators live on the CPU (so a run
  gives the same batches on every device); their indices are moved to the data's device.
* the loss of a batch is :func:`relative_squared_loss`, :math:`\sum |p - t|^2 / \sum |t|^2` over the global
  batch (see :mod:`~escnn_tensor.compare.distributed` for the sums over processes).
* after every epoch the validation error (:func:`~escnn_tensor.compare.metrics.split_error`) is measured; the
  parameters of the best epoch so far are kept (so the number of epochs is chosen on validation); a non-finite
  validation error (a diverged epoch) is never better than a finite one.
* :meth:`Trainer.state_dict` holds all of it (model, optimizer, scheduler, generators, the global torch RNG state,
  the history and the best epoch), so a run continued from it (:meth:`Trainer.load_state_dict`) ends with
  bit-identical parameters (float64, one thread).
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from escnn.nn import FieldType, GeometricTensor

from ..groups import group_elements
from .distributed import SINGLE, Distributed
from .metrics import split_error
from .splits import fetch, on_device

__all__ = ["Trainer", "augment", "apply_elements", "relative_squared_loss", "AMP_DTYPES"]

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def apply_elements(inputs: torch.Tensor, targets: torch.Tensor, in_type: FieldType, out_type: FieldType,
                   index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(g_i . inputs[i], g_i . targets[i])`` with ``g_i`` the element at position ``index[i]`` of
    :func:`escnn_tensor.group_elements` (escnn's ``GeometricTensor.transform``)."""
    elements = group_elements(in_type.gspace)
    x, y = inputs.clone(), targets.clone()
    index = index.cpu()
    for e in index.unique().tolist():
        sel = (index == e).nonzero().squeeze(1).to(inputs.device)
        g = elements[e]
        x[sel] = GeometricTensor(inputs[sel], in_type).transform(g).tensor
        y[sel] = GeometricTensor(targets[sel], out_type).transform(g).tensor
    return x, y


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
    index = torch.randint(len(group_elements(in_type.gspace)), (inputs.shape[0],), generator=generator)
    x, y = apply_elements(inputs, targets, in_type, out_type, index)
    return x, y, index


def relative_squared_loss(prediction: torch.Tensor, target: torch.Tensor, dist: Distributed = SINGLE
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""``(loss to back-propagate, loss of the global batch)`` of :math:`\sum |p - t|^2 / \sum |t|^2`.

    On one process both are that ratio. On N processes each holds a part of the global batch: the denominator is
    the all-reduced sum, the loss back-propagated is ``N * local numerator / global denominator`` (DDP averages
    gradients, so they become those of the global ratio), and the reported loss is the all-reduced ratio."""
    if not dist.is_distributed:
        loss = (prediction - target).pow(2).sum() / target.pow(2).sum()
        return loss, loss.detach()
    num = (prediction - target).pow(2).sum()
    den = dist.all_reduce_sum(target.detach().pow(2).sum())
    loss = num * dist.world_size / den
    return loss, dist.all_reduce_sum(num.detach()) / den


def _better(value: float, best: float) -> bool:
    """``value < best``, with a non-finite error (a diverged epoch) worse than any finite one."""
    if not math.isfinite(value):
        return False
    return not math.isfinite(best) or value < best


def _train_state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """A copy of the state dict taken in train mode (escnn convolutions add buffers to it in eval mode)."""
    model.train()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Trainer:
    """The training loop of one job.

    Args:
        model: the module to train (an ``EquivariantModule`` GeometricTensor -> GeometricTensor, with ``in_type`` and
            ``out_type``), already on ``device`` and in its dtype.
        optimizer, scheduler: stepped once per batch (``scheduler`` may be ``None``).
        batch_size: the global batch.
        seed: seeds the batch order (``1_000_003 * seed + 1``) and the augmentation (``+ 2``).
        augment: move each sample by a random group element (:func:`augment`).
        loss: ``loss(prediction, target, dist) -> (loss to back-propagate, reported loss)``;
            default :func:`relative_squared_loss`.
        device: where the model and the data are.
        amp: ``'off'``, ``'bf16'`` or ``'fp16'`` (autocast on the device's type; fp16 with a ``GradScaler``).
        compile: train through ``torch.compile(model, fullgraph=True)``; ``True`` for the default backend
            (inductor), or a backend's name (e.g. ``'eager'``: the one graph is captured and checked, no code is
            generated). Evaluation runs the model itself.
        dist: the processes (:data:`~escnn_tensor.compare.distributed.SINGLE` for one).
        progress: a tqdm-like factory, or ``None``; ``desc`` its label.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler=None,
        *,
        batch_size: int,
        seed: int,
        augment: bool = False,
        loss: Callable = relative_squared_loss,
        device: torch.device = torch.device("cpu"),
        amp: str = "off",
        compile: bool = False,
        dist: Distributed = SINGLE,
        progress: Optional[Callable] = None,
        desc: str = "",
    ):
        if amp not in AMP_DTYPES:
            raise ValueError(f"amp must be one of {list(AMP_DTYPES)}, got {amp!r}")
        model = dist.sync_batch_norm(model, device)  # statistics of the global batch (no-op on one process)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.in_type, self.out_type = model.in_type, model.out_type
        self.batch_size, self.augment, self.loss = batch_size, augment, loss
        self.device, self.amp, self.dist = torch.device(device), amp, dist
        self.progress, self.desc = progress, desc
        if compile:
            backend = compile if isinstance(compile, str) else "inductor"
            net = torch.compile(model, fullgraph=True, backend=backend)
        else:
            net = model
        self.net = dist.wrap(net, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == "fp16" else None
        self.batch_gen = torch.Generator().manual_seed(1_000_003 * seed + 1)
        self.aug_gen = torch.Generator().manual_seed(1_000_003 * seed + 2)
        self.epoch = 0
        self.history: List[Dict[str, Any]] = []
        self.seconds: List[float] = []
        self.best: Optional[Dict[str, Any]] = None

    # ---- state ----------------------------------------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """Everything a continued run needs (see the module docstring)."""
        state = {
            "model": _train_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "batch_gen": self.batch_gen.get_state(),
            "aug_gen": self.aug_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "history": self.history,
            "seconds": self.seconds,
            "best": self.best,
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (tensors may be on any device; the RNG states are moved to the CPU)."""
        self.model.train()
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.batch_gen.set_state(state["batch_gen"].cpu())
        self.aug_gen.set_state(state["aug_gen"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.history, self.seconds, self.best = (state[k] for k in ("epoch", "history", "seconds", "best"))

    # ---- the loop -------------------------------------------------------------------------------------------------

    def _autocast(self):
        if self.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            pred = self.net(GeometricTensor(x, self.in_type)).tensor
        if self.amp != "off":
            pred = pred.to(y.dtype)
        loss, reported = self.loss(pred, y, self.dist)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return reported

    def fit(self, train, val, epochs: int, on_epoch_end: Optional[Callable[["Trainer"], None]] = None) -> "Trainer":
        """Train from the current epoch up to ``epochs``; ``train`` and ``val`` are splits (``len`` / ``[idx]``).
        ``on_epoch_end(trainer)`` is called after each epoch (e.g. to write a checkpoint)."""
        dtype = next(self.model.parameters()).dtype
        train = on_device(train, self.device, dtype)
        val = on_device(val, self.device)
        n = len(train)
        todo = range(self.epoch, epochs)
        bar = self.progress(todo, desc=self.desc, unit="epoch", leave=False) if self.progress else todo
        n_elements = len(group_elements(self.in_type.gspace))
        for epoch in bar:
            t0 = time.perf_counter()
            self.model.train()
            total = torch.zeros((), dtype=torch.float64, device=self.device)
            order = torch.randperm(n, generator=self.batch_gen)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                if self.augment:
                    elements = torch.randint(n_elements, (idx.shape[0],), generator=self.aug_gen)
                local = self.dist.part(torch.arange(idx.shape[0]))
                x, y = fetch(train, idx[local])
                if self.augment:
                    x, y = apply_elements(x, y, self.in_type, self.out_type, elements[local])
                reported = self._step(x, y)
                total = total + reported.double() * idx.shape[0]
            seconds = time.perf_counter() - t0
            val_error = split_error(self.model, val, self.in_type, self.out_type, self.dist)
            self.history.append({"epoch": epoch + 1, "train_loss": (total / n).item(), "val_error": val_error})
            self.seconds.append(seconds)
            if self.best is None or _better(val_error, self.best["val_error"]):
                self.best = {"epoch": epoch + 1, "val_error": val_error, "model": _train_state(self.model)}
            self.epoch = epoch + 1
            if on_epoch_end is not None:
                on_epoch_end(self)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{self.history[-1]['train_loss']:.3g}", val=f"{val_error:.3g}")
        return self

    def load_best(self) -> torch.nn.Module:
        """Load the parameters of the best validation epoch into the model; returns it in eval mode."""
        if self.best is None:
            raise ValueError("no epoch has been trained; the job needs at least one epoch")
        self.model.train()
        self.model.load_state_dict(self.best["model"])
        self.model.eval()
        return self.model
