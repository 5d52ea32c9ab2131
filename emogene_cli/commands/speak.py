"""``emogene speak AUDIO --emotion EMOTION``: make a fitted identity say the audio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..emotions import EMOTIONS
from ._common import Device, console, get_store, progress_bars, resolve_device, summary_table


def speak_command(
    ctx: typer.Context,
    audio: Annotated[Path, typer.Argument(help="Speech audio (any format ffmpeg reads; any sample rate or channel count).")],
    emotion: Annotated[str, typer.Option("--emotion", "-e", help=f"One of: {', '.join(EMOTIONS)} (disgust, surprise accepted).")],
    identity: Annotated[Optional[str], typer.Option(help="Fitted identity (default: the only fitted one).")] = None,
    intensity: Annotated[float, typer.Option(min=0.0, max=3.0, help="Scale of the emotional deformation (0 = neutral, 1 = as learned).")] = 1.0,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output mp4 (default: <audio stem>_<emotion>.mp4 here).")] = None,
    preview: Annotated[bool, typer.Option("--preview", help="Also write <output>_preview.mp4: rendered frame | driving landmarks.")] = False,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature of the audio-to-motion VAE (GeneFace++: 0.2).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Random seed (latent sample, blinks, pose start).")] = 0,
    hubert: Annotated[Optional[str], typer.Option(help="HuBERT weights folder, when the identity was fitted with HuBERT features.")] = None,
    device: Annotated[Device, typer.Option(help="Where to run the models and render.")] = Device.auto,
) -> None:
    """Make a fitted identity say AUDIO with an emotion; writes an mp4 with the audio.

    Audio features -> audio-to-motion VAE -> neutral landmarks -> landmark deformation (emotion)
    -> LLE projection, lip refinement, One-Euro smoothing -> head poses, idle where silent ->
    NeRF rendering -> H.264 + AAC.
    """
    from ..speak import speak

    store = get_store(ctx)
    dev = resolve_device(device)
    with progress_bars() as update:
        r = speak(
            audio, store=store, emotion=emotion, identity=identity, intensity=intensity, output=output, preview=preview,
            device=dev, temperature=temperature, seed=seed, hubert=hubert, progress=update,
        )
    total = sum(r.seconds.values())
    rows = [
        ("identity", r.identity),
        ("emotion", f"{r.emotion} x {r.intensity:g}"),
        ("frames", f"{r.frames} at 25 fps ({r.duration:.2f} s)"),
        ("silent", f"{r.silent_fraction:.0%} of frames (idle head poses)"),
        ("audio features", r.feature_kind),
        ("time", ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items()) + f" (real-time factor {total / max(r.duration, 1e-6):.1f})"),
        ("wrote video", str(r.output)),
    ]
    if r.preview:
        rows.append(("wrote preview", str(r.preview)))
    console.print(summary_table("speak", rows))


def register(app: typer.Typer) -> None:
    app.command("speak")(speak_command)
