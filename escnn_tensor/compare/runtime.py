r"""Where and how the jobs of a run execute: the device, mixed precision, ``torch.compile`` and the processes.

:func:`resolve_device` turns ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a torch device, refusing a
CUDA device the machine does not have with one clear ``ValueError``; :func:`make_runtime` builds the
:class:`Runtime` of a configuration (joining the torchrun process group when the environment describes one).
A job's id does not include any of it: a job gives the same numbers, up to round-off, wherever it runs (and
bit-identical ones on the CPU in float64 without AMP).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict

import torch

from .distributed import SINGLE, Distributed, from_environment

__all__ = ["Runtime", "resolve_device", "make_runtime", "DEVICE_PATTERN", "AMP_MODES"]

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
AMP_MODES = ("off", "bf16", "fp16")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """``device`` (a torch device), ``amp`` (``'off'``, ``'bf16'``, ``'fp16'``), ``compile`` (``torch.compile`` with
    ``fullgraph=True``: ``False``, ``True`` or a backend's name), ``dist`` (the processes, :class:`~escnn_tensor.compare.distributed.Distributed`)."""

    device: torch.device = torch.device("cpu")
    amp: str = "off"
    compile: Any = False
    dist: Distributed = SINGLE

    def describe(self) -> Dict[str, Any]:
        """The keys every result row carries about its runtime: ``device``, ``world_size``, ``amp``, ``compile``."""
        return {"device": str(self.device), "world_size": self.dist.world_size, "amp": self.amp,
                "compile": bool(self.compile)}


def resolve_device(text: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """The torch device of ``--device``: ``auto`` is ``cuda`` when CUDA is available, else ``cpu``; ``cuda`` is the
    current CUDA device (``cuda:LOCAL_RANK`` under torchrun). ``ValueError`` (one line) for a malformed value, for
    CUDA on a machine without it, and for an index the machine does not have."""
    text = str(text)
    if not DEVICE_PATTERN.match(text):
        raise ValueError(f"--device takes auto, cpu, cuda or cuda:N, got {text!r}")
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {text}: no CUDA device is available on this machine "
                         f"(torch {torch.__version__}, torch.cuda.is_available() is False); use --device cpu or auto")
    count = torch.cuda.device_count()
    if text == "cuda":
        index = local_rank if world_size > 1 else torch.cuda.current_device()
    else:
        index = int(text.split(":")[1])
        if world_size > 1 and index != local_rank:
            raise ValueError(f"--device {text} with {world_size} processes: each process takes cuda:LOCAL_RANK; "
                             f"give --device cuda")
    if index >= count:
        raise ValueError(f"--device {text}: this machine has {count} CUDA device(s), cuda:0 .. cuda:{count - 1}")
    return torch.device("cuda", index)


def make_runtime(config) -> Runtime:
    """The :class:`Runtime` of a :class:`~escnn_tensor.compare.config.CompareConfig` (``device``, ``amp``,
    ``compile``); under torchrun the process group is joined (gloo on the CPU, nccl on CUDA)."""
    if config.amp not in AMP_MODES:
        raise ValueError(f"--amp takes {', '.join(AMP_MODES)}, got {config.amp!r}")
    wanted = str(config.device)
    cuda = wanted.startswith("cuda") or (wanted == "auto" and torch.cuda.is_available())
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(wanted, local_rank, world)  # before joining: a bad device is refused at once
    dist = from_environment("cuda" if cuda else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Runtime(device=device, amp=config.amp, compile=config.compile, dist=dist)
