r"""The configuration of a comparison run (:class:`CompareConfig`) and its check before anything is trained
(:func:`check_config`)."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from ..groups import is_integer

__all__ = ["CompareConfig", "check_config", "config_from_dict", "with_default_nonlinearity", "ConfigError",
           "train_sizes"]


class ConfigError(ValueError):
    """A configuration refused before anything is trained (its message is one line; the command line prints it and
    exits with status 2)."""


@dataclasses.dataclass
class CompareConfig:
    """The configuration of a comparison run (see :mod:`escnn_tensor.compare.cli` for the meaning of each)."""

    tasks: Sequence[str]
    models: Sequence[str]
    families: Sequence[str]
    augment: bool
    params: Optional[int]
    epochs: int
    #: training-set size, or several (``--samples`` repeated: one row per size, see :func:`train_sizes`)
    n_train: Union[int, Sequence[int]]
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
    #: ``'i/N'``: run shard i of N of the rows (see :func:`~escnn_tensor.compare.plan.shard`); ``None``: all
    shard: Optional[str] = None
    #: add ``plain+avg`` rows: the plain model wrapped in :class:`escnn_tensor.models.GroupAverage` (|G| forwards)
    average: bool = False
    #: ``T``: roll every model of a time-series task out for T steps on the test trajectories (``rollout_errors``)
    rollout: Optional[int] = None
    #: ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``, ``'cuda:N'``
    device: str = "auto"
    #: mixed precision of the training step: ``'off'``, ``'bf16'``, ``'fp16'`` (with a gradient scaler)
    amp: str = "off"
    #: train through ``torch.compile(model, fullgraph=True)``: ``True`` (inductor) or a backend's name
    compile: Any = False
    #: write each job's checkpoint after every epoch (``False``: no checkpoints, so nothing to ``resume`` from)
    checkpoints: bool = True
    #: the geometric family's nonlinearity where ``model_options`` gives none; ``None``: each model's default.
    #: A run records the value it used in ``config.json`` (:func:`with_default_nonlinearity`); a ``config.json``
    #: without this key was written before ``'gated_quadratic'`` became the default and reads as ``'gated'``, so
    #: ``--resume`` and ``merge`` of such a run plan its own models
    default_nonlinearity: Optional[str] = None




def check_config(config: CompareConfig) -> None:
    """Raise ``ValueError`` / ``TypeError`` for a bad configuration before anything is trained.

    Names and numbers are checked, and every (task, model, family) is built once in counting mode (no weights
    drawn, the global RNG untouched), so bad model options and parameter budgets that a family cannot meet are
    reported at the start of a run rather than hours into it.
    """
    from ..data import FileTask, get_task, has_trajectories
    from ..groups import hyperoctahedral_gspace
    from ..models import FAMILIES, MODELS
    from .plan import row_variants, stated_options
    from .predictor import DTYPES

    for name, values, accepted in (("models", config.models, MODELS), ("families", config.families, FAMILIES)):
        bad = [v for v in values if v not in accepted]
        if not values or bad:
            raise ValueError(f"{name} must be a non-empty list from {list(accepted)}, got {list(values)}")
    train_sizes(config)
    for name in ("epochs", "n_val", "n_test", "batch_size"):
        v = getattr(config, name)
        if not is_integer(v) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not config.seeds or not all(is_integer(s) and s >= 0 for s in config.seeds):
        raise ValueError(f"seeds must be a non-empty list of integers >= 0, got {list(config.seeds)}")
    if len(set(config.seeds)) != len(config.seeds):
        raise ValueError(f"seeds must be distinct (a repeated seed trains the same job twice), got {list(config.seeds)}")
    if not config.lrs or not all(isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr)
                                 and lr > 0 for lr in config.lrs):
        raise ValueError(f"lrs must be a non-empty list of finite, positive learning rates, got {list(config.lrs)}")
    if not isinstance(config.average, bool):
        raise TypeError(f"average must be True or False, got {config.average!r}")
    if config.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {config.dtype!r}")
    from .runtime import AMP_MODES, resolve_device

    resolve_device(config.device)  # a malformed device, or CUDA on a machine without it: refused here
    if config.amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {list(AMP_MODES)}, got {config.amp!r}")
    if config.task_size not in ("default", "quick"):
        raise ValueError(f"task_size must be 'default' or 'quick', got {config.task_size!r}")
    unknown = sorted(set(config.model_options) - set(config.models))
    if unknown:
        raise ValueError(f"model_options for models not in the run: {unknown} (models: {list(config.models)})")
    if not config.tasks:
        raise ValueError("tasks must name at least one task")
    families = list(dict.fromkeys(f for f, _, _ in row_variants(config.families, config.augment, config.average)))
    for model, opts in config.model_options.items():  # each family gets only the options it uses (options_for) ...
        used = set().union(*(MODELS[model].options_for(f, opts) for f in families))
        unused = sorted(set(opts) - used)
        if unused:  # ... so an option no family of the run uses would change nothing: refuse it
            raise ValueError(
                f"model option(s) {', '.join(f'{k}={opts[k]!r}' for k in unused)} of {model}: no family of this run "
                f"({', '.join(families)}) uses them (nonlinearity is the geometric family's)"
            )
    if config.rollout is not None and (not is_integer(config.rollout) or config.rollout < 1):
        raise ValueError(f"rollout must be a positive integer (steps), got {config.rollout!r}")
    names: Dict[str, str] = {}
    rolls = False
    for task in config.tasks:
        t = get_task(task)  # a spec path is read here: a bad spec or file fails before anything is written
        if t.name in names:
            raise ValueError(f"tasks {names[t.name]!r} and {task!r} have the same name {t.name!r}; rename one")
        names[t.name] = str(task)
        gs = t.gspace if isinstance(t, FileTask) else hyperoctahedral_gspace(t.d)
        rolls = rolls or has_trajectories(t)
        for model in config.models:
            for family in families:
                with torch.random.fork_rng(devices=[]):  # the options the run's jobs state (plan)
                    given = stated_options(model, family, config.model_options.get(model, {}),
                                           config.default_nonlinearity)
                    options = MODELS[model].options_for(family, given)
                    MODELS[model](t.in_type(gs), t.out_type(gs), family, params=config.params, _counting=True,
                                  **options)
    if config.rollout is not None and not rolls:
        raise ValueError(f"rollout={config.rollout}: none of the tasks {list(config.tasks)} has trajectories to roll "
                         f"out (a time series: inputs and targets the same fields, time_offset >= 1; or the built-in "
                         f"navier-stokes)")


def train_sizes(config: CompareConfig) -> List[int]:
    """The training-set sizes of a run, ascending: ``[n_train]``, or the distinct entries of a list ``n_train``.

    With several sizes every task's data set is made once for the largest; a row of size ``n`` trains on its
    first ``n`` training samples, and all sizes share the validation and test samples (nested training sets).
    Raises ``ValueError`` unless ``n_train`` is a positive integer or a non-empty list of them."""
    n = config.n_train
    values = list(n) if isinstance(n, (list, tuple)) else [n]
    if not values or not all(is_integer(v) and v >= 1 for v in values):
        raise ValueError(f"n_train must be a positive integer or a non-empty list of them, got {n!r}")
    return sorted({int(v) for v in values})


def config_from_dict(d: Dict[str, Any]) -> "CompareConfig":
    """The :class:`CompareConfig` of a ``config.json`` (keys it does not know are ignored, missing ones default; a
    missing ``default_nonlinearity`` is ``'gated'``, the default when such files were written)."""
    from .plan import LEGACY_NONLINEARITY

    names = {f.name for f in dataclasses.fields(CompareConfig)}
    values = {k: v for k, v in d.items() if k in names}
    values.setdefault("default_nonlinearity", LEGACY_NONLINEARITY)
    return CompareConfig(**values)


def with_default_nonlinearity(config: "CompareConfig") -> "CompareConfig":
    """``config`` with :attr:`CompareConfig.default_nonlinearity` decided: as given; with ``resume``, the value the
    run in ``config.out`` used (from its ``config.json``); otherwise the models' default, where they all have the
    same (else ``None``: each model's own)."""
    if config.default_nonlinearity is not None:
        return config
    path = Path(config.out) / "config.json"
    if config.resume and path.exists():
        try:
            stored = config_from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError):  # an unreadable config.json: treated as no run
            stored = None
        if stored is not None:
            return dataclasses.replace(config, default_nonlinearity=stored.default_nonlinearity)
    return dataclasses.replace(config, default_nonlinearity=models_default_nonlinearity(config.models))


def models_default_nonlinearity(models: Sequence[str]) -> Optional[str]:
    """The geometric nonlinearity the ``models`` default to, where they all have the same (else ``None``)."""
    from ..models import MODELS

    defaults = {MODELS[m].default_options()["nonlinearity"] for m in models if m in MODELS}
    return defaults.pop() if len(defaults) == 1 else None
