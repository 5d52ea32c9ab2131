"""``emogene train-ldm DATA_DIR``: train the landmark deformation model on MEAD-layout clips."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ._common import Device, console, get_store, progress_bars, resolve_device


def train_ldm_command(
    ctx: typer.Context,
    data_dir: Annotated[list[Path], typer.Argument(help="Folders in MEAD's layout: <actor>/video/front/<emotion>/level_<n>/<sentence>.mp4 (MEAD; CREMA-D laid out the same way). Actor names must be unique across folders.")],
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs over the aligned frame pairs.")] = 300,
    device: Annotated[Device, typer.Option(help="Where to train.")] = Device.auto,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    leave_out: Annotated[Optional[list[str]], typer.Option("--leave-out", help="An actor (folder name, e.g. M030) not to train on, so that `evaluate --emotion-actors` can measure the model against it; repeat for several.")] = None,
) -> None:
    """Train the landmark deformation model (neutral landmarks + emotion -> displacement).

    Extracts landmarks of every clip (cached in the store), pairs each emotional clip with the
    same actor's neutral clip of the same sentence, aligns them by dynamic time warping on the
    mouth, trains, saves [bold]models/ldm.safetensors[/bold] and prints per-emotion validation error.
    With two or more actors it also trains once without each actor and prints how that model
    reproduces the left-out actor's emotions (strength and what each reads as, landmark level),
    so that no figure grades the model with the actors it trained on.
    """
    from ..emotion import train_ldm

    store = get_store(ctx, write=True)
    dev = resolve_device(device)
    with progress_bars() as update:
        report = train_ldm(data_dir, store=store, epochs=epochs, device=dev, seed=seed, leave_out=tuple(leave_out or ()),
                           progress=update)
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
    if report.leave_one_out:
        console.print(leave_one_out_table(report.leave_one_out))
    console.print(f"wrote {report.path}")


def leave_one_out_table(held_out: list) -> Table:
    """Per emotion, for each left-out actor: strength (1 = as the actor) and what it reads as."""
    from statistics import median

    from ..emotions import EMOTIONS

    table = Table(title="Leave one actor out: the LDM trained without the actor, on the actor's own neutral frames "
                  "(strength: the predicted lasting shape projected on the actor's real one, 1 = as the actor; read as: nearest real emotion)",
                  title_justify="left")
    table.add_column("emotion")
    for h in held_out:
        table.add_column(f"without {h.actor}", justify="right")
    for e in EMOTIONS:
        if any(e in h.strength for h in held_out):
            table.add_row(e, *(f"{h.strength[e]:.2f} ({h.read_as[e]})" if e in h.strength else "-" for h in held_out))
    table.add_row("median, read right", *(
        f"{median(h.strength.values()):.2f}, {sum(h.read_as[e] == e for e in h.strength)} of {len(h.strength)}" for h in held_out))
    return table


def register(app: typer.Typer) -> None:
    app.command("train-ldm")(train_ldm_command)
