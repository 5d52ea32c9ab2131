"""``emogene train-a2m VIDEO_OR_DIR...``: the generic audio-to-motion model across people."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ._common import AUDIO_FEATURES_HELP, WHISPER_HELP, AudioFeatureKind, Device, console, get_store, progress_bars, resolve_device, use_whisper


class Preset(str, Enum):
    tiny = "tiny"
    quick = "quick"
    full = "full"


def _fmt(v, spec: str = ".2f") -> str:
    return "n/a" if v is None or v != v else format(v, spec)


def train_a2m_command(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(metavar="VIDEO_OR_DIR...", help="Talking-to-camera videos with speech, or folders of them (searched recursively; a sub-folder per person, or file names like <person>_clip<N>_....mp4).")],
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Passes over the training frames (default: the preset's, 80 for quick).")] = None,
    preset: Annotated[Preset, typer.Option(help="quick: CPU-sized VAE (hidden 64, one residual block); full: GeneFace++ sizes for a GPU; tiny: tests.")] = Preset.quick,
    val_people: Annotated[Optional[str], typer.Option("--val-people", help="People held out for validation: a number (chosen at random with --seed) or comma-separated names. Default 2 of 4 or more people.")] = None,
    augment: Annotated[int, typer.Option(min=0, help="Voice-changed copies of each training clip (pitch, vocal-tract length, speed, noise); 0 for none.")] = 8,
    audio_features: Annotated[AudioFeatureKind, typer.Option(help=AUDIO_FEATURES_HELP)] = AudioFeatureKind.auto,
    whisper: Annotated[Optional[str], typer.Option(help=WHISPER_HELP)] = None,
    hubert: Annotated[Optional[str], typer.Option(help="HuBERT weights folder or hub id.")] = None,
    baseline: Annotated[bool, typer.Option("--baseline/--no-baseline", help="Also train the person-only baseline and show it next to the generic model.")] = True,
    sync_align: Annotated[bool, typer.Option("--sync-align/--no-sync-align", help="Move each training clip's video against its audio by its offset from the other people's consensus (estimated, at most 4 frames) before training.")] = True,
    folds: Annotated[int, typer.Option(min=0, help="Also cross-validate over all the people: K more trainings, each holding out a K-th of the people, so that every person is scored by a model that never heard them; prints each person's r and the mean. 0: off.")] = 0,
    device: Annotated[Device, typer.Option(help="Where to train.")] = Device.auto,
    seed: Annotated[int, typer.Option(help="Random seed (validation people, augmentation, training).")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")] = False,
) -> None:
    """Train the generic audio-to-motion model across people; saves [bold]models/a2m.safetensors[/bold].

    Extracts landmarks and audio features of every clip (cached in the store: a second run
    skips them), holds out whole people for validation, trains on speaker-normalised audio with
    voice-changing augmentation, and prints each held-out person's mouth-opening correlation
    and M-LMD next to a person-only model's. fit-identity then fine-tunes it per person.
    """
    from ..motion import AugmentConfig, train_generic_a2m

    store = get_store(ctx, write=True)
    use_whisper(whisper)
    dev = resolve_device(device)
    val: int | list[str] | None = None
    if val_people is not None:
        val = int(val_people) if val_people.strip().isdigit() else [p.strip() for p in val_people.split(",") if p.strip()]
    with progress_bars() as update:
        r = train_generic_a2m(
            inputs, store=store, preset=preset.value, epochs=epochs, val_people=val, augment=AugmentConfig(variants=augment),
            audio_features=audio_features.value, hubert=hubert, baseline=baseline, sync_align=sync_align, folds=folds, device=dev, seed=seed, resume=resume,
            progress=update,
        )
    if r.feature_note:
        console.print(f"note: {r.feature_note}")
    for line in r.skipped:
        console.print(f"[yellow]skipped[/yellow] {line}")
    if r.val_people:
        base = f"person-only ({r.baseline_person})" if r.baseline_person else "person-only"
        table = Table(title="leave-identity-out validation: mouth opening (inner lips) predicted from unseen people's audio",
                      title_justify="left")
        for col, just in (("held-out person", "left"), ("clips", "right"), ("seconds", "right"), ("generic r", "right"),
                          ("best lag (r)", "right"), ("generic M-LMD", "right"), (f"{base} r", "right"), (f"{base} M-LMD", "right")):
            table.add_column(col, justify=just)
        for person in r.val_people:
            g, b = r.validation[person], r.baseline.get(person, {})
            table.add_row(person, str(g["clips"]), f"{g['frames'] / 25:.1f}", _fmt(g["mouth_open_corr"]),
                          f"{g['mouth_open_best_lag']:+d} ({_fmt(g['mouth_open_best_corr'])})", _fmt(g["m_lmd"]),
                          _fmt(b.get("mouth_open_corr")), _fmt(b.get("m_lmd")))
        console.print(table)
        console.print("r: Pearson correlation at lag 0 (frames at 25 fps; negative lag = prediction early); "
                      "M-LMD: mouth landmark distance in pixels of a 256-pixel face crop")
    else:
        console.print("[yellow]no validation[/yellow]: one person only, so nothing was held out")
    if r.cross_validation:
        _print_cross_validation(r.cross_validation)
    moved = {k: v for k, v in r.offsets.items() if v["offset"]}
    if r.offsets:
        console.print("audio-video offsets against the other people (frames at 25 fps, + = mouth early): "
                      + (", ".join(f"{k} {v['offset']:+d}" for k, v in sorted(moved.items())) or "none above 0.02 in r")
                      + f"; {len(r.offsets) - len(moved)} clips in sync")
    times = ", ".join(f"{k} {v:.0f} s" for k, v in r.seconds.items())
    console.print(
        f"{r.clips} clips, trained on {len(r.train_people)} people ({r.train_frames / 25:.0f} s, {r.epochs} epochs = {r.steps} steps), "
        f"held out {', '.join(r.val_people) or 'none'}; audio features {r.feature_kind}; "
        f"cached: {r.cached['landmarks']} landmarks, {r.cached['features']} features, {r.cached['augmented']} augmentations; time {times}"
    )
    console.print(f"wrote {r.path}")


def _print_cross_validation(cv: dict) -> None:
    table = Table(title=f"{cv['folds']}-fold leave-identity-out cross-validation: every person scored by a model that never heard them",
                  title_justify="left")
    for col in ("person", "seconds", "r", "best lag (r)", "resynced r (offset)", "M-LMD"):
        table.add_column(col, justify="left" if col == "person" else "right")
    for person, g in sorted(cv["people"].items()):
        resynced = f"{_fmt(g['mouth_open_corr_resynced'])} ({g['sync_offset']:+d})" if "sync_offset" in g else "-"
        table.add_row(person, f"{g['frames'] / 25:.1f}", _fmt(g["mouth_open_corr"]),
                      f"{g['mouth_open_best_lag']:+d} ({_fmt(g['mouth_open_best_corr'])})", resynced, _fmt(g["m_lmd"]))
    console.print(table)
    console.print(f"over {len(cv['people'])} people: mouth-opening r mean {_fmt(cv['mean_r'])}, median {_fmt(cv['median_r'])}, "
                  f"lowest {_fmt(cv['min_r'])}; best-lag r mean {_fmt(cv['mean_best_r'])}; M-LMD mean {_fmt(cv['mean_m_lmd'])}")
    if "mean_r_resynced" in cv:
        console.print(f"resynced recordings (offsets judged by a ridge regression on the other people, not by this model): "
                      f"r mean {_fmt(cv['mean_r_resynced'])}, median {_fmt(cv['median_r_resynced'])}; people under 0.35: "
                      f"{cv['below_035']} as recorded, {cv['below_035_resynced']} resynced")


def register(app: typer.Typer) -> None:
    app.command("train-a2m")(train_a2m_command)
