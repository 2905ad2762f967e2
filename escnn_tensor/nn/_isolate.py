r"""``isolate``: every escnn layer of a network gets its own basis modules; casting one network never changes another.

escnn caches the sampled kernel bases of ``R2Conv`` / ``R3Conv`` / ``Linear`` (``SingleBlockBasisExpansion``) and of
the point convolutions (``SingleBlockBasisSampler``, with their ``KernelBasis`` submodules) in module-level
dictionaries, and registers the *same* module object as a submodule of every layer built with the same types, in
every network. ``Module._apply`` (``.double()``, ``.half()``, ``.to(...)``, ``.cuda()``) replaces the buffers of that
shared object, so after ``net_a.double()`` a float32 ``net_b`` fails with "expected scalar type Float but found
Double". :func:`isolate` removes the sharing; escnn_tensor's own layers (``GeometricConv``) keep their bases in their
own buffers and need nothing.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, Optional

import torch
from escnn.kernels import KernelBasis
from escnn.nn.modules.basismanager import SingleBlockBasisExpansion, SingleBlockBasisSampler

from ..representations import _check_memory

__all__ = ["isolate"]

_SHARED_TYPES = (SingleBlockBasisExpansion, SingleBlockBasisSampler, KernelBasis)
_MARK = "_escnn_tensor_isolated"  # on a private basis module: _PRIVATE (own object) or _OWNED (own tensors too)
_PRIVATE, _OWNED = 1, 2


def _subtree_buffers(module: torch.nn.Module, out: Dict[int, torch.Tensor]) -> None:
    """All buffers of ``module`` and its submodules, by ``id`` (each module visited once)."""
    stack, seen = [module], set()
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        out.update((id(b), b) for b in m._buffers.values() if b is not None)
        stack.extend(sub for sub in m._modules.values() if sub is not None)


def _private_copy(
    module: torch.nn.Module,
    tensors: Optional[Dict[int, torch.Tensor]],
    modules: Dict[int, torch.nn.Module],
) -> torch.nn.Module:
    """A new module object of the same class with its own containers and private copies of all submodules.

    Buffers: the same tensors (``tensors is None``) or clones, ``tensors`` mapping ``id(original) -> clone`` so that
    one isolate call clones each tensor once. Parameters are kept (shared). ``modules`` maps ``id(original submodule)
    -> copy`` inside one subtree, so a submodule reached twice stays one object (escnn's kernel bases share
    submodules, and compare them by value when they are not one object).
    """
    if id(module) in modules:
        return modules[id(module)]
    new = object.__new__(type(module))
    modules[id(module)] = new
    state = module.__dict__.copy()
    for key, value in state.items():
        if isinstance(value, (dict, set)) and key.startswith("_"):
            state[key] = value.copy()  # _buffers, _modules, _parameters, hooks, _non_persistent_buffers_set
    new.__dict__.update(state)
    if tensors is not None:
        buffers = new.__dict__["_buffers"]
        for name, buf in buffers.items():
            if buf is not None:
                if id(buf) not in tensors:
                    tensors[id(buf)] = buf.detach().clone()
                buffers[name] = tensors[id(buf)]
    subs = new.__dict__["_modules"]
    for name, sub in subs.items():
        if sub is not None:
            subs[name] = _private_copy(sub, tensors, modules)
    return new


def isolate(module: torch.nn.Module, copy_tensors: bool = False) -> torch.nn.Module:
    """Make every escnn layer inside ``module`` own its basis modules, in place; returns ``module``.

    Every submodule of escnn's cached basis classes (``SingleBlockBasisExpansion``, ``SingleBlockBasisSampler``,
    ``KernelBasis``) that is not yet private to its place in ``module`` is replaced by a private copy: a new module
    object (with private copies of its submodules) holding the same buffer tensors. ``Module._apply`` replaces
    buffers rather than writing into them, so afterwards ``.double()``, ``.half()``, ``.to(dtype/device)``, ``.cuda()``
    on ``module`` -- or on a single one of its layers, even one that shared a basis with another -- change nothing
    outside it. Values, parameters (never copied: weight tying is kept), ``state_dict`` keys and outputs are
    unchanged. Cost: a few small objects per basis, no tensor copied, no basis recomputed.

    The basis *storage* stays shared with escnn's cache until the first cast, so writes into it (``load_state_dict``
    of a checkpoint with other basis values, in-place ops on the buffers) would still reach other networks. With
    ``copy_tensors=True`` the buffers are cloned as well (once per call: layers of ``module`` that shared a basis
    share the clone), at the memory cost of every distinct basis tensor of ``module``; this is estimated first and a
    ``ValueError`` naming the size is raised above ``escnn_tensor.representations.MEMORY_LIMIT_BYTES``. (escnn's bases
    grow fast: four regular fields of the 3D octahedral group with ``kernel_size=5`` already hold about 1 GB.)

    Idempotent: a second call finds every basis private (and, if asked, cloned) and replaces nothing. Call it on a
    network holding escnn convolutions before casting or moving it while other networks with the same field types
    exist (e.g. a float64 copy for checks next to a float32 model). Unpickled and deep-copied networks already own
    their bases; isolating them is harmless.

    Raises:
        TypeError: ``module`` is not a ``torch.nn.Module``, or ``copy_tensors`` is not a bool.
        ValueError: ``copy_tensors=True`` and the clones would exceed the memory limit.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(copy_tensors, bool):
        raise TypeError(f"copy_tensors must be True or False, got {copy_tensors!r}")
    # slots (parent, attribute name, child) outside the bases: a basis module is copied with its whole subtree.
    # (Not module.modules(): it de-duplicates with a set, and escnn's basis managers define __eq__/__hash__ by value,
    # so equal but distinct layers would be skipped.)
    slots = []
    seen = {id(module)}
    stack = [module]
    while stack:
        parent = stack.pop()
        for name, child in parent._modules.items():
            if child is None:
                continue
            slots.append((parent, name, child))
            if id(child) not in seen and not isinstance(child, _SHARED_TYPES):
                seen.add(id(child))
                stack.append(child)
    uses = Counter(id(child) for _, _, child in slots)
    wanted = _OWNED if copy_tensors else _PRIVATE
    todo = [
        (parent, name, child)
        for parent, name, child in slots
        if isinstance(child, _SHARED_TYPES) and not (child.__dict__.get(_MARK, 0) >= wanted and uses[id(child)] == 1)
    ]
    tensors: Optional[Dict[int, torch.Tensor]] = None
    if copy_tensors and todo:
        found: Dict[int, torch.Tensor] = {}
        for _, _, child in todo:
            _subtree_buffers(child, found)
        nbytes = sum(b.numel() * b.element_size() for b in found.values())
        _check_memory(f"isolate(copy_tensors=True) of {type(module).__name__}", nbytes, "clones of escnn's bases")
        tensors = {}
    for parent, name, child in todo:
        copy = _private_copy(child, tensors, {})
        copy.__dict__[_MARK] = max(wanted, child.__dict__.get(_MARK, 0))
        parent._modules[name] = copy
    return module
