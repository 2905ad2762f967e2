r"""The data seam of the harness: train / validation / test splits reached only through ``len()`` and ``[idx]``.

The trainer and the metrics read a split only as ``len(split)`` and ``split[idx] -> (x, y)`` for a sorted 1-D
``LongTensor`` ``idx`` (float64 tensors in escnn layout), so lazily read files plug in beside the in-memory
:class:`TensorSplit`. :func:`fetch` reads any index order through that seam; :func:`on_device` gives a split whose
samples arrive on a device (in-memory data is moved there once).

:func:`load_splits` is the one place the harness gets its data from (the swap to ``escnn_tensor.data.load_splits``
is this module's import).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Optional, Tuple

import torch
from escnn.nn import FieldType

from ..groups import hyperoctahedral_gspace

__all__ = ["TensorSplit", "Splits", "make_splits", "load_splits", "fetch", "on_device", "chunks", "first"]


class TensorSplit:
    """An in-memory split: ``inputs`` ``(n, C_in, *grid)`` and ``targets`` ``(n, C_out, *grid)``.

    ``len(split)`` is ``n``; ``split[idx]`` is ``(inputs[idx], targets[idx])`` for a 1-D ``LongTensor`` (any order);
    ``x, y = split`` unpacks the two tensors (backward compatibility with the tuples of earlier versions).
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor):
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(f"inputs ({inputs.shape[0]} samples) and targets ({targets.shape[0]}) differ in length")
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, idx) -> Tuple[torch.Tensor, torch.Tensor]:
        if isinstance(idx, int):  # tuple-style access: split[0] is the inputs, split[1] the targets
            return (self.inputs, self.targets)[idx]
        return self.inputs[idx], self.targets[idx]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.inputs, self.targets))

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "TensorSplit":
        """Both tensors moved / cast (``Tensor.to`` semantics: the same split when nothing changes)."""
        return TensorSplit(self.inputs.to(device=device, dtype=dtype), self.targets.to(device=device, dtype=dtype))

    def __repr__(self) -> str:
        return f"TensorSplit({len(self)} samples, inputs {tuple(self.inputs.shape[1:])}, targets " \
               f"{tuple(self.targets.shape[1:])})"


@dataclasses.dataclass
class Splits:
    """Train / validation / test splits of one task with their field types (see the module docstring for what a
    split is). ``group`` names the gspace's group (``'D4'``, ``'Oh'``)."""

    task: str
    in_type: FieldType
    out_type: FieldType
    train: Any
    val: Any
    test: Any
    padding_mode: str = "circular"
    trajectories: Any = None

    def __post_init__(self):
        for name in ("train", "val", "test"):
            v = getattr(self, name)
            if isinstance(v, tuple):  # (inputs, targets), as earlier versions took
                setattr(self, name, TensorSplit(*v))

    @property
    def gspace(self):
        return self.in_type.gspace

    @property
    def group(self) -> str:
        return {2: "D4", 3: "Oh"}.get(self.gspace.dimensionality, self.gspace.fibergroup.name)


def make_splits(task: str, n_train: int, n_val: int, n_test: int, size: int, data_seed: int = 0,
                cache_dir: Optional[str] = None) -> Splits:
    """One data set of ``n_train + n_val + n_test`` samples from :func:`escnn_tensor.data.load`, split in order."""
    from ..data import get_task, load

    t = get_task(task)
    data = load(task, n_train + n_val + n_test, size, data_seed, cache_dir=cache_dir)
    gs = hyperoctahedral_gspace(t.d)
    x, y = data.inputs, data.targets
    a, b = n_train, n_train + n_val
    return Splits(task, t.in_type(gs), t.out_type(gs), TensorSplit(x[:a], y[:a]), TensorSplit(x[a:b], y[a:b]),
                  TensorSplit(x[b:], y[b:]))


def load_splits(task, n_train: int, n_val: int, n_test: int, size=None, seed: int = 0,
                cache_dir: Optional[str] = None) -> Splits:
    """The splits of a run (the harness's only source of data; signature of ``escnn_tensor.data.load_splits``)."""
    return make_splits(task, n_train, n_val, n_test, size, seed, cache_dir)


def fetch(split, idx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``split``'s samples at ``idx`` (any order, on any device) as ``(x, y)`` in that order, read through the seam
    (``split[sorted idx]`` on the CPU, then reordered); an in-memory split is indexed directly."""
    if isinstance(split, TensorSplit):
        return split[idx.to(split.inputs.device)]
    idx = idx.cpu()
    order, perm = idx.sort()
    x, y = split[order]
    inverse = perm.argsort().to(x.device)
    return x[inverse], y[inverse]


class _DeviceSplit:
    """A lazy split whose samples are moved (and cast) to a device as they are read."""

    def __init__(self, split, device, dtype):
        self.split, self.device, self.dtype = split, device, dtype

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, idx):
        x, y = self.split[idx]
        return x.to(device=self.device, dtype=self.dtype), y.to(device=self.device, dtype=self.dtype)


def on_device(split, device=None, dtype: Optional[torch.dtype] = None):
    """``split`` with its samples on ``device`` (cast to ``dtype`` if given): an in-memory split is moved once, a
    lazy one is wrapped so each read is moved."""
    if isinstance(split, TensorSplit):
        return split.to(device, dtype)
    if isinstance(split, tuple):
        return TensorSplit(*split).to(device, dtype)
    return _DeviceSplit(split, device, dtype)


def chunks(n: int, size: int, rank: int = 0, world_size: int = 1) -> Iterator[torch.Tensor]:
    """Sorted index chunks of at most ``size`` over this process's contiguous part of ``range(n)`` (process
    ``rank`` of ``world_size`` takes ``[rank n / W, (rank + 1) n / W)``)."""
    lo, hi = rank * n // world_size, (rank + 1) * n // world_size
    for start in range(lo, hi, size):
        yield torch.arange(start, min(start + size, hi))


class _First:
    """The first ``n`` samples of a lazy split."""

    def __init__(self, split, n: int):
        self.split, self.n = split, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx):
        return self.split[idx]


def first(split, n: int):
    """The first ``n`` samples of ``split`` (the split itself when it has ``n``): an in-memory split is sliced, a
    lazy one wrapped. ``ValueError`` if it has fewer."""
    if isinstance(split, tuple):
        split = TensorSplit(*split)
    if len(split) < n:
        raise ValueError(f"the split has {len(split)} samples, fewer than the {n} asked for")
    if len(split) == n:
        return split
    if isinstance(split, TensorSplit):
        return TensorSplit(split.inputs[:n], split.targets[:n])
    return _First(split, n)
