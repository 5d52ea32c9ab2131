"""``emogene train-ldm DATA_DIR``: train the landmark deformation model on MEAD-layout clips."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._common import Device, console, get_store, progress_bars, resolve_device


def train_ldm_command(
    ctx: typer.Context,
    data_dir: Annotated[Path, typer.Argument(help="Folder in MEAD's layout: <actor>/video/front/<emotion>/level_<n>/<sentence>.mp4.")],
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs over the aligned frame pairs.")] = 300,
    device: Annotated[Device, typer.Option(help="Where to train.")] = Device.auto,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train the landmark deformation model (neutral landmarks + emotion -> displacement).

    Extracts landmarks of every clip (cached in the store), pairs each emotional clip with the
    same actor's neutral clip of the same sentence, aligns them by dynamic time warping on the
    mouth, trains, saves [bold]models/ldm.safetensors[/bold] and prints per-emotion validation error.
    """
    from ..emotion import train_ldm

    store = get_store(ctx, write=True)
    dev = resolve_device(device)
    with progress_bars() as update:
        report = train_ldm(data_dir, store=store, epochs=epochs, device=dev, seed=seed, progress=update)
    table = Table(title="LDM validation (last 20% of each pair; RMS landmark error, inter-ocular units)", title_justify="left")
    table.add_column("emotion")
    table.add_column("LDM error", justify="right")
    table.add_column("no-deformation error", justify="right")
    table.add_column("mean displacement, real", justify="right")
    table.add_column("predicted", justify="right")
    for name, err in report.val_error.items():
        table.add_row(name, f"{err:.4f}", f"{report.baseline_error[name]:.4f}", f"{report.real_size[name]:.4f}",
                      f"{report.predicted_size[name]:.4f}")
    console.print(table)
    console.print(
        f"{report.clips} clips of {len(report.actors)} actors ({', '.join(report.actors)}), {report.pairs} pairs, "
        f"{report.train_frames} training / {report.val_frames} validation frames, {report.epochs} epochs"
    )
    console.print(f"wrote {report.path}")


def register(app: typer.Typer) -> None:
    app.command("train-ldm")(train_ldm_command)
