"""Stopping long runs cleanly on Ctrl-C (SIGINT) or SIGTERM.

    with recording():                                   # the CLI, around a whole command
        for step in interruptible(range(start, total), on_stop=save_checkpoint):
            ...                                         # one training step
    # a signal during a step: the step finishes, save_checkpoint(done) runs, Interrupted is raised
    kept_so_far()                                       # what this run wrote that a next run uses

The pieces:

* :class:`Interrupted` (a ``KeyboardInterrupt``) says which signal stopped the run; its
  exit code is ``128 + signal`` (130 for SIGINT, 143 for SIGTERM).
* :func:`signals_raise` (the CLI): SIGINT and SIGTERM raise :class:`Interrupted` wherever
  the main thread is, so that ``finally`` blocks and atomic writes clean up after SIGTERM too.
* :func:`interruptible` wraps the step range of a training loop: a signal is held until the
  current step is complete, then ``on_stop(steps_done)`` writes a checkpoint and
  :class:`Interrupted` is raised. A second signal stops at once.
* :func:`held` (a block or a decorator): signals wait until it ends, for writes of several
  files that belong together (a checkpoint and its sidecar, a dataset and its frames).
* :func:`note_kept` / :func:`kept_so_far` inside :func:`recording`: stages note what they have
  written that a later run continues from (a checkpoint, a cache), so that the command can say
  so when it is stopped. Outside :func:`recording` notes are dropped.

Signal handlers can only be set from the main thread; elsewhere these helpers change nothing
about signals (the loop still runs and :func:`note_kept` still records).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

__all__ = [
    "Interrupted", "Kept", "held", "interruptible", "kept_so_far", "note_kept", "recording", "signals_raise",
]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (Ctrl-C is SIGINT).

    Args:
        signum: the signal number.
        where: where it stopped, e.g. ``"renderer at step 1170 of 4500"`` (optional).
    """

    def __init__(self, signum: int = signal.SIGINT, where: str | None = None) -> None:
        self.signum = int(signum)
        self.where = where
        super().__init__(f"{self.signal_name}" + (f": stopped {where}" if where else ""))

    @property
    def signal_name(self) -> str:
        """``"SIGINT"``, ``"SIGTERM"``, ..."""
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        """The shell's convention: ``128 + signal`` (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


# --------------------------------------------------------------------------------------
# handlers
# --------------------------------------------------------------------------------------


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install(handler: Callable) -> dict[int, object] | None:
    """Set ``handler`` for SIGINT and SIGTERM; returns the previous handlers (None off the main thread)."""
    if not _in_main_thread():
        return None
    previous = {}
    for signum in SIGNALS:
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, handler)
    return previous


def _restore(previous: dict[int, object] | None) -> None:
    if previous is None:
        return
    for signum, handler in previous.items():
        # None: a handler that was not set from Python; the default is the closest we can restore
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (SIGTERM would otherwise
    end the process without running ``finally`` blocks, leaving temporary files behind)."""
    previous = _install(_raise_interrupted)
    try:
        yield
    finally:
        _restore(previous)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver the first one that came.

    For writes that must not be cut in the middle: several files that belong together. Usable
    as a decorator too (``@held()``); each call gets its own block.
    """
    pending: list[int] = []
    previous = _install(lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        _restore(previous)
        if pending:
            signal.raise_signal(pending[0])  # the restored handler runs now


class _StopRequest:
    """The first signal is remembered; a second one raises :class:`Interrupted` at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise Interrupted(signum, "at once (second signal)")
        self.signum = signum


def interruptible(
    steps: Iterable[int], on_stop: Callable[[int], object] | None = None, *, what: str = "training",
    total: int | None = None,
) -> Iterator[int]:
    """Yield ``steps`` (step indices); a signal takes effect between two steps.

    While the loop runs, a SIGINT or SIGTERM is held until the current step is complete.
    Then ``on_stop(done)`` runs, ``done`` being the number of the step that just finished
    plus one (the step to continue from), and :class:`Interrupted` is raised. A second
    signal raises :class:`Interrupted` at once, without ``on_stop``.

    Args:
        steps: the step indices, e.g. ``range(start, total)``.
        on_stop: writes a checkpoint at ``done`` steps (signals are held while it runs).
        what: names the loop in the exception, e.g. ``"renderer"``.
        total: the number of steps of the whole run, for the exception's text (default: the
            end of a ``range``).

    Raises:
        Interrupted: after ``on_stop``, when a signal came during a step.
    """
    if total is None and isinstance(steps, range):
        total = steps.stop
    request = _StopRequest()
    previous = _install(request)
    try:
        for step in steps:
            yield step
            if request.signum is not None:
                done = step + 1
                if on_stop is not None:
                    with held():
                        on_stop(done)
                of = f" of {total}" if total is not None else ""
                raise Interrupted(request.signum, f"{what} after step {done}{of}")
    finally:
        _restore(previous)


# --------------------------------------------------------------------------------------
# what a run has kept
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kept:
    """Something a run wrote that stays when it is stopped.

    ``what`` is a short phrase (``"renderer checkpoint at step 1170 of 4500"``); ``then`` says
    how a later run uses it: ``"resume"``: the same command with ``--resume`` continues from
    it (a checkpoint); ``"rerun"``: the same command run again reuses it (a cache);
    ``"complete"``: a finished artifact, nothing to continue.
    """

    what: str
    path: Path | None = None
    then: Literal["resume", "rerun", "complete"] = "resume"


_record: dict[str, Kept] | None = None


@contextlib.contextmanager
def recording() -> Iterator[dict[str, Kept]]:
    """Collect :func:`note_kept` notes during the block (one command run); yields the notes."""
    global _record
    outer, _record = _record, {}
    try:
        yield _record
    finally:
        _record = outer


def note_kept(
    key: str, what: str, path: str | Path | None = None, *, then: Literal["resume", "rerun", "complete"] = "resume",
) -> None:
    """Note that this run has written ``what`` (see :class:`Kept`); a later note with the same ``key`` replaces it."""
    if then not in ("resume", "rerun", "complete"):
        raise ValueError(f"then must be resume, rerun or complete, not {then!r}")
    if _record is not None:
        _record[key] = Kept(what, Path(path) if path is not None else None, then)


def kept_so_far() -> list[Kept]:
    """The notes of the current :func:`recording`, in the order they were first made."""
    return list(_record.values()) if _record is not None else []
