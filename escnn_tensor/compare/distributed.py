r"""torch.distributed for the harness: process group, DDP wrap, the split of each global batch, all-reduces of sums.

``torchrun --nproc-per-node N -m escnn_tensor.compare ...`` starts N processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` in their environment (torch.distributed's convention); :func:`from_environment` joins them into one
process group (gloo on the CPU, nccl on CUDA) and returns a :class:`Distributed`. Without those variables (or with
``WORLD_SIZE=1``) it returns :data:`SINGLE`, on which every operation is the identity: one code path for both.

Conventions (what makes N processes compute what one process computes):

* ``--batch-size`` is the **global** batch. Every process draws the same batch order and augmentation elements
  (same seeds), and process ``rank`` takes the contiguous part ``[rank B / N, (rank + 1) B / N)`` of each global
  batch (:meth:`Distributed.part`).
* The loss of a batch is :math:`\sum |p - t|^2 / \sum |t|^2` over the **global** batch: each process computes its
  numerator, the denominator is all-reduced, and each process back-propagates ``N * numerator / denominator``;
  DDP averages the gradients over the N processes, which gives the gradient of the global loss.
* Metrics are all-reduced sums of numerators and denominators (maxima for the equivariance error).
* Only rank 0 writes files (:attr:`Distributed.is_writer`).
"""
from __future__ import annotations

import inspect
import os
from typing import Optional

import torch

__all__ = ["Distributed", "SINGLE", "from_environment"]


class Distributed:
    """The processes of one run. ``rank``, ``world_size``, ``local_rank``; a no-op for ``world_size == 1``."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, group=None, owns_group: bool = False):
        self.rank, self.world_size, self.local_rank, self.group = rank, world_size, local_rank, group
        self.owns_group = owns_group

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.rank == 0

    def part(self, idx: torch.Tensor) -> torch.Tensor:
        """This process's contiguous part of the global batch ``idx`` (the whole of it on one process)."""
        if not self.is_distributed:
            return idx
        n = idx.shape[0]
        return idx[self.rank * n // self.world_size : (self.rank + 1) * n // self.world_size]

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of ``t`` over the processes (a new tensor; ``t`` itself on one process)."""
        if not self.is_distributed:
            return t
        import torch.distributed as dist

        t = t.detach().clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return t

    def all_reduce_max(self, t: torch.Tensor) -> torch.Tensor:
        """The maximum of ``t`` over the processes (``t`` itself on one process)."""
        if not self.is_distributed:
            return t
        import torch.distributed as dist

        t = t.detach().clone()
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return t

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every process."""
        if not self.is_distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def barrier(self) -> None:
        if self.is_distributed:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def close(self, clean: bool = True) -> None:
        """Leave the process group this object joined (a no-op on one process or for a group joined elsewhere).

        ``clean`` (the run ended normally on this process): first wait for every process (a barrier: no process
        tears its group down while another still talks to it) and collect the garbage (DistributedDataParallel's
        reducers hold the group and live in reference cycles; freed at interpreter exit, after the group, they
        abort the process). After an error the barrier is skipped, since the other processes may never reach it."""
        if self.is_distributed and self.owns_group:
            import gc

            import torch.distributed as dist

            if dist.is_initialized():
                if clean:
                    dist.barrier(group=self.group)
                gc.collect()
                dist.destroy_process_group()

    def sync_batch_norm(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """On CUDA, ``model`` with torch's BatchNorm layers (the plain family's, and those inside escnn's
        InnerBatchNorm) replaced by ``SyncBatchNorm``, which takes its statistics over the global batch; parameters
        and buffers keep their names, so state dicts are unchanged. escnn_tensor's TensorBatchNorm synchronises by
        itself on any device. On the CPU torch has no SyncBatchNorm under DDP, so torch's BatchNorm layers keep
        per-process statistics there (the geometric family, or ``norm=None`` / ``'layer'``, gives the numbers of one
        process). ``model`` itself on one process."""
        if not self.is_distributed or torch.device(device).type != "cuda":
            return model
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group=self.group)

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` in DistributedDataParallel (``model`` itself on one process)."""
        if not self.is_distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        # buffers: TensorBatchNorm all-reduces its own statistics; torch's BatchNorm keeps per-process ones on the CPU
        sync = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        return DistributedDataParallel(model, device_ids=ids,
                                       **({"forward_sync_buffers": False} if sync else {"broadcast_buffers": False}))

    def __repr__(self) -> str:
        return f"Distributed(rank={self.rank}, world_size={self.world_size}, local_rank={self.local_rank})"


#: the single process: every operation is the identity
SINGLE = Distributed()


def from_environment(device_type: Optional[str] = None) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): backend nccl when ``device_type == 'cuda'``, else gloo.
    Returns :data:`SINGLE` when ``WORLD_SIZE`` is unset or 1. An already initialised default group is reused."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Distributed(rank, dist.get_world_size(), local_rank, owns_group=owns)
