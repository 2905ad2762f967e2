r"""One place for writing files that must not be lost or half-written: atomic writes, checksummed checkpoints and
directory locks.

* :func:`atomic_write` (and :func:`write_bytes`, :func:`write_text`, :func:`write_json`, :func:`save_torch` built on
  it): the content goes to a temporary file ``.<name>.<random>.tmp`` in the same directory, which is flushed and
  ``fsync``-ed, then renamed over the target with :func:`os.replace` (atomic on POSIX), and the directory is
  ``fsync``-ed so the rename survives a crash. A reader sees the old file or the new one, never a mixture. If
  writing fails (an object that cannot be pickled, a full disk, an interrupt), the temporary file is removed and the
  exception propagates; the old target is left untouched.
* :func:`save_checkpoint` / :func:`load_checkpoint`: ``torch.save`` bytes behind a one-line header holding their
  length and SHA-256,

  .. code-block:: text

      ESCNN_TENSOR_CHECKPOINT v1 sha256=<64 hex digits> size=<number of payload bytes>\n<torch.save bytes>

  so a corrupt, truncated or empty file raises :class:`CorruptCheckpointError` (a ``ValueError``) with a one-line
  message naming the file, instead of a torch or pickle traceback (or, worse, loading silently changed numbers).
  Files without the header (plain ``torch.save``, written before this format) still load; they carry no checksum,
  so only the errors ``torch.load`` itself finds are reported, as :class:`CorruptCheckpointError` too.
  ``load_checkpoint`` reads the whole file into memory once (checkpoints here are models and optimiser states).
* :func:`lock_directory`: an exclusive, non-blocking ``fcntl.flock`` on ``DIR/.lock``, as a context manager. The
  holder writes its process id, host, start time and a free-form ``owner`` text into the lock file; a second
  holder (another process, or another open in the same process) gets :class:`DirectoryLockedError` saying who
  holds it. The lock is released when the context ends or the process dies (the kernel drops flock locks with
  the file descriptor), so a crashed run never leaves a stale lock; the file ``.lock`` itself stays.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import io
import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional, Union

import torch

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "atomic_write",
    "write_bytes",
    "write_text",
    "write_json",
    "save_torch",
    "save_checkpoint",
    "load_checkpoint",
    "CorruptCheckpointError",
    "lock_directory",
    "DirectoryLockedError",
    "CHECKPOINT_MAGIC",
]

CHECKPOINT_MAGIC = b"ESCNN_TENSOR_CHECKPOINT v1 "
_HEADER_MAX = 256  # bytes: the header line is ~130


# ---- atomic writes ------------------------------------------------------------------------------------------------


def _fsync_directory(directory: Path) -> None:
    """``fsync`` a directory so a rename inside it is durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a binary temporary file in the same directory, which is
    flushed, ``fsync``-ed and renamed over ``path`` (the directory is ``fsync``-ed too). On any exception
    (including ``KeyboardInterrupt``) the temporary file is removed, ``path`` keeps its old content and the
    exception propagates. Parent directories are created. Returns ``path`` as a :class:`~pathlib.Path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)
    return path


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return write_bytes(path, text.encode(encoding))


def write_json(obj: Any, path: PathLike, **dumps_kwargs: Any) -> Path:
    """``json.dumps(obj, **dumps_kwargs)`` written to ``path`` atomically, with a final newline. The text is made
    before the file is opened, so an object that cannot be serialised leaves nothing behind."""
    return write_text(path, json.dumps(obj, **dumps_kwargs) + "\n")


def save_torch(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj, path)`` atomically (a plain torch file without a checksum; see :func:`save_checkpoint`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


# ---- checksummed checkpoints --------------------------------------------------------------------------------------


class CorruptCheckpointError(ValueError):
    """A checkpoint file that is empty, truncated, fails its checksum or cannot be unpickled. Its message is one
    line naming the file; ``.path`` holds the path."""

    def __init__(self, path: PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"checkpoint {self.path} is corrupt: {reason}")


def _serialise(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_checkpoint(obj: Any, path: PathLike) -> Path:
    """Save ``obj`` (anything ``torch.save`` takes) to ``path`` atomically, behind a header with the SHA-256 and the
    length of the serialised bytes (format in the module docstring). Read it back with :func:`load_checkpoint`.
    The object is serialised before the file is opened, so an object that cannot be pickled leaves nothing
    behind and the old ``path`` untouched."""
    payload = _serialise(obj)
    header = CHECKPOINT_MAGIC + f"sha256={hashlib.sha256(payload).hexdigest()} size={len(payload)}\n".encode()
    return atomic_write(path, lambda f: (f.write(header), f.write(payload)))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_checkpoint(path: PathLike, map_location: Any = None, weights_only: bool = False) -> Any:
    """Load a file written by :func:`save_checkpoint`, verifying its length and SHA-256 first; a file without the
    header (plain ``torch.save``, e.g. written by older versions) is loaded as it is, unverified.

    ``map_location`` and ``weights_only`` are passed to :func:`torch.load`. ``weights_only`` defaults to
    ``False`` because a checkpoint of the harness holds its own objects (random-generator states, the job's
    settings); pass ``True`` for a file from an untrusted source.

    Raises :class:`CorruptCheckpointError` (a ``ValueError``, one line naming the file) for an empty, truncated or
    altered file or one ``torch.load`` cannot read; :class:`FileNotFoundError` if there is no file.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise CorruptCheckpointError(path, "the file is empty")
    if data.startswith(CHECKPOINT_MAGIC):
        end = data.find(b"\n", 0, _HEADER_MAX)
        if end < 0:
            raise CorruptCheckpointError(path, "its header is truncated")
        try:
            fields = dict(item.split("=", 1) for item in data[len(CHECKPOINT_MAGIC) : end].decode("ascii").split())
            digest, size = fields["sha256"], int(fields["size"])
        except (ValueError, KeyError, UnicodeDecodeError):
            raise CorruptCheckpointError(path, "its header is unreadable") from None
        payload = data[end + 1 :]
        if len(payload) != size:
            raise CorruptCheckpointError(
                path, f"{len(payload)} bytes after the header, the header says {size} (truncated or appended to)"
            )
        if hashlib.sha256(payload).hexdigest() != digest:
            raise CorruptCheckpointError(path, "the SHA-256 checksum does not match its content")
    else:
        payload = data  # an older checkpoint: plain torch.save, no checksum
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=weights_only)
    except Exception as exc:  # noqa: BLE001 - torch/pickle/zip raise many types for a damaged file
        raise CorruptCheckpointError(path, f"torch.load cannot read it ({_one_line(exc)})") from exc


# ---- directory locks ----------------------------------------------------------------------------------------------


class DirectoryLockedError(RuntimeError):
    """Another process (or another open in this one) holds the lock of a directory; the message says who, in one
    line. ``.directory`` holds the directory and ``.holder`` the text the holder wrote into its lock file."""

    def __init__(self, directory: PathLike, holder: str):
        self.directory = Path(directory)
        self.holder = holder
        who = holder if holder else "another process (it wrote no details)"
        super().__init__(f"{self.directory} is in use by {who}; wait for it to finish or use another directory")


@contextlib.contextmanager
def lock_directory(directory: PathLike, owner: Optional[str] = None) -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (created if missing) for the duration of the ``with`` block:
    ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``directory/.lock``. Does not wait: if the lock is held, raises
    :class:`DirectoryLockedError` naming the holder's process id, host, start time and ``owner`` (free text,
    e.g. the run's command line; defaults to ``sys.argv``). Yields the lock file's path.

    flock locks belong to the open file, so they are released when the block ends, when the process dies, or
    never taken twice by two opens in one process. They are advisory (only code that asks for the lock is kept
    out) and may not work on every network file system."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            holder = ""
            with contextlib.suppress(OSError):
                holder = " ".join(lock_path.read_text(errors="replace").split())
            raise DirectoryLockedError(directory, holder) from None
        owner = owner if owner is not None else " ".join(sys.argv)
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        info = f"process {os.getpid()} on {socket.gethostname()} since {started} ({owner})"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        try:
            yield lock_path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
