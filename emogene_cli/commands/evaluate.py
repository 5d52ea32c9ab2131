"""``emogene evaluate NAME``: reconstruction, lip-sync, emotion and idle-pose figures of a fitted identity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ..emotions import EMOTIONS
from ._common import WHISPER_HELP, Device, console, get_store, paths_rows, progress_bars, resolve_device, summary_table, use_whisper


def _value(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def figures_table(figures: dict[str, Any], reference: dict[str, float]) -> Table:
    """Every figure of an evaluation, next to the EmoGene paper's number where it reports one."""
    table = Table(title=f"evaluate {figures['identity']}", title_justify="left")
    table.add_column("part", style="bold")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("EmoGene paper", justify="right", style="dim")
    for part in ("reconstruction", "audio_driven", "lipsync", "idle"):
        for key, value in figures.get(part, {}).items():
            if key in ("note", "method", "m_lmd_units") or isinstance(value, dict):
                continue
            ref = reference.get(f"idle_{key}" if part == "idle" else key)
            table.add_row(part, key, _value(value), "" if ref is None else f"{ref:g}")
    emo = figures.get("emotion", {})
    if "skipped" in emo:
        table.add_row("emotion", "skipped", emo["skipped"], "")
    for emotion, info in emo.get("per_emotion", {}).items():
        if emotion == "neutral":
            continue
        deltas = ", ".join(f"{k} {v:+.3f}" for k, v in info.get("deltas", {}).items())
        if "strength" in info:
            gain = f", gain {info['emotion_gain']:.2f}" if "emotion_gain" in info else ""
            table.add_row("emotion", f"{emotion} strength (recognised as {info.get('recognised_as')}{gain})", _value(info["strength"]), "")
        table.add_row("emotion", f"{emotion} score", _value(info.get("score")), "")
        table.add_row("", f"  {deltas}", f"face {info['face_found']:.0%}", "")
    if "strength_median" in emo:
        table.add_row("emotion", "strength median / lowest", f"{_value(emo['strength_median'])} / {_value(emo['strength_min'])}", "")
        table.add_row("emotion", "recognised", f"{emo['recognised']} of {emo['measured']}", "")
    if "lipsync_corr_neutral" in emo:
        table.add_row("emotion", "lipsync_corr_neutral", _value(emo["lipsync_corr_neutral"]), "")
        table.add_row("emotion", "lipsync_lag_neutral", _value(emo["lipsync_lag_neutral"]), "")
    ref = figures.get("reference_lipsync", {})
    for emotion, info in ref.get("per_emotion", {}).items():
        for key, label in (("rendered_vs_speaker", "rendered vs speaker"), ("rendered_vs_driving", "rendered vs driving"),
                           ("driving_vs_speaker", "driving vs speaker")):
            d = info[key]
            table.add_row("reference", f"{emotion}: {label} r lag 0 / best (lag) / std ratio",
                          f"{_value(d['r_lag0'])} / {_value(d['r_best'])} ({d['best_lag']:+d}) / {_value(d['std_ratio'])}", "")
        table.add_row("reference", f"{emotion}: in the image, rendered vs speaker / vs driving / driving vs speaker r lag 0",
                      " / ".join(_value(info["image_plane"][k]["r_lag0"])
                                 for k in ("rendered_vs_speaker", "rendered_vs_driving", "driving_vs_speaker")), "")
    off = ref.get("reference_offset")
    if off:
        table.add_row("reference", "the recording's audio-video offset, frames (+: sound late) (driving vs speaker r at it / at lag 0)",
                      f"{off['frames']:+d} ({_value(off['r_at_offset'])} / {_value(off['r_lag0'])})", "")
    return table


def evaluate_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A fitted identity (or one only preprocessed: then the lip-sync figures of the generic audio-to-motion model alone).")],
    audio: Annotated[Optional[Path], typer.Option(help="Speech with a silent stretch for the idle figures (also drives the emotion renders). Default: the held-out audio followed by silence.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="JSON output (default: identities/NAME/evaluation.json in the store).")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="HTML report (default: identities/NAME/evaluation.html in the store).")] = None,
    emotions: Annotated[Optional[str], typer.Option(help=f"Comma-separated emotions to render (default all: {', '.join(EMOTIONS)}).")] = None,
    seconds_per_emotion: Annotated[float, typer.Option(min=0.2, help="Seconds rendered per emotion.")] = 3.0,
    seed: Annotated[int, typer.Option(help="Random seed (latent samples, blinks, poses).")] = 0,
    hubert: Annotated[Optional[str], typer.Option(help="HuBERT weights folder, when the identity was fitted with HuBERT features.")] = None,
    whisper: Annotated[Optional[str], typer.Option(help=WHISPER_HELP)] = None,
    reference: Annotated[Optional[Path], typer.Option(help="A real talking video of another person: drive the identity with its sound and compare the rendered mouth with that person's real mouth and with the driving landmarks (neutral and --emotions, default neutral and happy).")] = None,
    reference_seconds: Annotated[float, typer.Option(min=1.0, help="Seconds of --reference used (from its start).")] = 8.0,
    emotion_actors: Annotated[Optional[list[Path]], typer.Option("--emotion-actors", help="A folder in MEAD's layout (<actor>/video/front/<emotion>/level_<n>/<sentence>.mp4) of actors the LDM did not train on: emotion strength and recognition are measured against their real change instead of the training actors'. Actors the LDM trained on are skipped. Repeat for several folders.")] = None,
    device: Annotated[Device, typer.Option(help="Where to run the models and render.")] = Device.auto,
) -> None:
    """Measure a fitted identity (reconstruction, lip sync, emotion, idle poses); writes JSON and an HTML report.

    Renders the held-out frames (ground-truth and audio-driven motion), a few seconds per
    emotion and a clip with silence; reports PSNR, SSIM, M-LMD/F-LMD, the lip-sync
    correlation, the emotion strength per emotion (rendered blendshape change projected on the
    real MEAD actors' change; 1.0 = a real actor) and idle head-pose velocity/acceleration.
    The emotion's yardstick is the LDM's training actors unless --emotion-actors names actors
    it never saw (see `train-ldm --leave-out`).
    """
    from ..evaluation import PAPER_REFERENCE
    from ..pipelines.evaluate import evaluate_identity

    store = get_store(ctx)
    use_whisper(whisper)
    dev = resolve_device(device)
    chosen = [e.strip() for e in emotions.split(",") if e.strip()] if emotions else None
    with progress_bars(transient=True) as update:
        r = evaluate_identity(
            name, store=store, audio=audio, device=dev, emotions=chosen, seconds_per_emotion=seconds_per_emotion,
            seed=seed, hubert=hubert, reference=reference, reference_seconds=reference_seconds,
            emotion_actors=emotion_actors or None, json_path=json_out,
            report_path=report, progress=update,
        )
    console.print(figures_table(r.figures, PAPER_REFERENCE))
    f = r.figures
    if "lipsync" in f:
        console.print(f"lipsync: {f['lipsync']['method']}; M-LMD in {f['lipsync']['m_lmd_units']}")
    emo = f.get("emotion", {})
    if emo.get("reference_note"):
        table_missing = not emotion_actors and not emo.get("leave_one_actor_out")
        console.print(f"emotion: {emo['reference_note']}" + (" (this LDM has no such table: retrain it with train-ldm)" if table_missing else ""))
    offset_note = f.get("reference_lipsync", {}).get("reference_offset", {}).get("note")
    if offset_note:
        console.print(f"reference: {offset_note}")
    if not f.get("fitted", True):
        console.print(f"note: {f['note']}")
        console.print(summary_table("evaluate", [("time", ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items())),
                                                 *paths_rows({"figures": r.json_path, "report": r.report_path})]))
        return
    rows = [
        ("identity", f"{f['identity']} (preset {f['preset']}, {f['resolution']}x{f['resolution']}, {f['heldout_frames']} held-out frames)"),
        ("device", f["device"]["device"]),
        ("time", ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items())),
        *paths_rows({"figures": r.json_path, "report": r.report_path}),
    ]
    console.print(summary_table("evaluate", rows))


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
