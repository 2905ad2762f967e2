"""The native CPU kernels of the layers: the C functions of ``csrc/kernels.c`` (built and loaded by
:mod:`escnn_tensor._native`), their calling convention, and where they may be used.

- :func:`kernel` ``(name, dtype)``: the ``ctypes`` function ``etn_<name>_<f32|f64>``, argument types set, or ``None``
  when the library cannot be had (the caller then runs its PyTorch formulation, which gives the same values);
- :func:`usable` ``(x)``: the conditions every kernel shares: a non-empty CPU float32/float64 tensor, not under
  ``torch.compile``'s tracing or autocast, turned on (``ESCNN_TENSOR_NATIVE``), the library built, and a small input
  or at most 2 torch threads (:data:`MAX_VALUES_THREADED`; the kernels are single-threaded);
- :data:`ACTIVATION_ID`: the scalar activations the kernels implement (``csrc/activations.h``).

Layers using them: the fused ``TensorBatchNorm`` -> ``GatedNonLinearity`` node (``_norm_gate``) and
``PointwiseNonLinearity`` (``_pointwise``).
"""
from __future__ import annotations

import ctypes
import pathlib
from typing import Dict, Optional

import torch

from .. import _native

__all__ = ["kernel", "usable", "ptr", "ACTIVATION_ID", "FIELD_KIND", "MAX_VALUES_THREADED", "SOURCE", "ABI"]

SOURCE = pathlib.Path(__file__).resolve().parent / "csrc" / "kernels.c"
#: the calling convention below (``etn_abi_version()`` of ``csrc/kernels.c``)
ABI = 3
#: the activations of ``csrc/activations.h`` (torch.nn.functional's; elu with alpha 1, leaky_relu with slope 0.01)
ACTIVATION_ID = {"elu": 0, "silu": 1, "relu": 2, "leaky_relu": 3, "gelu": 4, "tanh": 5, "sigmoid": 6}
#: the field kinds of ``PointwiseNonLinearity`` (``csrc/pointwise_kernels.h``)
FIELD_KIND = {"scalar": 0, "pseudo": 1, "norm": 2, "unchanged": 3}
#: inputs with more values than this use the PyTorch formulations when torch runs on more than 2 threads: the kernels
#: are single-threaded (the fused norm -> gate pair, forward + backward at 8 x 28 channels,
#: comparisons/bench_call_cost.py, docs/speed_layers.md: 0.44 / 1.13 / 4.09 ms at 16^2 / 32^2 / 64^2 pixels on
#: 1 thread, against its PyTorch formulation's 0.89 / 3.40 / 14.7 ms on 1 thread and 1.04 / 3.33 / 11.9 ms on 2)
MAX_VALUES_THREADED = 1 << 18

_DTYPES = {torch.float32: "f32", torch.float64: "f64"}
_P, _I, _D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
_ARGTYPES = {
    "norm_gate_forward": [_P, _I, _I, _I, _P, _I, _P, _P, _P, _I, _P, _P, _D, _I, _P, _P, _I, _P, _P, _I, _P, _P, _P,
                          _P, _P, _P, _P],
    "norm_gate_backward": [_P, _P, _I, _I, _I, _P, _I, _P, _P, _P, _I, _I, _P, _P, _I, _P, _I, _I, _P, _P, _P, _P,
                           _P, _P, _P, _P, _P],
    "pointwise_forward": [_P, _I, _I, _I, _P, _P, _P, _I, _I, _D, _D, _D, _P],
    "pointwise_backward": [_P, _P, _I, _I, _I, _P, _P, _P, _I, _I, _D, _D, _D, _P],
}
_FUNCTIONS: Dict[tuple, ctypes._CFuncPtr] = {}


def kernel(name: str, dtype: torch.dtype):
    """The C function ``etn_<name>_<f32|f64>`` of ``csrc/kernels.c`` for ``dtype`` (float32 or float64), its
    argument types set; ``None`` when the library cannot be had (turned off, or the build failed)."""
    key = (name, dtype)
    if key not in _FUNCTIONS:
        lib = _native.load(SOURCE, ABI)
        if lib is None:
            return None  # not remembered here: ESCNN_TENSOR_NATIVE may change; _native remembers a failed build
        fn = getattr(lib, f"etn_{name}_{_DTYPES[dtype]}")
        fn.restype, fn.argtypes = _I, _ARGTYPES[name]
        _FUNCTIONS[key] = fn
    return _FUNCTIONS[key]


def usable(x: torch.Tensor) -> bool:
    """The conditions every kernel shares for an input ``x`` (module docstring); the layers add their own (their
    parameters' dtype, a named activation of :data:`ACTIVATION_ID`, ...)."""
    if x.device.type != "cpu" or x.dtype not in _DTYPES or x.numel() == 0:
        return False
    if torch.compiler.is_compiling() or _autocast_cpu():
        return False
    if x.numel() > MAX_VALUES_THREADED and torch.get_num_threads() > 2:
        return False
    return _native.enabled() and _native.load(SOURCE, ABI) is not None


def ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    """``t``'s data pointer, ``None`` (NULL) for ``None``."""
    return None if t is None else t.data_ptr()


def _autocast_cpu() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()
