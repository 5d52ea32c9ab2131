"""The ``emogene`` command line: preprocess, fit-identity, train-ldm, train-a2m, speak, evaluate, list.

Every user-facing problem (:class:`~emogene_cli.errors.EmogeneError`) ends as one line
``error: <file>: <what is wrong>`` on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

# Before torch or mediapipe load: idle OpenMP threads sleep instead of spinning (on a busy
# laptop the spinning threads of two processes slow PyTorch down several times), and
# mediapipe's native logging stays quiet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from . import __version__  # noqa: E402
from .errors import EmogeneError  # noqa: E402

app = typer.Typer(
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


def _register() -> None:
    from .commands import evaluate, fit_identity, list_store, preprocess, speak, train_a2m, train_ldm

    for module in (preprocess, fit_identity, train_ldm, train_a2m, speak, evaluate, list_store):
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning EmogeneError into one line and exit code 2."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="emogene")
        return int(result) if isinstance(result, int) else 0
    except EmogeneError as exc:
        typer.echo(f"error: {exc.one_line()}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        typer.echo("interrupted: artifacts written before this run are intact (fit-identity --resume continues training)", err=True)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
