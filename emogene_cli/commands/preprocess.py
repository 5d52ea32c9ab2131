"""``emogene preprocess VIDEO``: turn a talking video into an identity dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import AUDIO_FEATURES_HELP, WHISPER_HELP, AudioFeatureKind, Device, console, get_store, paths_rows, progress_bars, resolve_device, summary_table, use_whisper


def preprocess_command(
    ctx: typer.Context,
    video: Annotated[Path, typer.Argument(help="A video of one person talking to the camera, with sound (a few minutes is best).")],
    name: Annotated[Optional[str], typer.Option(help="Identity name, [A-Za-z0-9_-]{1,64} (default: the file's stem).")] = None,
    size: Annotated[int, typer.Option(min=64, max=2048, help="Side of the square face crop, pixels.")] = 512,
    audio_features: Annotated[AudioFeatureKind, typer.Option(help=AUDIO_FEATURES_HELP)] = AudioFeatureKind.auto,
    whisper: Annotated[Optional[str], typer.Option(help=WHISPER_HELP)] = None,
    hubert: Annotated[Optional[str], typer.Option(help="HuBERT weights: a local folder or hub id (default: $EMOGENE_HUBERT, the store, the HF cache).")] = None,
    model_dir: Annotated[Optional[str], typer.Option(help="Folder with face_landmarker.task and selfie_segmentation.tflite (default: $EMOGENE_MODEL_DIR, the store, or download).")] = None,
    device: Annotated[Device, typer.Option(help="Device for HuBERT.")] = Device.auto,
) -> None:
    """Turn a talking video into an identity dataset (crop, landmarks, poses, masks, background, audio features).

    Finds the face and picks one square crop for the clip, tracks 478 MediaPipe landmarks and the
    head pose per frame, splits the person into head and torso, builds the background plate and
    extracts HuBERT or log-mel + f0 audio features. The video needs a speech audio track.
    """
    from ..pipelines.preprocess import preprocess_video

    store = get_store(ctx, write=True)
    use_whisper(whisper)
    dev = resolve_device(device)
    with progress_bars() as update:
        result = preprocess_video(
            video, store=store, name=name, size=size, audio_features=audio_features.value, hubert=hubert,
            model_dir=model_dir, device=dev, progress=update,
        )
    x, y, w, h = result.crop_box
    rows = [
        ("identity", result.name),
        ("frames", f"{result.frames} at 25 fps"),
        ("seconds", f"{result.seconds:.1f}"),
        ("face found", f"{result.face_found_fraction:.1%} of frames"),
        *([("faces in view", f"{result.faces_in_view}; the largest is used (crop the video to choose another)")]
          if result.faces_in_view > 1 else []),
        ("crop box", f"x={x} y={y} side={w} px (source) -> {result.size}x{result.size}"),
        ("audio features", result.feature_kind + (f" ({result.feature_note})" if result.feature_note else "")),
    ] + paths_rows(result.paths)
    console.print(summary_table("preprocess", rows))
    console.print(f"next: emogene fit-identity {result.name}")


def register(app: typer.Typer) -> None:
    app.command("preprocess")(preprocess_command)
