r"""One row of a run, executed: its jobs trained (one per learning rate), the best chosen on validation, tested once,
and written to ``DIR/jobs/<row id>.json`` with its checkpoints (``DIR/checkpoints/<job id>.pt``) and the prediction
of the first test sample (``DIR/predictions/<job id>.pt``, for the figures). Rows write only their own files, so
shards of one sweep cannot collide.

A job's checkpoint is written after every epoch, atomically, so a killed run continues where it stopped
(``--resume``) and ends with bit-identical parameters (float64, one thread).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .. import _io
from ..models import count_parameters
from ..representations import field_signature
from .metrics import evaluate, predict
from .plan import JobSpec, RowSpec, label
from .predictor import Predictor, build_predictor
from .runtime import Runtime
from .select import choose
from .splits import fetch
from .trainer import Trainer

__all__ = ["Runtime", "TrainingInterrupted", "train_job", "run_row", "save_atomic", "write_json", "read_row",
           "row_path"]


class TrainingInterrupted(RuntimeError):
    """Raised by :func:`train_job` when its ``interrupt_after`` hook fires (after that epoch's checkpoint)."""


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` atomically (``escnn_tensor._io.save_torch``: temporary file, fsync, rename)."""
    _io.save_torch(obj, path)


def write_json(obj: Any, path: Path) -> None:
    """``obj`` as indented JSON, written atomically (``escnn_tensor._io.write_json``)."""
    _io.write_json(obj, path, indent=1, default=str)


def train_job(
    spec: JobSpec,
    splits,
    checkpoint: Path,
    resume: bool = False,
    progress: Optional[Callable] = None,
    interrupt_after: Optional[int] = None,
    runtime: Runtime = Runtime(),
    log: Callable[[str], None] = print,
    save: bool = True,
) -> Tuple[Predictor, Dict[str, Any]]:
    """Train the job ``spec`` (or continue it from ``checkpoint`` with ``resume``); returns the predictor holding
    the parameters of its best validation epoch, and a summary (``val_error``, ``best_epoch``, ``history``,
    ``seconds_per_epoch``, ``params``, ``hidden``).

    Adam with a cosine decay of the learning rate from ``spec.lr`` to 0 over all steps. A checkpoint is written
    (atomically, by the writing process) after every epoch. ``progress``: a tqdm-like factory or ``None``.
    ``interrupt_after``: testing hook: raise :class:`TrainingInterrupted` right after epoch ``interrupt_after`` is
    saved (if the job passes through that epoch in this call and has more to go), as a kill would stop it.

    Checkpoints carry a SHA-256 (``escnn_tensor._io.save_checkpoint``); on ``resume`` a corrupt, truncated or empty
    one is reported by ``log`` in one line naming the file, and the job restarts from scratch. ``log`` also says
    from which epoch a job continues. ``save=False`` writes no checkpoint (nothing to resume from; an existing one
    is still read with ``resume``).
    """
    predictor = build_predictor(spec, splits).to(runtime.device)
    params = [p for p in predictor.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=spec.lr)
    steps_per_epoch = math.ceil(len(splits.train) / spec.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, spec.epochs * steps_per_epoch))
    trainer = Trainer(predictor, optimizer, scheduler, batch_size=spec.batch_size, seed=spec.seed,
                      augment=spec.augment, device=runtime.device, amp=runtime.amp, compile=runtime.compile,
                      dist=runtime.dist, progress=progress, desc=spec.job_id[: spec.job_id.rindex("-")])
    if resume and Path(checkpoint).exists():
        try:
            ck = _io.load_checkpoint(checkpoint, map_location=runtime.device)
        except _io.CorruptCheckpointError as e:
            log(f"{e}; job {spec.job_id} restarts from scratch")
            ck = None
        if ck is not None:
            if not isinstance(ck, dict) or ck.get("spec") != spec.to_dict():
                other = ck.get("spec") if isinstance(ck, dict) else type(ck).__name__
                raise ValueError(f"checkpoint {checkpoint} belongs to another job ({other}); not resuming it")
            trainer.load_state_dict(ck)
            done = "finished" if trainer.epoch >= spec.epochs else "continues"
            log(f"[resume] {spec.job_id}: {done} from its checkpoint at epoch {trainer.epoch} of {spec.epochs}")

    def on_epoch_end(t: Trainer) -> None:
        if save and runtime.dist.is_writer:
            _io.save_checkpoint({"spec": spec.to_dict(), **t.state_dict()}, checkpoint)
        if interrupt_after is not None and t.epoch == interrupt_after < spec.epochs:
            raise TrainingInterrupted(f"{spec.job_id}: interrupted after epoch {t.epoch} (testing hook)")

    if spec.epochs < 1:
        raise ValueError(f"job {spec.job_id} has epochs={spec.epochs}; it needs at least one epoch")
    trainer.fit(splits.train, splits.val, spec.epochs, on_epoch_end)
    trainer.load_best()
    summary = {
        "val_error": trainer.best["val_error"],
        "best_epoch": trainer.best["epoch"],
        "history": trainer.history,
        "seconds_per_epoch": sum(trainer.seconds) / len(trainer.seconds),
        "params": count_parameters(predictor),
        "hidden": predictor.model.hidden,
    }
    return predictor, summary


def row_path(out: Path, row: RowSpec) -> Path:
    """``DIR/jobs/<row id>.json``."""
    return Path(out) / "jobs" / f"{row.row_id}.json"


def read_row(path: Path) -> Dict[str, Any]:
    """A job file written by :func:`run_row`: ``{"row_id", "index", "row", "jobs", "seconds"}``."""
    return json.loads(Path(path).read_text())


def finished_row(out: Path, row: RowSpec, rollout: Optional[int]) -> Optional[Dict[str, Any]]:
    """The result row of ``row`` read from its job file ``DIR/jobs/<row id>.json`` when a finished run wrote it for
    exactly this row (the same job specs) with its prediction file, and with ``rollout`` steps of rollout errors
    when ``rollout`` is given (none when it is ``None``); ``None`` otherwise (absent, unreadable or another row's).
    ``--resume`` takes such rows as they are: a finished row needs neither its checkpoints nor its data."""
    path = row_path(out, row)
    try:
        job = read_row(path)
    except (OSError, ValueError):
        return None
    if not isinstance(job, dict) or job.get("row_id") != row.row_id or not isinstance(job.get("row"), dict):
        return None
    specs = json.loads(json.dumps([j.to_dict() for j in row.jobs]))
    if [j.get("spec") for j in job.get("jobs", []) if isinstance(j, dict)] != specs:
        return None
    result = job["row"]
    errors = result.get("rollout_errors")
    if (errors is None) != (rollout is None) or (errors is not None and len(errors) != rollout):
        return None
    if not (Path(out) / "predictions" / f"{result.get('job')}.pt").exists():
        return None
    return result


def run_row(
    row: RowSpec,
    splits,
    out: Path,
    params_target: Optional[int],
    resume: bool = False,
    progress: Optional[Callable] = None,
    interrupt_after: Optional[int] = None,
    runtime: Runtime = Runtime(),
    rollout: Optional[int] = None,
    log: Callable[[str], None] = print,
    checkpoints: bool = True,
) -> Dict[str, Any]:
    """Train every job of ``row``, keep the best on validation, test it once; write ``DIR/jobs/<row id>.json`` (the
    row of results.json, each job's summary and history) and the prediction of the first test sample; return the
    row (a dict with the keys of :data:`~escnn_tensor.compare.runner.ROW_FIELDS`). ``rollout``: ``T`` steps of
    autoregressive rollout on ``splits.trajectories`` (:func:`~escnn_tensor.compare.rollout.rollout_errors`),
    written as ``rollout_errors``. ``checkpoints=False``: no checkpoint per epoch (see :func:`train_job`)."""
    out = Path(out)
    t0 = time.perf_counter()
    trained: List[Tuple[JobSpec, Predictor, Dict[str, Any]]] = []
    for spec in row.jobs:
        ckpt = out / "checkpoints" / f"{spec.job_id}.pt"
        predictor, summary = train_job(spec, splits, ckpt, resume=resume, progress=progress,
                                       interrupt_after=interrupt_after, runtime=runtime, log=log, save=checkpoints)
        trained.append((spec, predictor, summary))
    best = choose([s for _, _, s in trained])
    spec, predictor, summary = trained[best]
    metrics = evaluate(predictor, splits, runtime.dist)
    s = row.spec
    result = {
        "task": s.task, "model": s.model, "family": s.family, "augment": s.augment,
        "label": label(s.family, s.augment, s.average),
        "seed": s.seed, "params": summary["params"], "params_target": params_target, "hidden": summary["hidden"],
        "lr": spec.lr, "lr_candidates": {f"{j.lr:g}": sm["val_error"] for j, _, sm in trained},
        "epochs": s.epochs, "best_epoch": summary["best_epoch"], "val_error": summary["val_error"], **metrics,
        "seconds_per_epoch": summary["seconds_per_epoch"], "size": s.size, "n_train": s.n_train, "n_val": s.n_val,
        "n_test": s.n_test, "dtype": s.dtype, "job": spec.job_id, "group": splits.group, **runtime.describe(),
        "average": s.average,
        "diverged": not all(math.isfinite(v) for v in (summary["val_error"], metrics["test_error"],
                                                      metrics["rotated_test_error"])),
        "rollout_errors": None,
    }
    if rollout is not None:
        if splits.trajectories is None:
            raise ValueError(f"task {s.task!r} has no test trajectories for --rollout (a time series: inputs and "
                             f"targets the same fields, time_offset >= 1; or the built-in navier-stokes)")
        from .rollout import rollout_errors

        result["rollout_errors"] = rollout_errors(predictor, splits.trajectories, splits.in_type, rollout,
                                                  device=runtime.device)
    if runtime.dist.is_writer:
        x, y = fetch(splits.test, torch.arange(1))
        save_atomic(
            {"input": x[0].cpu(), "target": y[0].cpu(),
             "prediction": predict(predictor, x, splits.in_type)[0].double().cpu(),
             "in_fields": field_signature(splits.in_type, with_symmetry=True),
             "out_fields": field_signature(splits.out_type, with_symmetry=True)},
            out / "predictions" / f"{spec.job_id}.pt",
        )
        write_json(
            {"row_id": row.row_id, "index": row.index, "row": result, "seconds": time.perf_counter() - t0,
             "jobs": [{"job": j.job_id, "spec": j.to_dict(), **{k: v for k, v in sm.items()}}
                      for j, _, sm in trained]},
            row_path(out, row),
        )
    return result
