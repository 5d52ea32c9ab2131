"""``emogene fit-identity NAME``: train the person's renderer and audio-to-motion model."""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated

import typer

from ._common import Device, console, get_store, paths_rows, progress_bars, resolve_device, summary_table


class Preset(str, Enum):
    tiny = "tiny"
    quick = "quick"
    full = "full"


class A2MMode(str, Enum):
    auto = "auto"
    finetune = "finetune"
    scratch = "scratch"


def fit_identity_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A preprocessed identity (see `emogene list`).")],
    preset: Annotated[Preset, typer.Option(help="quick: 256x256, about 7-10 min on a 2-core laptop CPU for a 20 s clip; full: 512x512 for a GPU and a 3-5 min video; tiny: smoke tests.")] = Preset.quick,
    device: Annotated[Device, typer.Option(help="Where to train.")] = Device.auto,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    a2m: Annotated[A2MMode, typer.Option("--a2m", help="Audio-to-motion: finetune the generic model (emogene train-a2m), train from scratch on the person alone, or auto (finetune when the store has a generic model).")] = A2MMode.auto,
    a2m_only: Annotated[bool, typer.Option("--a2m-only", help="Train only the audio-to-motion model; keep the renderer (minutes instead of ~20).")] = False,
) -> None:
    """Train the person's renderer (head NeRF + torso) and audio-to-motion VAE.

    The renderer trains on the first 90% of the identity's frames and reports PSNR/SSIM on the
    held-out last 10%; the audio-to-motion model (fine-tuned from the generic model when the
    store has one) holds out the last max(10%, 5 s) and reports its lip sync there.
    Ctrl-C saves a checkpoint at the current step; --resume continues.
    """
    from ..pipelines.fit import fit_identity

    store = get_store(ctx, write=True)
    dev = resolve_device(device)
    with progress_bars() as update:
        r = fit_identity(name, store=store, preset=preset.value, device=dev, resume=resume, seed=seed, a2m=a2m.value,
                         a2m_only=a2m_only, progress=update)
    if r.a2m_note:
        console.print(f"note: {r.a2m_note}")
    e = r.a2m_errors
    rows = [("identity", r.name), ("preset", f"{r.preset} ({r.resolution}x{r.resolution}, device {dev})")]
    if not a2m_only:
        rows += [
            ("frames", f"{r.frames} ({r.train_frames} trained, {r.heldout_frames} held out)"),
            ("renderer steps", _steps_text(r.renderer_steps, r.renderer_start_step)),
            ("held-out PSNR", f"{r.psnr:.2f} dB"),
            ("held-out SSIM", f"{r.ssim:.4f}"),
        ]
    rows += [
        ("audio-to-motion", f"{r.a2m_mode}; {r.a2m_train_frames} frames trained, last {r.a2m_heldout_frames} held out"),
        ("held-out landmarks", f"RMSE {e['rmse']:.4f}, mouth {e['mouth_rmse']:.4f} (inter-ocular units); mouth-opening corr {e['mouth_open_corr']:.2f}"),
    ]
    if "mouth_gain" in e:
        rows.append(("mouth gain", _mouth_gain_text(e["mouth_gain"])))
    if r.pose_mouth_gain is not None:
        rows.append(("mouth vs head pitch", _pose_gain_text(r.pose_mouth_gain)))
    rows.append(("audio-video offset", _sync_text(r.a2m_sync)))
    if r.voice_check:
        v = r.voice_check
        rows.append(("other voices", f"mouth-opening corr {v['person_corr']:.2f} (generic model {v['generic_corr']:.2f}) on train-a2m's held-out people: {v['people']}"))
    rows += [
        ("audio features", r.feature_kind),
        *([("emotion model", f"gains measured for {r.ldm}")] if r.ldm and not a2m_only else []),
        ("time", ", ".join(f"{k} {v:.0f} s" for k, v in r.seconds.items())),
    ] + paths_rows(r.paths)
    console.print(summary_table("fit-identity", rows))
    console.print(f"next: emogene speak AUDIO --identity {r.name} --emotion happy")


def _mouth_gain_text(gain: float) -> str:
    from ..motion import MOUTH_GAIN_RANGE

    lo, hi = MOUTH_GAIN_RANGE
    what = (f"{gain:.2f} (the limit: the measured ratio was {'below' if gain <= lo else 'above'} it)" if gain in (lo, hi)
            else f"{gain:.2f}")
    return (f"{what}: the real mouth's opening spread over the model's post-processed output on the held-out audio; "
            "speak scales the lips' and jaw's motion by it (about the identity's mean posture when it widens)")


def _pose_gain_text(gain) -> str:
    """The renderer's calibration against the head pitch (:class:`~emogene_cli.render.PoseMouthGain`) in words."""
    fit = f"slope {gain.slope:+.4f} per degree (standard error {gain.slope_se:.4f})"
    if not gain.tied:
        return f"no tie: {fit}; speak drives the renderer's mouth as planned"
    lo, hi = gain.end_factors()
    return (f"{fit}; speak opens the renderer's mouth by {lo:.2f} at {gain.pitch[0]:.1f}° to {hi:.2f} at "
            f"{gain.pitch[-1]:.1f}° of pitch, so it opens as planned at every pose")


def _sync_text(sync) -> str:
    if sync is None or not math.isfinite(sync.corr0):
        return "not measured (no generic audio-to-motion model of these audio features)"
    if sync.offset == 0:
        return f"none found (generic model's mouth-opening corr {sync.corr0:.2f} at lag 0)"
    when = "late" if sync.offset > 0 else "early"
    return (f"{sync.offset:+d} frames: the sound is {abs(sync.milliseconds)} ms {when} against the picture; trained on realigned "
            f"pairs (generic model's mouth-opening corr {sync.corr0:.2f} -> {sync.corr:.2f})")


def _steps_text(total: int, start: int) -> str:
    if start == 0:
        return str(total)
    if start >= total:
        return f"{total} (all from the checkpoint)"
    return f"{total} (resumed at step {start})"


def register(app: typer.Typer) -> None:
    app.command("fit-identity")(fit_identity_command)
