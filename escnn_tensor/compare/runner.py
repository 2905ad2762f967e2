r"""The comparison run: every row of the plan executed, and the results written from the job files.

:func:`run_comparison` is what ``python -m escnn_tensor.compare`` calls (:mod:`escnn_tensor.compare.cli` parses
the command line into a :class:`CompareConfig`). It is a short pipeline of the modules beside it:
:func:`~escnn_tensor.compare.plan.plan` (the rows; ``shard`` picks some of them),
:func:`~escnn_tensor.compare.splits.load_splits` (data), :func:`~escnn_tensor.compare.execute.run_row` (train,
select, test, write the job file), :func:`~escnn_tensor.compare.merge.write_results` (table and figures).
Output directory layout::

    DIR/config.json            the configuration of the run
    DIR/jobs/<row id>.json     one per finished row: its row of results.json, and each job's summary and history
    DIR/results.json           a list of rows, one per (task, model, family, augment, seed); rewritten after each
    DIR/results.md             the table (mean +- std over seeds) and links to the figures
    DIR/errors.png             test and rotated-test errors per family (bar chart)
    DIR/samples_<task>.png     a test sample: input, target, every family's prediction and residual (first model, seed)
    DIR/learning_curves.png    train and validation error per epoch (figures: escnn_tensor.compare.figures)
    DIR/efficiency.png         test error against n_train, with several --samples (its table is in results.md)
    DIR/rollout.png            error per rollout step, for rows with rollout_errors (its table is in results.md)
    DIR/checkpoints/<job>.pt   one per training job, rewritten after every epoch (atomically)
    DIR/predictions/<job>.pt   the chosen model's prediction of the first test sample (for the figures)

A row of results.json (:data:`ROW_FIELDS`): ``task, model, family, augment, label`` (family, ``+aug`` when
augmented), ``seed``, ``params`` (trainable parameters of the model), ``params_target``, ``hidden`` (its hidden
fields), ``lr`` (chosen on validation) and ``lr_candidates`` (validation error of each), ``epochs``, ``best_epoch``
(chosen on validation), ``val_error``, ``test_error``, ``rotated_test_error`` (worst over the group) and
``rotated_test_errors`` (every element, in :func:`escnn_tensor.group_elements` order), ``equivariance_error``,
``seconds_per_epoch`` (training only, mean over epochs), ``size``, ``n_train``, ``n_val``, ``n_test``, ``dtype``,
``job`` (the chosen job's id, its checkpoint's name), ``group`` (``'D4'``, ``'Oh'``), ``device``, ``world_size``,
``amp``, ``compile``, ``average`` (group-averaged rows), ``diverged`` (a non-finite test error) and
``rollout_errors`` (``None`` without rollouts).
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from .._io import DirectoryLockedError, lock_directory
from .config import (CompareConfig, ConfigError, check_config, models_default_nonlinearity, train_sizes,
                     with_default_nonlinearity)
from .execute import finished_row, row_path, run_row, write_json
from .merge import collect, write_results
from .plan import label, parse_shard, plan, shard, variants
from .runtime import Runtime, make_runtime
from .splits import first, load_splits, to_device

__all__ = ["CompareConfig", "run_comparison", "check_config", "variants", "label", "ROW_FIELDS"]

#: the fields of every row of results.json
ROW_FIELDS = (
    "task", "model", "family", "augment", "label", "seed", "params", "params_target", "hidden", "lr",
    "lr_candidates", "epochs", "best_epoch", "val_error", "test_error", "rotated_test_error", "rotated_test_errors",
    "equivariance_error", "seconds_per_epoch", "size", "n_train", "n_val", "n_test", "dtype", "job", "group",
    "device", "world_size", "amp", "compile", "average", "diverged", "rollout_errors",
)


def run_comparison(
    config: CompareConfig,
    log: Callable[[str], None] = print,
    interrupt_after: Optional[int] = None,
) -> List[Dict[str, Any]]:
    """Run every row of ``config`` (of its shard, with ``config.shard``), write the job files and results.json /
    results.md / figures into ``config.out``; return the rows of this run.

    ``config.device``, ``config.amp``, ``config.compile`` say where and how (:mod:`~escnn_tensor.compare.runtime`);
    under ``torchrun`` the processes train each job together and only rank 0 writes.
    ``config.threads`` (if not ``None``) sets torch's CPU threads for the run (restored afterwards).
    With ``config.resume`` a row whose job file a finished run wrote (``DIR/jobs/<row id>.json``, with its
    prediction) is taken as it is, without its data or checkpoints; finished jobs of other rows are read back from
    their checkpoints and unfinished ones continue from their last epoch; without it every job starts afresh (old
    checkpoints are overwritten).
    Raises :class:`~escnn_tensor.compare.config.ConfigError` (one line) for bad settings, before anything is
    trained or when ``config.out`` holds the results of another sweep (they are never overwritten; the same sweep
    is run again, or continued with ``resume``), and ``escnn_tensor._io.DirectoryLockedError`` when another run
    holds ``config.out``.
    ``interrupt_after``: testing hook passed to :func:`~escnn_tensor.compare.execute.train_job`.
    """
    try:
        config = with_default_nonlinearity(config)
        check_config(config)
        runtime = make_runtime(config)
    except (ValueError, TypeError) as e:  # bad settings: one line, before anything is trained
        raise ConfigError(" ".join(str(e).split())) from e
    if config.resume and config.default_nonlinearity != models_default_nonlinearity(config.models):
        log(f"--resume: {config.out} is a run of geometric models with nonlinearity={config.default_nonlinearity!r} "
            f"(the default when it started); its rows keep it (state another with --model-option)")
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        with contextlib.ExitStack() as stack:
            refused = None
            if runtime.dist.is_writer:  # one run per output directory; refused in one line otherwise
                try:
                    stack.enter_context(lock_directory(config.out))
                    refused = _other_sweep(config)
                except DirectoryLockedError as e:
                    refused = ("lock", str(e.directory), e.holder)
            refused = runtime.dist.broadcast_object(refused)  # under torchrun every process stops together
            if refused is not None:
                raise DirectoryLockedError(*refused[1:]) if refused[0] == "lock" else ConfigError(refused[1])
            if not runtime.dist.is_writer:  # under torchrun: rank 0 writes and logs
                log = lambda line: None  # noqa: E731
            if runtime.dist.is_distributed:
                log(f"{runtime.dist.world_size} processes, global batch {config.batch_size}, device "
                    f"{runtime.device}" + ("; torch's BatchNorm (plain, steerable families) keeps per-process "
                                           "statistics on the CPU" if runtime.device.type == "cpu" else ""))
            rows = _run(config, log, interrupt_after, runtime)
        runtime.dist.close()
        return rows
    finally:
        torch.set_num_threads(threads)
        runtime.dist.close(clean=False)  # after an error (a no-op when closed above)


def _other_sweep(config: CompareConfig):
    """``('config', message)`` when ``config.out`` holds the results of another sweep and this run would replace
    them (without ``--resume``); ``None`` otherwise (an empty directory, the same sweep, or a run continued)."""
    import json

    from .config import config_from_dict
    from .merge import SWEEP_KEYS, _sweep

    out = Path(config.out)
    if config.resume or not (out / "config.json").exists() or not (out / "results.json").exists():
        return None
    try:
        old = _sweep(config_from_dict(json.loads((out / "config.json").read_text())))
    except (ValueError, TypeError):
        return None
    new = _sweep(config)
    diff = [k for k in SWEEP_KEYS if old.get(k) != new.get(k)]
    if not diff:
        return None
    return ("config", f"--out {out} holds the results of another run (its settings differ in {', '.join(diff)}); "
                      f"give another --out, or delete {out} to replace them")


def _run(config: CompareConfig, log, interrupt_after, runtime: Runtime) -> List[Dict[str, Any]]:
    rows_plan = plan(config)
    mine = shard(rows_plan, *parse_shard(config.shard)) if config.shard else rows_plan
    out = Path(config.out)
    writer = runtime.dist.is_writer
    from ..data import FileTask, get_task, has_trajectories

    tasks = {get_task(t).name: get_task(t) for t in config.tasks}  # a row's task is its name; a spec its path

    def data(name: str):
        t = tasks[name]
        steps = config.rollout if config.rollout is not None and has_trajectories(t) else None
        size = t.check_size(None) if isinstance(t, FileTask) else next(r.spec.size for r in mine if r.spec.task == name)
        n_pool = max(train_sizes(config))  # several sizes: nested training sets, shared validation and test
        return load_splits(t, n_pool, config.n_val, config.n_test, size, config.data_seed, config.cache_dir,
                           rollout_steps=steps)

    # data read from files is read (and checked: missing fields, NaNs, too few trajectories) before anything is
    # written, so bad data end the run with one line and an untouched --out
    preloaded = {name: data(name) for name, t in tasks.items() if isinstance(t, FileTask)
                 and any(r.spec.task == name for r in mine)}
    for name in preloaded:  # the run's sample counts apply to every task; say where they replace a spec's own
        own = {k: v for k, v in tasks[name].split_options.items() if k in ("n_train", "n_val", "n_test")}
        used = {"n_train": max(train_sizes(config)), "n_val": config.n_val, "n_test": config.n_test}
        if any(used[k] != v for k, v in own.items()):
            log(f"[{name}] the run's sample counts {used} replace the spec's [splits] {own}")
    if writer:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "predictions").mkdir(parents=True, exist_ok=True)
        (out / "jobs").mkdir(parents=True, exist_ok=True)
        write_json(dataclasses.asdict(config), out / "config.json")
    if config.shard:
        log(f"shard {config.shard}: {len(mine)} of {len(rows_plan)} rows")
    progress = None
    if config.progress and writer and sys.stderr.isatty():  # no bars in a log file
        from tqdm.auto import tqdm

        progress = tqdm
    rows: List[Dict[str, Any]] = []
    splits = {}
    for r in mine:
        s = r.spec
        if config.resume:  # a row a finished run wrote is taken as it is (no data, no checkpoints needed)
            steps = config.rollout if config.rollout is not None and has_trajectories(tasks[s.task]) else None
            done = finished_row(out, r, steps) if writer else None
            done = runtime.dist.broadcast_object(done)
            if done is not None:
                rows.append(done)
                log(f"[resume] {r.row_id}: finished, read from {row_path(out, r)}")
                continue
        if s.task not in splits:
            t0 = time.perf_counter()
            splits = {s.task: to_device(preloaded[s.task] if s.task in preloaded else data(s.task), runtime.device)}
            sp = splits[s.task]
            log(f"[{s.task}] data: {len(sp.train)}/{len(sp.val)}/{len(sp.test)} samples on the grid "
                f"{'x'.join(map(str, sp.grid))}, group {sp.group} ({time.perf_counter() - t0:.1f} s)")
        data_ = splits[s.task]
        if len(data_.train) != s.n_train:
            data_ = dataclasses.replace(data_, train=first(data_.train, s.n_train))
        rollout = config.rollout if data_.trajectories is not None else None
        row = run_row(r, data_, out, config.params, resume=config.resume, progress=progress,
                      interrupt_after=interrupt_after, runtime=runtime, rollout=rollout, log=log,
                      checkpoints=config.checkpoints)
        rows.append(row)
        if writer:
            write_json(rows, out / "results.json")
        log(f"[{s.task}] {s.model:9s} {label(s.family, s.augment, s.average):10s} seed {s.seed}: params {row['params']}, "
            f"{'DIVERGED, ' if row.get('diverged') else ''}"
            f"test {row['test_error']:.4g}, rotated {row['rotated_test_error']:.4g}, "
            f"equivariance {row['equivariance_error']:.2g}, {row['seconds_per_epoch']:.2f} s/epoch")
    if writer:
        found, seconds, _ = collect(out, mine)
        if found:
            write_results(out, found, config, seconds, figures=config.figures)
    return rows
