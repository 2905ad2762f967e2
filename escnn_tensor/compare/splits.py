r"""The data seam of the harness: train / validation / test splits reached only through ``len()`` and ``[idx]``.

The trainer and the metrics read a split only as ``len(split)`` and ``split[idx] -> (x, y)`` for a sorted 1-D
``LongTensor`` ``idx`` (float64 tensors in escnn layout), so lazily read files plug in beside the in-memory
:class:`TensorSplit`. :func:`fetch` reads any index order through that seam; :func:`on_device` gives a split whose
samples arrive on a device (in-memory data is moved there once).

:func:`load_splits` is the one place the harness gets its data from: :func:`escnn_tensor.data.load_splits`, whose
:class:`~escnn_tensor.data.Splits` and :class:`~escnn_tensor.data.TensorSplit` this module re-exports.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Tuple

import torch


__all__ = ["TensorSplit", "Splits", "make_splits", "load_splits", "fetch", "on_device", "to_device", "chunks",
           "first"]


from ..data.splits import Splits, TensorSplit  # noqa: E402  (the data seam lives in escnn_tensor.data)


def make_splits(task, n_train: int, n_val: int, n_test: int, size=None, data_seed: int = 0,
                cache_dir: Optional[str] = None) -> Splits:
    """:func:`escnn_tensor.data.load_splits` (the name of earlier versions)."""
    return load_splits(task, n_train, n_val, n_test, size, data_seed, cache_dir)


def load_splits(task, n_train: int, n_val: int, n_test: int, size=None, seed: int = 0,
                cache_dir: Optional[str] = None, **options) -> Splits:
    """The splits of a run (the harness's only source of data): :func:`escnn_tensor.data.load_splits` (built-in
    tasks, spec paths, tasks from arrays; ``options``: ``rollout_steps``, ``lazy``)."""
    from ..data.splits import load_splits as load

    return load(task, n_train, n_val, n_test, size, seed, cache_dir, **options)


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


def to_device(splits: Splits, device) -> Splits:
    """``splits`` with each split on ``device`` (:func:`on_device`: in-memory data moved once, lazy data per read)."""
    if all(getattr(getattr(splits, k), "inputs", None) is not None and getattr(splits, k).inputs.device == torch.device(device)
           for k in ("train", "val", "test")):
        return splits
    return dataclasses.replace(splits, train=on_device(splits.train, device), val=on_device(splits.val, device),
                               test=on_device(splits.test, device))


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
