"""``emogene speak AUDIO --emotion EMOTION | --emotion-track FILE``: make a fitted identity say the audio."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from ..emotions import EMOTIONS
from ._common import WHISPER_HELP, Device, console, data_table, get_store, print_warnings, progress_bars, resolve_device, summary_table, use_whisper

if TYPE_CHECKING:  # the emotion package loads torch: only when a command runs, not for --help
    from ..emotion import TrackRow


def speak_command(
    ctx: typer.Context,
    audio: Annotated[Path, typer.Argument(help="Speech audio (any format ffmpeg reads; any sample rate or channel count).")],
    emotion: Annotated[Optional[str], typer.Option(
        "--emotion", "-e",
        help=f"One of: {', '.join(EMOTIONS)} (disgust, surprise accepted); a blend such as happy:0.7,surprised:0.3 "
             "(weights >= 0, normalised); or all: one video with the eight emotions in a labelled 4x2 grid.",
    )] = None,
    emotion_track: Annotated[Optional[Path], typer.Option(
        "--emotion-track",
        help="Emotion over time instead of --emotion: CSV with header start,end,emotion,intensity (seconds; emotion "
             "a name or a quoted blend) or the same as JSON records. Uncovered time is neutral.",
    )] = None,
    transition: Annotated[float, typer.Option(min=0.0, max=10.0, help="Seconds over which a track's emotion changes ease in and out (0 = hard cuts).")] = 0.3,
    identity: Annotated[Optional[str], typer.Option(help="Fitted identity (default: the only fitted one).")] = None,
    intensity: Annotated[float, typer.Option(min=0.0, max=3.0, help="Scale of the emotional deformation (0 = neutral, 1 = the learned motion times the identity's emotion gain, which brings it toward the MEAD actors' strength on this face, at most 1.3x); multiplies a track's intensities.")] = 1.0,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output mp4 (default: <audio stem>_<emotion, track name or all>.mp4 here).")] = None,
    preview: Annotated[bool, typer.Option("--preview", help="Also write <output>_preview.mp4: rendered frame | driving landmarks.")] = False,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature of the audio-to-motion VAE (GeneFace++: 0.2).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Random seed (latent sample, blinks, pose start).")] = 0,
    hubert: Annotated[Optional[str], typer.Option(help="HuBERT weights folder, when the identity was fitted with HuBERT features.")] = None,
    whisper: Annotated[Optional[str], typer.Option(help=WHISPER_HELP)] = None,
    device: Annotated[Device, typer.Option(help="Where to run the models and render.")] = Device.auto,
    landmarks_only: Annotated[bool, typer.Option("--landmarks-only", help="Write only the driving landmarks (no renderer needed): a preprocessed identity without its own model is driven by the generic audio-to-motion model (emogene train-a2m).")] = False,
) -> None:
    """Make a fitted identity say AUDIO with an emotion; writes an mp4 with the audio.

    Audio features -> audio-to-motion VAE -> neutral landmarks -> landmark deformation (emotion,
    a blend or a track over time) -> LLE projection, lip refinement, One-Euro smoothing -> head
    poses, idle where silent -> NeRF rendering -> H.264 + AAC.
    """
    from ..pipelines.speak import speak

    store = get_store(ctx)
    use_whisper(whisper)
    dev = resolve_device(device)

    def show_track(rows: list[TrackRow], warnings: list[str], seconds: float) -> None:
        print_warnings(warnings)
        console.print(track_table(rows, seconds))

    with progress_bars() as update:
        r = speak(
            audio, store=store, emotion=emotion, track=emotion_track, transition=transition, identity=identity,
            intensity=intensity, output=output, preview=preview, device=dev, temperature=temperature, seed=seed,
            hubert=hubert, landmarks_only=landmarks_only, progress=update, on_track=show_track,
            on_calibrate=lambda: console.print("note: measuring how this fit draws the mouth at each head pitch and each emotion's strength "
                                               "(once per identity, LDM and fit; up to a minute)"),
        )
    total = sum(r.seconds.values())
    rows = [
        ("identity", r.identity),
        ("emotion", f"{r.emotion} x {r.intensity:g}" + (f" ({len(r.track)} rows, transitions {transition:g} s)" if r.track is not None else "")),
        ("frames", f"{r.frames} at 25 fps ({r.duration:.2f} s)"),
        ("silent", f"{r.silent_fraction:.0%} of frames (idle head poses)"),
        ("audio features", r.feature_kind),
        *([("emotion model", r.ldm)] if r.ldm else []),
        *([("mouth vs head pitch", f"the renderer's mouth opened x{r.mouth_factors[0]:.2f}-{r.mouth_factors[1]:.2f} over the clip's "
                                   "head poses (the fit's calibration)")] if r.mouth_factors else []),
        ("time", ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items()) + f" (real-time factor {total / max(r.duration, 1e-6):.1f})"),
        ("wrote video", str(r.output)),
    ]
    if r.preview:
        rows.append(("wrote preview", str(r.preview)))
    console.print(summary_table("speak", rows))
    if landmarks_only:
        console.print(f"note: {r.feature_note}")


def track_table(rows: list[TrackRow], seconds: float) -> Table:
    """The emotion track as used over ``seconds`` of audio: one line per row, uncovered spans as neutral."""
    from ..emotion import with_gaps

    cells = [
        (f"{r.start:.2f}", f"{r.end:.2f}", r.label if r.source != "gap" else "neutral (uncovered)",
         f"{r.intensity:g}" if r.source != "gap" else "-", r.source)
        for r in with_gaps(rows, seconds)
    ]
    return data_table("emotion track", ["start s", "end s", "emotion", "intensity", "from"], cells)


def register(app: typer.Typer) -> None:
    app.command("speak")(speak_command)
