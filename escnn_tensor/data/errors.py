"""The one error of the data readers: :class:`DataError`, a ``ValueError`` whose message is one line.

Every problem with a user's data set (a spec that cannot be read, an unknown key or format, a missing field, an
``order`` that does not fit an array's shape, inputs and targets on different grids, NaNs in a file, too few
trajectories for the splits) raises it with a message naming the file, the field and what was expected, so that
the command line prints it as it is (no traceback) and exits with status 2.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

__all__ = ["DataError"]


class DataError(ValueError):
    """A problem with a data set or its spec; ``str(error)`` is one line: ``"<file>: <field>: <what>"``.

    Args:
        message: what is wrong and what was expected.
        path: the file (or spec) concerned, or ``None``.
        field: the field concerned, or ``None``.
    """

    def __init__(self, message: str, path: Optional[Union[str, Path]] = None, field: Optional[str] = None):
        parts = []
        if path is not None:
            parts.append(str(path))
        if field is not None:
            parts.append(f"field {field!r}")
        parts.append(" ".join(str(message).split()))  # one line, whatever the message held
        super().__init__(": ".join(parts))
        self.path = None if path is None else str(path)
        self.field = field
