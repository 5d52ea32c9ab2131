"""The ``emogene`` command line: preprocess, fit-identity, train-ldm, train-a2m, speak, evaluate, list.

Every user-facing problem (:class:`~emogene_cli.errors.EmogeneError`) ends as one line
``error: <file>: <what is wrong>`` on stderr with exit code 2, never a traceback. Ctrl-C
(SIGINT) or SIGTERM ends as one line ``interrupted: ...`` saying what the run kept and the
command that continues, with exit code 130 or 143 (:mod:`emogene_cli.interrupt`).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import importlib
import inspect
import os
import re
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core

# Before torch or mediapipe load: idle OpenMP threads spin for a short while (GNU OpenMP's
# spin count, a third of its default) and then sleep, and mediapipe's native logging stays
# quiet. Threads that sleep at once (OMP_WAIT_POLICY=PASSIVE) made the renderer's training
# steps 25% slower on 2 cores; threads that spin long slow two busy processes down several times.
os.environ.setdefault("GOMP_SPINCOUNT", "100000")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from . import __version__  # noqa: E402
from .errors import EmogeneError  # noqa: E402
from .interrupt import Interrupted, kept_so_far, recording, signals_raise  # noqa: E402


class _Group(typer.core.TyperGroup):
    """Lets an interrupt reach :func:`main` (Typer would turn it into a silent exit code 130)."""

    def invoke(self, ctx: typer.Context):  # noqa: D102 - click's
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Stopped(exc) from exc


class _Stopped(BaseException):
    """Carries a KeyboardInterrupt past Typer's own handling of it."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__(interrupt)
        self.interrupt = interrupt


def _click_exceptions():
    """The ``exceptions`` module of the click that Typer itself runs on.

    Typer up to 0.2x builds on the ``click`` package; newer releases vendor it as
    ``typer._click``, whose usage errors are not ``click.ClickException``. Taking the module
    from the class Typer's command group derives from catches the right ones with either.
    """
    base = next(k for k in typer.core.TyperGroup.__mro__[1:] if not k.__module__.startswith("typer.core") and k.__module__.endswith(".core"))
    return importlib.import_module(base.__module__.rsplit(".", 1)[0] + ".exceptions")


_CLICK = _click_exceptions()

#: Errors of a folder that will not take files (no permission, read-only, full disk or quota).
_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
_WRITE_HINT = "choose a writable folder (--home or EMOGENE_HOME for the store, -o for a video) or free some space"


def usage_error_lines(exc) -> str:
    """What a mistyped command prints: the command's usage line and one ``error:`` line.

    Args:
        exc: a click ``UsageError`` (missing argument, unknown option or command, a value of
            the wrong type, out of range or not among the choices); it names the parameter.
    """
    ctx = getattr(exc, "ctx", None)
    usage = ctx.get_usage() if ctx is not None else "Usage: emogene [OPTIONS] COMMAND [ARGS]..."
    path = ctx.command_path if ctx is not None else "emogene"
    message = " ".join(exc.format_message().split())
    return f"{usage}\nerror: {message} (see '{path} --help')"


app = typer.Typer(
    cls=_Group,
    name="emogene",
    help="Audio-driven emotional talking heads (EmoGene, FG 2025): film a person once, then make them say any audio with any emotion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"emogene {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Annotated[
        Optional[Path],
        typer.Option("--home", help="Artifact store folder (default: $EMOGENE_HOME, else the platform's user data dir).", envvar="EMOGENE_HOME"),
    ] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Audio-driven emotional talking heads."""
    ctx.obj = {"home": home}


def reflow_help(doc: str) -> str:
    """A command's docstring as ``--help`` prose: the lines of each paragraph joined into one.

    Typer's rich help keeps a docstring's single line breaks after its first paragraph, so
    text wrapped at 100 columns in the source broke again mid-sentence at the terminal's
    width. Paragraphs stay apart; lines that start a list item (``- ``, ``* ``) or are indented
    (examples) keep their own line, and a paragraph marked ``\\b`` is kept as written.
    """
    out = []
    for para in inspect.cleandoc(doc or "").split("\n\n"):
        if para.startswith("\b"):  # Click's "keep this paragraph as written"
            out.append(para)
            continue
        lines = para.split("\n")
        joined = [lines[0]]
        for line in lines[1:]:
            if line.startswith(" ") or re.match(r"[-*] ", line) or joined[-1].startswith(" "):
                joined.append(line)
            else:
                joined[-1] = f"{joined[-1]} {line}"
        out.append("\n".join(joined))
    return "\n\n".join(out)


def _register() -> None:
    from .commands import doctor, evaluate, fit_identity, list_store, preprocess, speak, train_a2m, train_ldm

    for module in (preprocess, fit_identity, train_ldm, train_a2m, speak, evaluate, list_store, doctor):
        module.register(app)
    for info in app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = reflow_help(info.callback.__doc__)


_register()


def interrupted_line(exc: KeyboardInterrupt, argv: list[str]) -> str:
    """The one line printed when a run is stopped: what it kept and the command that continues.

    Args:
        exc: the interrupt (an :class:`~emogene_cli.interrupt.Interrupted` says which signal).
        argv: the command's arguments (without the program name); the command that continues
            is the same one, with ``--resume`` added when what was kept is a checkpoint
            (see :class:`~emogene_cli.interrupt.Kept`).
    """
    name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
    kept = kept_so_far()
    if not kept:
        return f"interrupted ({name}): nothing was written; the store is as it was before this command"
    kept_text = "; ".join(k.what + (f" ({k.path})" if k.path is not None else "") for k in kept)
    args = list(argv)
    if any(k.then == "resume" for k in kept):
        args += [] if "--resume" in args else ["--resume"]
    elif not any(k.then == "rerun" for k in kept):
        return f"interrupted ({name}): kept {kept_text}, complete"
    return f"interrupted ({name}): kept {kept_text}. Continue with: {shlex.join(['emogene', *args])}"


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning EmogeneError into one line and exit code 2.

    SIGINT and SIGTERM end as one line (:func:`interrupted_line`) and exit code 130 or 143.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    with recording(), signals_raise():
        try:
            result = app(args=args, standalone_mode=False, prog_name="emogene")
            return int(result) if isinstance(result, int) else 0
        except EmogeneError as exc:
            typer.echo(f"error: {exc.one_line()}", err=True)
            return exc.exit_code
        except OSError as exc:
            if exc.errno not in _WRITE_ERRNOS or exc.filename is None:
                raise
            typer.echo(f"error: {exc.filename}: cannot write ({exc.strerror}): {_WRITE_HINT}", err=True)
            return 2
        except typer.Exit as exc:
            return exc.exit_code
        except _CLICK.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command: its help, as asked
                exc.show()
            else:
                typer.echo(usage_error_lines(exc), err=True)
            return 2
        except _CLICK.ClickException as exc:
            typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            return exc.exit_code
        except (_Stopped, KeyboardInterrupt, typer.Abort) as exc:
            stop = exc.interrupt if isinstance(exc, _Stopped) else exc
            if not isinstance(stop, KeyboardInterrupt):
                stop = KeyboardInterrupt()
            with _quiet():
                typer.echo(interrupted_line(stop, args), err=True)
            return stop.exit_code if isinstance(stop, Interrupted) else 130


@contextlib.contextmanager
def _quiet():
    """Ignore further SIGINT / SIGTERM while the last line is printed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run() -> None:
    """Console-script entry point.

    Before the interpreter exits, every object still alive is moved out of the garbage
    collector's reach (``gc.freeze``): its last collection over torch's and transformers'
    objects took about 1 s of every ``speak`` on a 2-core CPU. Exit handlers (``atexit``,
    ``weakref.finalize``) still run; only objects caught in reference cycles are no longer
    collected, so their ``__del__`` does not run. The commands close their files and end their
    processes themselves and leave nothing to it.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
