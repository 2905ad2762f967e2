r"""The plan of a comparison run: the sweep as an ordered list of rows, each with its training jobs.

A **job** (:class:`JobSpec`) trains one model at one learning rate; its id (:attr:`JobSpec.job_id`) hashes every
setting, names its checkpoint, and does not change when new settings with defaults are added (a field at its
default is left out of :meth:`JobSpec.to_dict`, so old checkpoints still resume). A geometric job states its
nonlinearity in ``model_options`` (filled in by :func:`plan`: the run's ``default_nonlinearity``, which a run
continued from a ``config.json`` of before the change reads as ``'gated'``, or the model's default), so a job means
the same model whatever the default; :meth:`JobSpec.to_dict` leaves out ``nonlinearity='gated'``, the default when ids were first
made (until ``gated_quadratic`` replaced it), so the ids of the jobs run before still name the same models.

A **row** (:class:`RowSpec`) is one line of ``results.json``: task × model × family × variant (augmentation) ×
seed × ``n_train``, with one job per learning-rate candidate (the best on validation is kept, see
:mod:`~escnn_tensor.compare.select`). :func:`plan` lists the rows of a configuration in the order of the report
(task, model, variant, seed); :func:`shard` picks a deterministic 1/N of them by row id, so N machines running the
same command with ``--shard 1/N`` .. ``--shard N/N`` together run every row exactly once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["JobSpec", "RowSpec", "plan", "shard", "parse_shard", "variants", "row_variants", "label",
           "stated_options"]

#: the geometric family's default nonlinearity when job ids were first made: :meth:`JobSpec.to_dict` leaves it out
LEGACY_NONLINEARITY = "gated"


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """Everything that determines one training run (its id hashes all of it).

    Fields added after the first release carry defaults, and :meth:`to_dict` omits a field while it holds its
    default, so the ids of existing jobs (and their checkpoints) stay as they were.
    """

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
    #: several training sizes in one run: the training set is the first ``n_train`` of ``n_pool`` samples (the
    #: largest size), and validation / test come after those ``n_pool``; ``None``: one size (``n_pool = n_train``)
    n_pool: Optional[int] = None
    #: the model wrapped in :class:`escnn_tensor.models.GroupAverage` (``plain+avg`` rows, ``--average``)
    average: bool = False
    #: the task's :attr:`~escnn_tensor.data.Task.version` (its definition: generator and field types); a task whose
    #: definition changed (e.g. ``tidal`` 2: symmetric targets) gets new ids, so ``--resume`` never reuses rows or
    #: checkpoints of the old definition, while the ids of version-1 tasks stay as they were
    task_version: int = 1

    #: fields always written by :meth:`to_dict` (those of the first release); later fields only when not default
    _ALWAYS = ("task", "model", "family", "augment", "seed", "lr", "params", "epochs", "batch_size", "dtype", "size",
               "n_train", "n_val", "n_test", "data_seed", "model_options")

    def to_dict(self) -> Dict[str, Any]:
        """The settings as a JSON-able dict (``model_options`` as a dict); new fields only when not default."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in self._ALWAYS and value == f.default:
                continue
            out[f.name] = value
        legacy = ("nonlinearity", LEGACY_NONLINEARITY) if self.family == "geometric" else None
        out["model_options"] = {k: v for k, v in self.model_options if (k, v) != legacy}
        return out

    @property
    def job_id(self) -> str:
        """``<task>-<model>-<family>[-aug][-avg]-s<seed>-lr<lr>-<10 hex digits of the SHA-256 of to_dict()>``."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        aug = ("-aug" if self.augment else "") + ("-avg" if self.average else "")
        return f"{self.task}-{self.model}-{self.family}{aug}-s{self.seed}-lr{self.lr:g}-{digest}"


@dataclasses.dataclass(frozen=True)
class RowSpec:
    """One row of the results: its jobs (one per learning rate, in the order given) and its place in the plan."""

    jobs: Tuple[JobSpec, ...]
    index: int = 0  # position in the plan (the order of the report)

    def __post_init__(self):
        if not self.jobs:
            raise ValueError("a row needs at least one job (learning rate)")
        first = self.jobs[0]
        for j in self.jobs[1:]:
            if dataclasses.replace(j, lr=first.lr) != first:
                raise ValueError(f"the jobs of one row differ in more than the learning rate: {first} vs {j}")

    @property
    def spec(self) -> JobSpec:
        """The first job (every setting of the row but the learning rate)."""
        return self.jobs[0]

    @property
    def row_id(self) -> str:
        """``<task>-<model>-<family>[-aug][-avg]-s<seed>-n<n_train>-<10 hex digits hashing the ids of its jobs>``."""
        s = self.spec
        digest = hashlib.sha256(" ".join(j.job_id for j in self.jobs).encode()).hexdigest()[:10]
        aug = ("-aug" if s.augment else "") + ("-avg" if s.average else "")
        return f"{s.task}-{s.model}-{s.family}{aug}-s{s.seed}-n{s.n_train}-{digest}"

    @property
    def label(self) -> str:
        return label(self.spec.family, self.spec.augment, self.spec.average)


def variants(families: Sequence[str], augment: bool) -> List[Tuple[str, bool]]:
    """``(family, augment)`` pairs of a run: every family, plus ``('plain', True)`` with ``augment``."""
    out = [(f, False) for f in families]
    if augment:
        out.append(("plain", True))
    return out


def row_variants(families: Sequence[str], augment: bool, average: bool = False) -> List[Tuple[str, bool, bool]]:
    """``(family, augment, average)`` of the rows of a run: :func:`variants`, then ``('plain', False, True)`` (the
    plain model averaged over the group, ``plain+avg``) with ``average``."""
    out = [(f, aug, False) for f, aug in variants(families, augment)]
    if average:
        out.append(("plain", False, True))
    return out


def label(family: str, augment: bool, average: bool = False) -> str:
    """The display name of a row: the family, ``+aug`` for augmented training, ``+avg`` for group averaging."""
    return family + ("+aug" if augment else "") + ("+avg" if average else "")


def task_size(config, task) -> Optional[int]:
    """The grid side of ``task`` in a run: ``config.size``, else the task's quick or default size; ``None`` for a
    task read from data (its grid is its file's)."""
    from ..data import FileTask, get_task

    t = get_task(task)
    if isinstance(t, FileTask):
        return None
    if config.size is not None:
        return t.check_size(config.size)
    return t.check_size(t.quick_size if config.task_size == "quick" else t.default_size)


def plan(config) -> List[RowSpec]:
    """Every row of a :class:`~escnn_tensor.compare.config.CompareConfig`, in report order: task, training-set size
    (:func:`~escnn_tensor.compare.config.train_sizes`), model, variant (families, ``plain+aug``, ``plain+avg``), seed; each
    with one :class:`JobSpec` per learning rate of ``config.lrs``."""
    from ..data import get_task
    from .config import train_sizes

    rows: List[RowSpec] = []
    default = getattr(config, "default_nonlinearity", None)
    sizes = train_sizes(config)
    pool = max(sizes) if len(sizes) > 1 else None
    for source, n_train in ((t, n) for t in config.tasks for n in sizes):
        size = task_size(config, source)
        t = get_task(source)
        task = t.name  # a spec path runs under the spec's name
        version = getattr(t, "version", 1)  # a task read from data has none: its data are its definition
        for model in config.models:
            given = config.model_options.get(model, {})
            for family, aug, avg in row_variants(config.families, config.augment, getattr(config, "average", False)):
                options = tuple(sorted(stated_options(model, family, given, default).items()))
                for seed in config.seeds:
                    jobs = tuple(
                        JobSpec(task=task, model=model, family=family, augment=aug, seed=seed, lr=float(lr),
                                params=config.params, epochs=config.epochs, batch_size=config.batch_size,
                                dtype=config.dtype, size=size, n_train=n_train, n_val=config.n_val,
                                n_test=config.n_test, data_seed=config.data_seed, model_options=options,
                                n_pool=pool, average=avg, task_version=version)
                        for lr in config.lrs
                    )
                    rows.append(RowSpec(jobs, index=len(rows)))
    return rows


def stated_options(model: str, family: str, options: Dict[str, Any], default: Optional[str] = None
                   ) -> Dict[str, Any]:
    """The model options a job of ``family`` states: ``options`` as given, and for the geometric family its
    nonlinearity (when not given: ``default``, the run's ``default_nonlinearity``, or else the model's default), so
    the job names one model whatever the library's default."""
    if family != "geometric" or "nonlinearity" in options:
        return dict(options)
    if default is None:
        from ..models import MODELS

        default = MODELS[model].default_options()["nonlinearity"]
    return {**options, "nonlinearity": default}


def parse_shard(text: str) -> Tuple[int, int]:
    """``'i/N'`` -> ``(i, N)`` with ``1 <= i <= N``; ``ValueError`` (naming what was given) otherwise."""
    try:
        i, n = (int(s) for s in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/N with 1 <= i <= N (e.g. 2/4), got {text!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard takes i/N with 1 <= i <= N (e.g. 2/4), got {text!r}")
    return i, n


def shard(rows: Sequence[RowSpec], index: int, count: int) -> List[RowSpec]:
    """The rows of shard ``index`` of ``count`` (1-based): the rows sorted by id are dealt round-robin, so the shards
    are disjoint, together hold every row, differ in size by at most one, and depend only on the row ids (not on
    the machine or the order of the command line). Returned in plan order."""
    if not 1 <= index <= count:
        raise ValueError(f"shard index must be in 1..{count}, got {index}")
    ordered = sorted(rows, key=lambda r: r.row_id)
    mine = {r.row_id for k, r in enumerate(ordered) if k % count == index - 1}
    return [r for r in rows if r.row_id in mine]
