"""``emogene doctor``: one table of what a run needs and whether this machine has it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from ._common import WHISPER_HELP, console, get_store


def doctor_command(
    ctx: typer.Context,
    model_dir: Annotated[Optional[str], typer.Option(help="Check the MediaPipe files in this folder, as `preprocess --model-dir` would.")] = None,
    whisper: Annotated[Optional[str], typer.Option(help=WHISPER_HELP)] = None,
    hubert: Annotated[Optional[str], typer.Option(help="HuBERT weights to check: a local folder or hub id.")] = None,
) -> None:
    """Check what a run needs: ffmpeg, torch and its devices, the model files, the store, the models in use.

    Writes and downloads nothing. Exits 0 when everything the normal path (preprocess,
    fit-identity, speak) needs is there, else 1 after one line naming the first thing to fix.
    """
    from ..pipelines.doctor import diagnose

    store = get_store(ctx)
    checks = diagnose(store, model_dir=model_dir, whisper=whisper, hubert=hubert)
    table = Table(title="emogene doctor", title_justify="left")
    for col in ("", "what", "where / state"):
        table.add_column(col)
    marks = {True: "[green]ok[/green]", False: "[red]missing[/red]", None: "[dim]-[/dim]"}
    for c in checks:
        mark = marks[c.ok] if c.needed or c.ok is not False else "[yellow]missing[/yellow]"
        table.add_row(mark, c.what + ("" if c.needed else " [dim](optional)[/dim]"), c.detail)
    console.print(table)
    first = next((c for c in checks if c.needed and c.ok is False), None)
    if first is not None:
        console.print(f"[red]not ready[/red]: {first.what}: {first.fix}", soft_wrap=True)
        raise typer.Exit(1)
    console.print("ready: everything preprocess, fit-identity and speak need is here")


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_command)
