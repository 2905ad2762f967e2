"""Native CPU kernels: C sources shipped in the package, compiled at first use and loaded with ``ctypes``.

:func:`load` ``(source, abi)`` returns the ``ctypes.CDLL`` of a C file ``<folder>/<name>.c`` (e.g.
``escnn_tensor/nn/csrc/kernels.c``, with the files beside it that it includes; built once per source,
compiler and machine into a cache folder, then reused by every process), or ``None`` where it cannot be had; the
caller then uses its PyTorch formulation, which computes the same values. Only a C compiler is needed (``$CC``, else
``cc``, ``gcc`` or ``clang`` on ``PATH``): no PyTorch headers, no ninja, no Python headers; a build takes ~1 s.

Environment:

- ``ESCNN_TENSOR_NATIVE=0`` turns the native kernels off (every layer uses its PyTorch formulation);
- ``ESCNN_TENSOR_CACHE`` is the cache folder (default ``$XDG_CACHE_HOME/escnn_tensor``, else
  ``~/.cache/escnn_tensor``); the libraries lie in its ``native/`` subfolder, named by a hash of the sources, the
  compiler's version and the CPU's feature flags (they are built with ``-march=native`` where the compiler takes
  it), and are written atomically (a temporary file, then a rename), so processes
  building at the same time do not see half-written files.

A build that fails (no compiler, a read-only cache) gives one ``RuntimeWarning`` naming the reason, once per process,
and ``None``.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from typing import Dict, Optional

__all__ = ["load", "enabled", "disabled", "cache_dir"]

# vectorised maths without fast-math's no-NaN assumption: reassociated sums (deterministic for one build) and exp
# through glibc's vector library; tuned for this machine's CPU first (the library's name includes a hash of the
# CPU's flags), portable flags where the compiler refuses -march=native
_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros", "-std=c99",
          "-shared", "-fPIC"]
_FLAG_SETS = (["-march=native"] + _FLAGS, _FLAGS)
_LOADED: Dict[str, Optional[ctypes.CDLL]] = {}
_LOCK = threading.Lock()


def enabled() -> bool:
    """Whether native kernels may be used (``ESCNN_TENSOR_NATIVE`` is not ``0``/``false``/``off``/``no``)."""
    return os.environ.get("ESCNN_TENSOR_NATIVE", "1").strip().lower() not in ("0", "false", "off", "no")


@contextlib.contextmanager
def disabled():
    """Context in which the native kernels are off (``ESCNN_TENSOR_NATIVE=0``; restored on exit): for timing the
    PyTorch formulations beside them."""
    old = os.environ.get("ESCNN_TENSOR_NATIVE")
    os.environ["ESCNN_TENSOR_NATIVE"] = "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["ESCNN_TENSOR_NATIVE"]
        else:
            os.environ["ESCNN_TENSOR_NATIVE"] = old


def cache_dir() -> pathlib.Path:
    """The folder of the built libraries (module docstring)."""
    root = os.environ.get("ESCNN_TENSOR_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = os.path.join(xdg, "escnn_tensor") if xdg else os.path.join(os.path.expanduser("~"), ".cache",
                                                                          "escnn_tensor")
    return pathlib.Path(root) / "native"


def _compiler() -> Optional[str]:
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc.split()[0]) and cc
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return None


def _cpu_flags() -> str:
    """The CPU's feature flags (Linux: ``/proc/cpuinfo``), so that a library tuned for one CPU is not loaded on
    another that shares the cache folder (a cluster's home directory)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _build(source: pathlib.Path, abi: int) -> ctypes.CDLL:
    """Compile (or find in the cache) and load ``source``, whose ``etn_abi_version()`` must return ``abi``; raises
    ``RuntimeError`` with the reason."""
    if sys.platform.startswith("win"):
        raise RuntimeError("native kernels are built on Linux and macOS only")
    name = source.stem
    if not source.is_file():
        raise RuntimeError(f"no source {source}")
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found ($CC, cc, gcc or clang)")
    try:
        version = subprocess.run(cc.split() + ["--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"{cc} --version failed: {e}") from None
    digest = hashlib.sha256()
    for part in sorted(p for p in source.parent.iterdir() if p.is_file()):  # the source and the files it includes
        digest.update(part.name.encode() + b"\0" + part.read_bytes())
    digest.update("\0".join([version, platform.machine(), platform.system(), _cpu_flags()]).encode())
    folder = cache_dir()
    stem = f"{name}-{digest.hexdigest()[:16]}"
    found = [folder / f"{stem}-{i}.so" for i in range(len(_FLAG_SETS)) if (folder / f"{stem}-{i}.so").is_file()]
    target = found[0] if found else None
    if target is None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RuntimeError(f"cannot write to the cache folder {folder}: {e}") from None
        reasons = []
        for i, flags in enumerate(_FLAG_SETS):
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{stem}-", suffix=".so", dir=folder)
                os.close(fd)
            except OSError as e:
                raise RuntimeError(f"cannot write to the cache folder {folder}: {e}") from None
            try:
                run = subprocess.run(cc.split() + flags + [str(source), "-o", tmp, "-lm"], capture_output=True,
                                     text=True, timeout=300)
                if run.returncode == 0:
                    target = folder / f"{stem}-{i}.so"
                    os.replace(tmp, target)
                    break
                lines = (run.stderr or run.stdout).strip().splitlines()
                reasons.append(lines[-1] if lines else f"exit status {run.returncode}")
            except (OSError, subprocess.SubprocessError) as e:
                reasons.append(str(e))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        if target is None:
            raise RuntimeError(f"{cc} failed on {source.name}: {reasons[-1]}")
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as e:
        raise RuntimeError(f"cannot load {target}: {e}") from None
    lib.etn_abi_version.restype = ctypes.c_int64
    if lib.etn_abi_version() != abi:
        raise RuntimeError(f"{target} has calling convention {lib.etn_abi_version()}, expected {abi}")
    return lib


def load(source, abi: int) -> Optional[ctypes.CDLL]:
    """The loaded library of the C file ``source`` (a path), or ``None`` (turned off, or the build failed: one
    warning per process). ``abi``: the version of the calling convention the caller expects, which the library's
    ``etn_abi_version()`` must return (a library of another version is refused, with the warning)."""
    if not enabled():
        return None
    key = str(source)
    if key in _LOADED:
        return _LOADED[key]
    with _LOCK:
        if key not in _LOADED:
            try:
                _LOADED[key] = _build(pathlib.Path(source).resolve(), abi)
            except RuntimeError as e:
                warnings.warn(f"escnn_tensor: native kernel {pathlib.Path(source).name!r} unavailable ({e}); using "
                              f"the PyTorch formulation (same values, slower on small inputs). ESCNN_TENSOR_NATIVE=0 "
                              f"silences this.", RuntimeWarning, stacklevel=3)
                _LOADED[key] = None
    return _LOADED[key]
