r"""Train / validation / test splits of any task, split by trajectory: :func:`load_splits` and :class:`Splits`.

A split is an object with ``len(split)`` and ``split[idx] -> (x, y)`` for a sorted 1-D ``LongTensor`` ``idx``: float64
tensors in escnn layout ``(len(idx), C, *grid[::-1])``. The harness reaches data only through these two, so a
split read lazily from a file (:class:`LazySplit`) and one in memory (:class:`TensorSplit`) are interchangeable.
For backward compatibility a split also unpacks as ``x, y = split`` (a lazy split reads all its samples then) and
``split[0]`` / ``split[1]`` are the inputs / targets.

**By trajectory.** The samples of a file task are ``(trajectory, time)`` pairs (:class:`FileTask`); a trajectory
belongs to exactly one split, so no split sees a time step of another's trajectory. Trajectories go to the splits
in proportion to ``n_train : n_val : n_test`` (``8 : 1 : 1`` unless all three are given; at least one each) after a permutation drawn from ``seed``, unless
the spec gives trajectory ranges; then each split takes ``n`` of its samples (drawn from ``seed``, in order) or
all of them. A built-in task's samples are each their own trajectory (one data set of ``n_train + n_val + n_test``
samples from :func:`escnn_tensor.data.load` with ``seed``, split in that order, as before).

**Memory.** A file split is read into memory once when all three splits together take at most
:data:`IN_MEMORY_BYTES` (1 GiB) in float64, else lazily: a batch is read when asked for, so the peak is one batch
(plus the validation / test batches the harness reads), whatever the file's size. ``lazy=True`` / ``False`` forces
either.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from escnn.gspaces import GSpace
from escnn.nn import FieldType

from .errors import DataError
from .file_task import FileTask
from .grids import symmetry_gspace

__all__ = ["Splits", "TensorSplit", "LazySplit", "Trajectories", "load_splits", "has_trajectories", "IN_MEMORY_BYTES"]

IN_MEMORY_BYTES = 2**30
"""Splits of file tasks up to this size (all three, float64) are read into memory; larger ones lazily."""


def _index(idx, n: int) -> torch.Tensor:
    idx = torch.as_tensor(idx, dtype=torch.long)
    if idx.dim() != 1:
        raise TypeError(f"a split is indexed by a 1-D LongTensor of sample indices, got shape {tuple(idx.shape)}")
    if idx.numel() and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"sample index out of range for a split of {n} samples")
    return idx


class TensorSplit:
    """A split held in memory: ``inputs`` ``(n, C_in, *grid[::-1])`` and ``targets`` ``(n, C_out, ...)``; for data
    from a file also the ``trajectory`` and ``time`` of every sample (int64 arrays), else ``None``."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, trajectory: Optional[np.ndarray] = None,
                 time: Optional[np.ndarray] = None):
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(f"inputs ({inputs.shape[0]}) and targets ({targets.shape[0]}) differ in sample count")
        self.inputs, self.targets = inputs, targets
        self.trajectory, self.time = trajectory, time

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "TensorSplit":
        """Both tensors moved / cast (``Tensor.to`` semantics)."""
        return TensorSplit(self.inputs.to(device=device, dtype=dtype), self.targets.to(device=device, dtype=dtype),
                           self.trajectory, self.time)

    def __repr__(self) -> str:
        return (f"TensorSplit({len(self)} samples, inputs {tuple(self.inputs.shape[1:])}, targets "
                f"{tuple(self.targets.shape[1:])})")

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, idx):
        if isinstance(idx, int):  # tuple compatibility: split[0] / split[1]
            return (self.inputs, self.targets)[idx]
        idx = _index(idx, len(self))
        return self.inputs.index_select(0, idx), self.targets.index_select(0, idx)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.inputs, self.targets))


class LazySplit:
    """A split of a :class:`FileTask` read from its file when indexed: samples ``(trajectory[i], time[i])``."""

    def __init__(self, task: FileTask, trajectory: np.ndarray, time: np.ndarray):
        self.task, self.trajectory, self.time = task, np.asarray(trajectory), np.asarray(time)

    def __len__(self) -> int:
        return len(self.trajectory)

    @property
    def trajectories(self) -> np.ndarray:
        """The trajectories this split's samples come from."""
        return np.unique(self.trajectory)

    def __getitem__(self, idx):
        if isinstance(idx, int):
            return self.load()[idx]
        idx = _index(idx, len(self)).numpy()
        return self.task.read(self.trajectory[idx], self.time[idx])

    def load(self) -> TensorSplit:
        """Every sample in memory."""
        return TensorSplit(*self.task.read(self.trajectory, self.time), self.trajectory, self.time)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.load())


class Trajectories:
    """Whole test trajectories for rollouts: ``len()`` trajectories, ``[idx] -> (len(idx), S, C, *grid[::-1])``,
    the states at times ``0, τ, 2τ, ...`` (``S = steps + 1``) in escnn layout, float64."""

    def __init__(self, steps: int, tensor: Optional[torch.Tensor] = None, task: Optional[FileTask] = None,
                 ids: Optional[np.ndarray] = None):
        self.steps, self._tensor, self._task, self._ids = int(steps), tensor, task, ids

    def __len__(self) -> int:
        return self._tensor.shape[0] if self._tensor is not None else len(self._ids)

    def __getitem__(self, idx) -> torch.Tensor:
        idx = _index(idx, len(self))
        if self._tensor is not None:
            return self._tensor.index_select(0, idx)
        return self._task.states(self._ids[idx.numpy()], self.steps)

    def tensor(self) -> torch.Tensor:
        """All of them in memory ``(n, S, C, *grid[::-1])``."""
        return self._tensor if self._tensor is not None else self[torch.arange(len(self))]


@dataclasses.dataclass
class Splits:
    """Train / validation / test splits of a task with their field types and symmetry.

    Attributes:
        task: the task's name.
        in_type, out_type: escnn ``FieldType`` s on ``gspace``.
        train, val, test: splits (``len`` and ``[idx] -> (x, y)``; see the module docs); a pair of tensors given
            here is wrapped in a :class:`TensorSplit`.
        gspace: the gspace of the data's symmetry group (default: ``in_type.gspace``).
        group: its short name (``"D4"``, ``"Oh"``, ``"D2"`` for the flips of a rectangle, ...).
        padding_mode: the models' padding the data ask for (``"circular"`` for periodic data).
        trajectories: test trajectories for rollouts (:class:`Trajectories`), or ``None``.
        grid: ``(n_x, n_y[, n_z])``.
    """

    task: str
    in_type: FieldType
    out_type: FieldType
    train: Any
    val: Any
    test: Any
    gspace: Optional[GSpace] = None
    group: Optional[str] = None
    padding_mode: str = "circular"
    trajectories: Optional[Trajectories] = None
    grid: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        for name in ("train", "val", "test"):
            value = getattr(self, name)
            if isinstance(value, (tuple, list)):
                setattr(self, name, TensorSplit(*value))
        if self.gspace is None:
            self.gspace = self.in_type.gspace
        if self.group is None:
            from .grids import group_name

            self.group = group_name(self.gspace)
        if self.grid is None:
            probe = self.test[0] if isinstance(self.test, TensorSplit) else None
            if probe is not None:
                self.grid = tuple(probe.shape[2:])[::-1]


def has_trajectories(task) -> bool:
    """Whether ``task`` (anything :func:`~escnn_tensor.data.get_task` takes) has test trajectories to roll out: a
    file time series (inputs and targets the same fields, ``time_offset >= 1``), or a built-in task mapping fields
    to the same fields with an exact :meth:`~escnn_tensor.data.Task.solve` (``navier-stokes``)."""
    from .tasks import Task, get_task

    t = get_task(task)
    if isinstance(t, FileTask):
        return t.is_time_series
    return t.in_fields == t.out_fields and type(t).solve is not Task.solve


def _check_count(value, name: str, allow_none: bool = True) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _allocate(task: FileTask, counts, seed: int) -> list:
    """The trajectories of train, val and test (see the module docs)."""
    options, n = task.split_options, task.n_trajectories
    ranges = [options.get(k) for k in ("train", "val", "test")]
    if any(r is not None for r in ranges):
        if any(r is None for r in ranges):
            raise DataError("give trajectory ranges for all of train, val and test, or for none", task.where)
        out, used = [], set()
        for name, (start, stop) in zip(("train", "val", "test"), ranges):
            if not 0 <= start < stop <= n:
                raise DataError(f"splits.{name} = [{start}, {stop}] is not a range inside the {n} trajectories "
                                f"[0, {n}]", task.where)
            ids = set(range(start, stop))
            if ids & used:
                raise DataError(f"splits.{name} overlaps another split's trajectories", task.where)
            used |= ids
            out.append(np.arange(start, stop))
        return out
    if n < 3:
        raise DataError(f"the data hold {n} trajectory(ies); splitting by trajectory into train, validation and "
                        f"test needs at least 3", task.source.path)
    defaults = (8, 1, 1)  # without sizes: 80% / 10% / 10% of the trajectories
    known = all(c is not None for c in counts)
    weights = np.array(counts if known else defaults, dtype=np.float64)
    share = np.maximum(1, np.floor(weights / weights.sum() * n).astype(np.int64))
    while share.sum() > n:
        share[np.argmax(share)] -= 1
    share[0] += n - share.sum()  # what rounding left goes to training
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    bounds = np.cumsum([0, *share])
    return [np.sort(order[bounds[i] : bounds[i + 1]]) for i in range(3)]


def _file_splits(task: FileTask, counts, seed: int, lazy: Optional[bool], rollout_steps: Optional[int]) -> Splits:
    counts = [c if c is not None else task.split_options.get(k) for c, k in zip(counts, ("n_train", "n_val", "n_test"))]
    parts, allocation = [], _allocate(task, counts, seed)
    for i, (name, ids, want) in enumerate(zip(("train", "val", "test"), allocation, counts)):
        traj, time = task.pairs(ids)
        if want is not None:
            if want > len(traj):
                raise DataError(f"n_{name} = {want}, but the {len(ids)} trajectories of the {name} split hold "
                                f"{len(traj)} samples", task.source.path)
            pick = torch.randperm(len(traj), generator=torch.Generator().manual_seed(seed * 3 + i))[:want]
            pick = np.sort(pick.numpy())
            traj, time = traj[pick], time[pick]
        parts.append(LazySplit(task, traj, time))
    total = sum(len(p) for p in parts) * sum(task.channels()) * math.prod(task.grid) * 8
    if lazy is None:
        lazy = total > IN_MEMORY_BYTES
    if lazy:
        for p in parts:  # one pass over the data, one batch at a time: NaNs are found now, not mid-training
            for start in range(0, len(p), 64):
                p[torch.arange(start, min(start + 64, len(p)))]
    else:
        parts = [p.load() for p in parts]
    trajectories = None
    if task.is_time_series:
        ids = allocation[2]
        available = (task.source.n_times - 1) // task.time_offset
        steps = available if rollout_steps is None else rollout_steps
        if steps > available:
            raise DataError(f"a rollout of {steps} steps needs {steps * task.time_offset + 1} time steps per "
                            f"trajectory; the data have {task.source.n_times}", task.where)
        trajectories = Trajectories(steps, task=task, ids=np.asarray(ids))
    elif rollout_steps:
        raise DataError(f"task {task.name!r} is not a time series (inputs and targets the same fields, "
                        f"time_offset >= 1): it has no trajectories to roll out", task.where)
    return Splits(task.name, task.in_type(), task.out_type(), *parts, gspace=task.gspace, group=task.group,
                  padding_mode=task.padding_mode, trajectories=trajectories, grid=task.grid)


def load_splits(task, n_train: Optional[int], n_val: Optional[int], n_test: Optional[int], size: Optional[int] = None,
                seed: int = 0, cache_dir: Optional[Union[str, Path]] = None, *, lazy: Optional[bool] = None,
                rollout_steps: Optional[int] = None) -> Splits:
    """The :class:`Splits` of ``task`` (a built-in name, a :class:`~escnn_tensor.data.Task`, a spec path ``*.toml``
    or a :class:`FileTask`), split by trajectory (see the module docs).

    Args:
        n_train, n_val, n_test: samples per split. For a file task ``None`` takes the spec's value, else every
            sample of the split's trajectories; a built-in task needs all three.
        size: the grid side of a built-in task (``None``: its default); a file task's grid is its data's.
        seed: the data seed: a built-in task's generator seed; a file task's draw of trajectories and samples.
        cache_dir: the cache of built-in data sets (:func:`escnn_tensor.data.load`).
        lazy: file tasks: read batches when asked (``True``), everything now (``False``), or by size (``None``).
        rollout_steps: the number of rollout steps the test trajectories must hold (``None``: a file time series
            keeps all its steps, a built-in task none). A built-in task whose inputs and targets are the same
            fields and that has an exact :meth:`~escnn_tensor.data.Task.solve` (``navier-stokes``) gets
            trajectories by applying it ``rollout_steps`` times to the test inputs.

    Raises:
        DataError: (a ``ValueError``) for bad data or a spec, one line naming the file and field.
    """
    from .tasks import get_task, load

    t = get_task(task)
    counts = [_check_count(n, name) for n, name in ((n_train, "n_train"), (n_val, "n_val"), (n_test, "n_test"))]
    if rollout_steps is not None:
        rollout_steps = _check_count(rollout_steps, "rollout_steps")
    if isinstance(t, FileTask):
        return _file_splits(t, counts, int(seed), lazy, rollout_steps)
    if any(c is None for c in counts):
        raise ValueError(f"task {t.name!r}: n_train, n_val and n_test must all be given, got {counts}")
    n_train, n_val, n_test = counts
    size = t.check_size(size)
    data = load(t, n_train + n_val + n_test, size, seed, cache_dir=cache_dir)
    group = "D4" if t.d == 2 else "Oh"
    gs = symmetry_gspace(group)
    x, y = data.inputs, data.targets
    a, b = n_train, n_train + n_val
    trajectories = None
    if rollout_steps:
        if t.in_fields != t.out_fields:
            raise ValueError(f"task {t.name!r} maps {t.in_fields} to {t.out_fields}; a rollout needs the same fields "
                             f"in and out")
        states = [x[b:]]
        try:
            for _ in range(rollout_steps):
                states.append(t.solve(states[-1]))
        except NotImplementedError:
            raise ValueError(f"task {t.name!r} has no exact solver to make rollout trajectories") from None
        trajectories = Trajectories(rollout_steps, tensor=torch.stack(states, dim=1))
    return Splits(t.name, t.in_type(gs), t.out_type(gs), (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:]),
                  gspace=gs, group=group, padding_mode="circular", trajectories=trajectories,
                  grid=(size,) * t.d)
