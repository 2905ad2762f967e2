r"""The comparison run: every (task, model, family [+ augmentation], seed) trained, evaluated and reported.

:func:`run_comparison` is what ``python -m escnn_tensor.compare`` calls (:mod:`escnn_tensor.compare.cli` parses
the command line into a :class:`CompareConfig`). Output directory layout::

    DIR/config.json            the configuration of the run
    DIR/results.json           a list of rows, one per (task, model, family, augment, seed); rewritten after each
    DIR/results.md             the table (mean +- std over seeds) and links to the figures
    DIR/errors.png             test and rotated-test errors per family (bar chart)
    DIR/samples_<task>.png     a test sample: input, target and every family's prediction (first model, seed)
    DIR/checkpoints/<job>.pt   one per training job, rewritten after every epoch (atomically)
    DIR/predictions/<job>.pt   the chosen model's prediction of the first test sample (for the figures)

A row of results.json (:data:`ROW_FIELDS`): ``task, model, family, augment, label`` (family, ``+aug`` when
augmented), ``seed``, ``params`` (trainable parameters of the model), ``params_target``, ``hidden`` (its hidden
fields), ``lr`` (chosen on validation) and ``lr_candidates`` (validation error of each), ``epochs``, ``best_epoch``
(chosen on validation), ``val_error``, ``test_error``, ``rotated_test_error`` (worst over the group) and
``rotated_test_errors`` (every element, in :func:`escnn_tensor.group_elements` order), ``equivariance_error``,
``seconds_per_epoch`` (training only, mean over epochs), ``size``, ``n_train``, ``n_val``, ``n_test``, ``dtype``,
``job`` (the checkpoint's name).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..groups import is_integer
from ..representations import field_signature
from .training import JobSpec, Splits, evaluate, make_splits, predict, save_atomic, train_job

__all__ = ["CompareConfig", "run_comparison", "check_config", "variants", "label", "ROW_FIELDS"]

#: the fields of every row of results.json
ROW_FIELDS = (
    "task", "model", "family", "augment", "label", "seed", "params", "params_target", "hidden", "lr",
    "lr_candidates", "epochs", "best_epoch", "val_error", "test_error", "rotated_test_error", "rotated_test_errors",
    "equivariance_error", "seconds_per_epoch", "size", "n_train", "n_val", "n_test", "dtype", "job",
)


@dataclasses.dataclass
class CompareConfig:
    """The configuration of a comparison run (see :mod:`escnn_tensor.compare.cli` for the meaning of each)."""

    tasks: Sequence[str]
    models: Sequence[str]
    families: Sequence[str]
    augment: bool
    params: Optional[int]
    epochs: int
    n_train: int
    n_val: int
    n_test: int
    size: Optional[int]
    seeds: Sequence[int]
    lrs: Sequence[float]
    batch_size: int
    dtype: str
    out: str
    resume: bool = False
    model_options: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)
    data_seed: int = 0
    cache_dir: Optional[str] = None
    progress: bool = True
    figures: bool = True
    threads: Optional[int] = None
    #: when ``size`` is ``None``: each task's ``'default'`` size (``task.default_size``) or ``'quick'`` size
    task_size: str = "default"


def variants(families: Sequence[str], augment: bool) -> List[Tuple[str, bool]]:
    """``(family, augment)`` pairs of a run: every family, plus ``('plain', True)`` with ``augment``."""
    out = [(f, False) for f in families]
    if augment:
        out.append(("plain", True))
    return out


def label(family: str, augment: bool) -> str:
    """The display name of a row: the family, ``+aug`` for augmented training."""
    return family + ("+aug" if augment else "")


def _write_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def run_comparison(
    config: CompareConfig,
    log: Callable[[str], None] = print,
    interrupt_after: Optional[int] = None,
) -> List[Dict[str, Any]]:
    """Run every job of ``config``, write results.json / results.md / figures into ``config.out``; return the rows.

    ``config.threads`` (if not ``None``) sets torch's CPU threads for the run (restored afterwards).
    With ``config.resume`` finished jobs are read back from their checkpoints and unfinished ones continue from
    their last epoch; without it every job starts afresh (old checkpoints are overwritten).
    ``interrupt_after``: testing hook passed to :func:`~escnn_tensor.compare.training.train_job`.
    """
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, log, interrupt_after)
    finally:
        torch.set_num_threads(threads)


def check_config(config: CompareConfig) -> None:
    """Raise ``ValueError`` / ``TypeError`` for a bad configuration before anything is trained.

    Names and numbers are checked, and every (task, model, family) is built once in counting mode (no weights
    drawn, the global RNG untouched), so bad model options and parameter budgets that a family cannot meet are
    reported at the start of a run rather than hours into it.
    """
    from ..data import get_task
    from ..groups import hyperoctahedral_gspace
    from ..models import FAMILIES, MODELS
    from .training import DTYPES

    for name, values, accepted in (("models", config.models, MODELS), ("families", config.families, FAMILIES)):
        bad = [v for v in values if v not in accepted]
        if not values or bad:
            raise ValueError(f"{name} must be a non-empty list from {list(accepted)}, got {list(values)}")
    for name in ("epochs", "n_train", "n_val", "n_test", "batch_size"):
        v = getattr(config, name)
        if not is_integer(v) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not config.seeds or not all(is_integer(s) and s >= 0 for s in config.seeds):
        raise ValueError(f"seeds must be a non-empty list of integers >= 0, got {list(config.seeds)}")
    if not config.lrs or not all(isinstance(lr, (int, float)) and lr > 0 for lr in config.lrs):
        raise ValueError(f"lrs must be a non-empty list of positive learning rates, got {list(config.lrs)}")
    if config.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {config.dtype!r}")
    if config.task_size not in ("default", "quick"):
        raise ValueError(f"task_size must be 'default' or 'quick', got {config.task_size!r}")
    unknown = sorted(set(config.model_options) - set(config.models))
    if unknown:
        raise ValueError(f"model_options for models not in the run: {unknown} (models: {list(config.models)})")
    if not config.tasks:
        raise ValueError("tasks must name at least one task")
    for task in config.tasks:
        t = get_task(task)
        gs = hyperoctahedral_gspace(t.d)
        for model in config.models:
            for family in dict.fromkeys(f for f, _ in variants(config.families, config.augment)):
                with torch.random.fork_rng(devices=[]):
                    options = MODELS[model].options_for(family, config.model_options.get(model, {}))
                    MODELS[model](t.in_type(gs), t.out_type(gs), family, params=config.params, _counting=True,
                                  **options)


def _run(config: CompareConfig, log, interrupt_after) -> List[Dict[str, Any]]:
    from ..data import get_task

    check_config(config)
    out = Path(config.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    _write_json(dataclasses.asdict(config), out / "config.json")
    progress = None
    if config.progress:
        from tqdm.auto import tqdm

        progress = tqdm
    rows: List[Dict[str, Any]] = []
    t_start = time.perf_counter()
    for task in config.tasks:
        t = get_task(task)
        size = t.check_size(config.size if config.size is not None else
                            t.quick_size if config.task_size == "quick" else t.default_size)
        t0 = time.perf_counter()
        splits = make_splits(task, config.n_train, config.n_val, config.n_test, size, config.data_seed,
                             config.cache_dir)
        log(f"[{task}] data: {config.n_train}/{config.n_val}/{config.n_test} samples of size {size} "
            f"({time.perf_counter() - t0:.1f} s)")
        for model in config.models:
            options = tuple(sorted(config.model_options.get(model, {}).items()))
            for family, aug in variants(config.families, config.augment):
                for seed in config.seeds:
                    row = _run_group(config, splits, task, size, model, family, aug, seed, options, progress,
                                     interrupt_after)
                    rows.append(row)
                    _write_json(rows, out / "results.json")
                    log(f"[{task}] {model:9s} {label(family, aug):10s} seed {seed}: params {row['params']}, "
                        f"test {row['test_error']:.4g}, rotated {row['rotated_test_error']:.4g}, "
                        f"equivariance {row['equivariance_error']:.2g}, {row['seconds_per_epoch']:.2f} s/epoch")
    from .report import write_figures, write_markdown

    figures = write_figures(rows, out) if config.figures else []
    write_markdown(rows, out / "results.md", config, figures, time.perf_counter() - t_start)
    return rows


def _run_group(config, splits: Splits, task, size, model, family, aug, seed, options, progress, interrupt_after):
    """Train one (task, model, family, augment, seed) at every learning rate; evaluate the best on validation."""
    best = None  # (spec, predictor, summary) of the best validation error so far
    candidates = {}
    for lr in config.lrs:
        spec = JobSpec(
            task=task, model=model, family=family, augment=aug, seed=seed, lr=float(lr), params=config.params,
            epochs=config.epochs, batch_size=config.batch_size, dtype=config.dtype, size=size,
            n_train=config.n_train, n_val=config.n_val, n_test=config.n_test, data_seed=config.data_seed,
            model_options=options,
        )
        ckpt = Path(config.out) / "checkpoints" / f"{spec.job_id}.pt"
        predictor, summary = train_job(spec, splits, ckpt, resume=config.resume, progress=progress,
                                       interrupt_after=interrupt_after)
        candidates[f"{spec.lr:g}"] = summary["val_error"]
        if best is None or summary["val_error"] < best[2]["val_error"]:
            best = (spec, predictor, summary)
    spec, predictor, summary = best
    metrics = evaluate(predictor, splits)
    x, y = splits.test
    save_atomic(
        {"input": x[0], "target": y[0], "prediction": predict(predictor, x[:1], splits.in_type)[0].double(),
         "in_fields": field_signature(splits.in_type), "out_fields": field_signature(splits.out_type)},
        Path(config.out) / "predictions" / f"{spec.job_id}.pt",
    )
    return {
        "task": task, "model": model, "family": family, "augment": aug, "label": label(family, aug), "seed": seed,
        "params": summary["params"], "params_target": config.params, "hidden": summary["hidden"], "lr": spec.lr,
        "lr_candidates": candidates, "epochs": config.epochs, "best_epoch": summary["best_epoch"],
        "val_error": summary["val_error"], **metrics, "seconds_per_epoch": summary["seconds_per_epoch"],
        "size": size, "n_train": config.n_train, "n_val": config.n_val, "n_test": config.n_test,
        "dtype": config.dtype, "job": spec.job_id,
    }
