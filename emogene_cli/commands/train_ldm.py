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
    render: Annotated[Optional[list[str]], typer.Option("--render", help="A fitted identity: also leave each actor out in turn on rendered frames (every emotion rendered on it and graded by the actor left out; about 3 minutes per actor and identity on 2 cores); repeat for several. Needs --audio.")] = None,
    audio: Annotated[Optional[Path], typer.Option(help="Speech that drives the --render frames (its first --seconds per emotion).")] = None,
    seconds: Annotated[Optional[float], typer.Option(min=0.2, help="Seconds rendered per emotion with --render (default 3).")] = None,
    hubert: Annotated[Optional[str], typer.Option(help="HuBERT weights folder, for --render identities fitted with HuBERT features.")] = None,
) -> None:
    """Train the landmark deformation model (neutral landmarks + emotion -> displacement).

    Extracts landmarks of every clip (cached in the store), pairs each emotional clip with the
    same actor's neutral clip of the same sentence, aligns them by dynamic time warping on the
    mouth, trains, saves [bold]models/ldm.safetensors[/bold] and prints per-emotion validation error.
    With two or more actors it also trains once without each actor and prints how that model
    reproduces the left-out actor's emotions (strength and what each reads as, landmark level),
    so that no figure grades the model with the actors it trained on. With --render NAME it does
    the same on rendered frames of a fitted identity (every emotion rendered, re-tracked and
    graded by the actor left out), prints that table and stores it with the model.
    """
    import json

    from ..emotion import train_ldm
    from ..errors import EmogeneError
    from ..pipelines.emotion_loao import rendered_leave_one_actor_out

    store = get_store(ctx, write=True)
    dev = resolve_device(device)
    if render and audio is None:
        raise EmogeneError("--render needs --audio: the speech that drives the renders", path="--audio")
    if not render and (audio is not None or seconds is not None or hubert is not None):
        raise EmogeneError("--audio, --seconds and --hubert go with --render", path="--render")
    if render and leave_out:
        raise EmogeneError("--render leaves out every actor in turn: it cannot be combined with --leave-out", path="--leave-out")
    rendered: list[dict] = []
    with progress_bars() as update:
        if render:
            rendered = rendered_leave_one_actor_out(data_dir, render, store=store, audio=audio, seconds=seconds or 3.0,
                                                    epochs=epochs, seed=seed, device=dev, hubert=hubert, progress=update)
        report = train_ldm(data_dir, store=store, epochs=epochs, device=dev, seed=seed, leave_out=tuple(leave_out or ()),
                           extra={"rendered_leave_one_actor_out": json.dumps(rendered)} if rendered else None, progress=update)
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
    for name in dict.fromkeys(r["identity"] for r in rendered):
        console.print(rendered_table(name, [r for r in rendered if r["identity"] == name]))
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


def rendered_table(identity: str, records: list[dict]) -> Table:
    """Per emotion, for each left-out actor: the rendered strength on ``identity`` (1 = as the
    actor) and what it reads as; then median / lowest, how many read right and the emotions
    other than happy whose three largest changes hold a smile
    (:func:`~emogene_cli.pipelines.emotion_loao.rendered_leave_one_actor_out` records)."""
    from ..emotions import EMOTIONS

    table = Table(title=f"Leave one actor out on rendered frames of {identity}: every emotion rendered with the LDM trained "
                  "without the actor and graded by the actor's own blendshape change (1 = as the actor; read as: nearest "
                  "of the actor's emotions)", title_justify="left")
    table.add_column("emotion")
    for r in records:
        table.add_column(f"without {r['actor']}", justify="right")
    for e in EMOTIONS:
        cells = [r["per_emotion"].get(e, {}) for r in records]
        if any("strength" in c for c in cells):
            table.add_row(e, *(f"{c['strength']:.2f} ({c['recognised_as']})" if "strength" in c else "-" for c in cells))
    table.add_row("median / lowest", *(f"{r['summary']['median']:.2f} / {r['summary']['lowest']:.2f}" for r in records))
    table.add_row("read right", *(f"{r['summary']['read_right']} of {r['summary']['measured']}" for r in records))
    table.add_row("smile in top 3", *(", ".join(r["summary"]["smile_in_top3"]) or "none" for r in records))
    return table


def register(app: typer.Typer) -> None:
    app.command("train-ldm")(train_ldm_command)
