"""Shared pieces of the commands: the store from ``--home``, device choice, progress bars, tables."""

from __future__ import annotations

import contextlib
import os
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ..errors import EmogeneError
from ..store import Store

console = Console()
err_console = Console(stderr=True)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class AudioFeatureKind(str, Enum):
    """``--audio-features``: which speech features audio-to-motion reads (see emogene_cli.audio)."""

    auto = "auto"
    whisper = "whisper"
    hubert = "hubert"
    mel = "mel"


AUDIO_FEATURES_HELP = (
    "auto: the Whisper encoder when its weights resolve, then HuBERT, else log-mel + f0 (one line says which). "
    "Must match the models it will drive."
)
WHISPER_HELP = (
    "Whisper weights: a folder (config.json, preprocessor_config.json, model.safetensors) or hub id; "
    "the same as $EMOGENE_WHISPER (default: $EMOGENE_MODEL_DIR/whisper-base, the store, the HF cache, "
    "then openai/whisper-base from the hub)."
)


def use_whisper(whisper: str | None) -> None:
    """Make ``--whisper`` the first place Whisper weights are looked for in this process.

    The option is the command-line form of ``$EMOGENE_WHISPER`` (see
    :mod:`emogene_cli.audio.whisper`), so every stage that loads the encoder sees it.
    """
    if whisper:
        os.environ["EMOGENE_WHISPER"] = str(whisper)


def get_store(ctx: typer.Context, *, write: bool = False) -> Store:
    """The store chosen by the global ``--home`` option (or the environment / default).

    With ``write``, a store that cannot take new files is an error before any work starts
    (:meth:`~emogene_cli.store.Store.require_writable`).
    """
    obj = ctx.find_root().obj or {}
    store = Store(obj.get("home"))
    if write:
        store.require_writable()
    return store


def resolve_device(device: Device | str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    name = device.value if isinstance(device, Device) else str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise EmogeneError("--device cuda was asked for but torch sees no CUDA GPU (use --device cpu or auto)", path="--device")
    return name


@contextlib.contextmanager
def progress_bars(transient: bool = False) -> Iterator[Callable[..., None]]:
    """A rich progress display and a callback ``update(label, done, total, **fields)``.

    Each distinct ``label`` gets its own bar; extra fields (loss, PSNR) are shown beside it.
    """
    progress = Progress(
        TextColumn("[bold]{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err_console,
        transient=transient,
        # the display redraws in a thread that takes the GIL: at rich's default 10 Hz it slowed a
        # 2-core render by a third (speak: 4.5 -> 6.1 fps at 2 Hz)
        refresh_per_second=2,
    )
    tasks: dict[str, int] = {}

    def update(label: str, done: int, total: int, **fields: float) -> None:
        info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        if label not in tasks:
            tasks[label] = progress.add_task(label, total=max(total, 1), info=info)
        progress.update(tasks[label], completed=done, total=max(total, 1), info=info)

    with progress:
        yield update


def summary_table(title: str, rows: list[tuple[str, object]]) -> Table:
    """A two-column rich table of ``(what, value)`` rows."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def data_table(title: str, columns: list[str], rows: list[tuple[object, ...]]) -> Table:
    """A rich table with a header row: ``columns`` names, one tuple of cells per row."""
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    return table


def print_warnings(warnings: list[str]) -> None:
    """Each warning as one ``warning: ...`` line on stderr."""
    for w in warnings:
        err_console.print(Text.assemble(("warning: ", "yellow"), w), highlight=False)


def paths_rows(paths: dict[str, Path]) -> list[tuple[str, object]]:
    """Rows ``("wrote <what>", path)`` for a summary table."""
    return [(f"wrote {k}", str(v)) for k, v in paths.items()]
