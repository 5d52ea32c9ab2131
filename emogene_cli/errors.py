"""Errors that the command line turns into one-line messages and exit code 2.

Library code raises :class:`EmogeneError` (or a subclass) for every problem that is the
user's input or setup rather than a bug: a missing file, no face found, an unknown emotion,
an identity that was not fitted. The CLI prints ``error: <path>: <message>`` and exits with
code 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class EmogeneError(Exception):
    """A user-facing error about one file, identity or option.

    Args:
        message: what is wrong, in one line.
        path: the file, folder or identity name it concerns (optional).
    """

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.message = " ".join(str(message).split())
        self.path = str(path) if path is not None else None
        super().__init__(self.one_line())

    def __reduce__(self):
        """Pickle as ``(message, path)``, so that an error raised in a child process arrives as itself."""
        return (type(self), (self.message, self.path))

    def one_line(self) -> str:
        """The message as ``<path>: <message>`` (or just the message)."""
        return f"{self.path}: {self.message}" if self.path else self.message


class InputError(EmogeneError):
    """Bad input data: unreadable media, no audio track, no face, clip too short."""


class NotFoundError(EmogeneError):
    """A file, identity, model or model file that does not exist."""


class MismatchError(EmogeneError):
    """Artifacts that do not fit together (feature kind, format version, shapes)."""
