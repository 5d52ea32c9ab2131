"""The evaluate stage: numbers for a fitted identity, measured on rendered video.

Usage::

    result = evaluate_identity("obama_20s", store=Store())
    result.figures["reconstruction"]["psnr"], result.json_path, result.report_path

Five measurements, all on the identity's held-out frames (the last 10 %, never trained on)
or on renders made for the purpose (:mod:`emogene_cli.evaluation.metrics` defines each figure):

1. reconstruction: render the held-out frames with their ground-truth landmarks and poses;
   PSNR / SSIM over the frame and over the face region (the real frame's landmarks'
   bounding box, padded), LPIPS where the ``lpips`` package and its weights are available
   locally; M-LMD / F-LMD between landmarks re-detected with the same MediaPipe model on
   the rendered and on the real frames, in pixels at the renderer's resolution;
2. audio-driven: the held-out stretch driven by its own audio (features -> audio-to-motion
   -> post-processing, :func:`emogene_cli.pipelines.speak.plan_motion`) and rendered with the
   ground-truth head poses (so that only the face motion differs); M-LMD / F-LMD and the
   lip-sync figure (mouth opening re-detected on the render against the audio's loudness,
   best lag within ±10 frames, and the same for the real video);
   ``lipsync``: the audio-to-motion model's predicted mouth opening against the tracked one on
   at least 5 s it never trained on (:mod:`emogene_cli.motion.lipsync`); an identity that was only
   preprocessed gets these figures alone, from the generic model;
3. emotion (:mod:`.evaluate_emotion`): a few seconds rendered with each emotion (same audio,
   poses and seed); per emotion, the change of the MediaPipe blendshapes re-detected on the
   rendered frames against the neutral render, graded by real actors' change (the LDM's
   training actors, or actors it never saw with ``emotion_actors``);
4. idle: a clip with a silent stretch (the given audio, or the held-out audio followed by
   silence); head-pose velocity / acceleration during the silence, measured on the head
   poses that drive the renderer (EmoGene's idle table);
5. the software versions, preset and device, and how long each part took.

Writes ``identities/<name>/evaluation.json`` (strict JSON: ``null`` for undefined figures)
and ``evaluation.html`` (self-contained: frame grids and plots embedded as PNG).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import __version__, geometry
from ..audio import SAMPLES_PER_FRAME, frames_for, load_audio, loudness_envelope
from ..dataset import IdentityData, heldout_frames, load_identity
from ..emotion import load_ldm
from ..errors import EmogeneError, NotFoundError
from ..evaluation import (
    PAPER_REFERENCE, PLOT_TITLE, REFERENCE_PLOT_TITLE, EvaluationResult, frame_grid, json_ready, lipsync_plot,
    lipsync_report_html, lpips_distance, metrics, png_base64, reference_lipsync_plot, report_html, report_plots,
)
from ..face import DETECT_SIZE, TrackResult, redetect
from ..media import SAMPLE_RATE
from ..motion import identity_lipsync, sync_offset_of
from ..render import Speaker, compose_grid, evaluate_renderer, load_speaker, render_clip
from ..store import Store, atomic_write_bytes, load_artifact
from .evaluate_emotion import chosen_emotions, emotion_figures, emotion_reference
from .reference import reference_lipsync
from .speak import plan_motion

__all__ = ["evaluate_identity", "evaluate_lipsync_only"]

LMD_ALIGN = "mean"
LIPSYNC_MAX_LAG = 10  # frames (±0.4 s) searched for the audio-envelope correlation's peak

Progress = Callable[..., None]


# --------------------------------------------------------------------------------------
# helpers


def _report(progress: Progress | None, label: str, done: int, total: int) -> None:
    if progress is not None:
        progress(label, done, max(total, 1))


def _lm68(track: TrackResult) -> np.ndarray:
    return track.landmarks[:, geometry.LM68_FROM_LM478]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    out = {"python": platform.python_version(), "emogene": __version__, "torch": torch.__version__}
    for pkg in ("numpy", "mediapipe", "scikit-image", "librosa", "matplotlib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _device_info(device: str) -> dict[str, Any]:
    import os

    import torch

    info: dict[str, Any] = {"device": device, "platform": platform.platform(), "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


# --------------------------------------------------------------------------------------
# the five parts


def _reconstruction(speaker: Speaker, data: IdentityData, held: np.ndarray, real_track: TrackResult, device: str,
                    store: Store, progress: Progress | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    rep = evaluate_renderer(speaker.renderer, data, held, device)
    frames = rep["frames"]
    _report(progress, "reconstruction", 1, 2)
    real = data.images[held]
    boxes = [metrics.padded_box(data.landmarks[i], real.shape[1:]) for i in held]
    psnr_face = np.array([metrics.psnr(metrics.crop(r, b), metrics.crop(f, b)) for r, f, b in zip(real, frames, boxes)])
    ssim_face = np.array([metrics.ssim(metrics.crop(r, b), metrics.crop(f, b)) for r, f, b in zip(real, frames, boxes)])
    track = redetect(frames, store)
    _report(progress, "reconstruction", 2, 2)
    valid = real_track.found & track.found
    m_per = metrics.landmark_distance_per_frame(_lm68(track), _lm68(real_track), geometry.LM68_MOUTH, align=LMD_ALIGN)
    f_per = metrics.landmark_distance_per_frame(_lm68(track), _lm68(real_track), None, align=LMD_ALIGN)
    lp, lp_note = lpips_distance(real, frames, device)
    figures = {
        "frames": len(held),
        "psnr": rep["psnr"], "ssim": rep["ssim"],
        "psnr_face": float(np.mean(psnr_face)), "ssim_face": float(np.mean(ssim_face)),
        "lpips": lp, "lpips_note": lp_note,
        "m_lmd": float(m_per[valid].mean()) if valid.any() else float("nan"),
        "f_lmd": float(f_per[valid].mean()) if valid.any() else float("nan"),
        "face_found_real": real_track.found_fraction, "face_found_rendered": track.found_fraction,
    }
    per_frame = {"frames": frames, "landmarks68": _lm68(track), "psnr": rep["psnr_per_frame"], "ssim": rep["ssim_per_frame"],
                 "psnr_face": psnr_face, "ssim_face": ssim_face, "m_lmd": np.where(valid, m_per, np.nan),
                 "f_lmd": np.where(valid, f_per, np.nan)}
    return figures, per_frame


def _audio_driven(speaker: Speaker, data: IdentityData, held: np.ndarray, real_track: TrackResult, device: str,
                  store: Store, seed: int, hubert: str | None, progress: Progress | None,
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    offset = sync_offset_of(store, speaker.name)  # the recording's audio-video offset (motion.sync)
    start, stop = (int(held[0]) + offset) * SAMPLES_PER_FRAME, (int(held[-1]) + 1 + offset) * SAMPLES_PER_FRAME
    audio = np.zeros(stop - start, np.float32)
    piece = data.audio[max(start, 0):stop]
    audio[max(0, -start) : max(0, -start) + len(piece)] = piece
    n = frames_for(audio)
    poses = data.poses[held[:n]]  # the real held-out poses, held on the last one if the audio runs longer
    poses = np.concatenate([poses, np.repeat(poses[-1:], n - len(poses), 0)]) if len(poses) < n else poses
    plan = plan_motion(speaker, audio, emotion="neutral", seed=seed, hubert=hubert, store_dir=store.third_party_dir, poses=poses)
    T = min(len(plan.motion), len(held))
    frames = render_clip(speaker, plan.poses[:T], plan.motion[:T], device,
                         code_motion=None if plan.code_motion is None else plan.code_motion[:T],
                         progress=lambda d, n: _report(progress, "audio-driven", d, n))
    track = redetect(frames, store)
    real68, fake68 = _lm68(real_track)[:T], _lm68(track)
    valid = real_track.found[:T] & track.found
    m_per = metrics.landmark_distance_per_frame(fake68, real68, geometry.LM68_MOUTH, align=LMD_ALIGN)
    f_per = metrics.landmark_distance_per_frame(fake68, real68, None, align=LMD_ALIGN)
    mouth = geometry.mouth_opening(fake68)
    envelope = loudness_envelope(audio, T)
    corr, lag = metrics.lipsync_correlation(mouth, envelope, max_lag=LIPSYNC_MAX_LAG)
    real_corr, real_lag = metrics.lipsync_correlation(geometry.mouth_opening(real68), envelope, max_lag=LIPSYNC_MAX_LAG)
    figures = {
        "frames": T,
        "m_lmd": float(m_per[valid].mean()) if valid.any() else float("nan"),
        "f_lmd": float(f_per[valid].mean()) if valid.any() else float("nan"),
        "lipsync_corr": corr, "lipsync_lag": lag,
        "lipsync_corr_real_video": real_corr, "lipsync_lag_real_video": real_lag,
        "face_found_rendered": track.found_fraction,
        "sync_offset": offset, "mouth_gain": speaker.mouth_gain,
        # the renderer's mouth calibration at the held-out poses (render.pose_gain); None without one
        "mouth_factor_min": None if plan.mouth_factors is None else float(plan.mouth_factors[:T].min()),
        "mouth_factor_max": None if plan.mouth_factors is None else float(plan.mouth_factors[:T].max()),
        "note": "motion from the held-out audio (speak's pipeline), head poses from the real held-out frames"
                + (f"; the sound moved {offset:+d} frames, the recording's audio-video offset" if offset else "")
                + (f"; the mouth gain ({speaker.mouth_gain:.2f}) was measured by fit-identity on the audio-to-motion model's "
                   "held-out stretch, which includes these frames" if speaker.mouth_gain != 1.0 else ""),
    }
    per_frame = {"frames": frames, "landmarks68": fake68, "m_lmd": np.where(valid, m_per, np.nan),
                 "f_lmd": np.where(valid, f_per, np.nan), "mouth_open": mouth,
                 "mouth_open_real": geometry.mouth_opening(real68), "envelope": envelope}
    return figures, per_frame


def _idle(speaker: Speaker, audio: np.ndarray, source: str, store: Store, seed: int,
          hubert: str | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    plan = plan_motion(speaker, audio, emotion="neutral", seed=seed, hubert=hubert, store_dir=store.third_party_dir)
    silent = ~plan.active
    idle = metrics.pose_velocity_acceleration(plan.poses, silent, face_size=speaker.face_size)
    speech = metrics.pose_velocity_acceleration(plan.poses, plan.active, face_size=speaker.face_size)
    real = metrics.pose_velocity_acceleration(speaker.bank_poses, None, face_size=speaker.face_size)
    figures = {
        "audio": source, "frames": len(silent), "silent_frames": int(silent.sum()),
        "velocity_mean": idle["velocity_mean"], "velocity_std": idle["velocity_std"],
        "acceleration_mean": idle["acceleration_mean"], "acceleration_std": idle["acceleration_std"],
        "speech_velocity_mean": speech["velocity_mean"], "speech_acceleration_mean": speech["acceleration_mean"],
        "real_video_velocity_mean": real["velocity_mean"], "real_video_acceleration_mean": real["acceleration_mean"],
        "note": "per frame at 25 fps, on the driving head poses; pose = axis-angle (rad) + translation / face height + log scale",
    }
    if not silent.any():
        figures["note"] += "; the clip has no silent frame, so the idle figures are undefined"
    vec = geometry.pose_to_vector(plan.poses)
    vec[:, 3:6] /= speaker.face_size
    speed = np.concatenate([[np.nan], np.linalg.norm(np.diff(vec, axis=0), axis=1)])
    return figures, {"speed": speed, "silent": silent}


# --------------------------------------------------------------------------------------
# the stage


def evaluate_identity(
    name: str,
    *,
    store: Store,
    audio: str | Path | None = None,
    device: str = "cpu",
    emotions: Sequence[str] | None = None,
    seconds_per_emotion: float = 3.0,
    idle_silence: float = 3.0,
    seed: int = 0,
    hubert: str | None = None,
    reference: str | Path | None = None,
    reference_seconds: float = 8.0,
    emotion_actors: Sequence[str | Path] | None = None,
    json_path: str | Path | None = None,
    report_path: str | Path | None = None,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Measure a fitted identity (see the module docstring) and write the JSON and HTML report.

    Args:
        name: a fitted identity.
        audio: speech with a silent stretch for the idle figures, also driving the emotion
            renders (default: the held-out audio followed by ``idle_silence`` seconds of
            silence, and the identity's own recording for the emotions).
        emotions: emotions to render (default all; ``neutral`` is always added as the reference).
        seconds_per_emotion: length of each emotion render.
        reference: a real talking video of another person: the identity is driven by its sound
            and the rendered mouth compared with that person's
            (:func:`emogene_cli.pipelines.reference.reference_lipsync`), for neutral and the
            ``emotions`` asked for (neutral and happy when none are), over its first
            ``reference_seconds``.
        emotion_actors: folders in MEAD's layout whose actors the LDM did not train on: the
            emotion strength and recognition are measured against their real blendshape change
            (:func:`.evaluate_emotion.emotion_reference`); default the LDM's own training actors.
        json_path, report_path: outputs (default ``identities/<name>/evaluation.json`` / ``.html``).
        progress: ``progress(label, done, total)``.

    Raises:
        NotFoundError: unknown or unfitted identity, missing audio file; with ``emotion_actors``,
            a missing folder or no LDM.
        InputError: unreadable audio; an ``emotion_actors`` folder without clips in MEAD's
            layout, with only the LDM's training actors, or with a clip where no face is found.
        EmogeneError: an unknown emotion, a non-positive duration, or ``emotion_actors`` for an
            identity only preprocessed.
    """
    if seconds_per_emotion <= 0 or idle_silence < 0:
        raise EmogeneError("--seconds-per-emotion must be positive and the idle silence non-negative")
    chosen = chosen_emotions(emotions)
    if name and store.dataset_path(name).is_file() and not store.renderer_path(name).is_file():
        if emotion_actors:
            raise EmogeneError(f"{name} is only preprocessed: --emotion-actors needs a fitted identity (run fit-identity)",
                               path="--emotion-actors")
        # preprocessed only: the audio-to-motion figures alone
        return evaluate_lipsync_only(name, store=store, device=device, json_path=json_path, report_path=report_path)
    name = store.resolve_identity(name)
    user_audio = load_audio(audio) if audio is not None else None
    actors_reference = None
    if emotion_actors:  # fail before the long renders: a folder missing, empty or of training actors only
        actors_reference = emotion_reference(store, load_ldm(store, device), emotion_actors)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    speaker = load_speaker(store, name, device)
    size = speaker.renderer.config.resolution
    data = load_identity(store, name, size=size)
    held = heldout_frames(data.frames)
    preset = load_artifact(store.renderer_path(name), what="renderer").params.get("preset", "unknown")
    real_track = redetect(data.images[held], store)
    seconds["load"] = time.perf_counter() - t0

    figures: dict[str, Any] = {
        "identity": name, "preset": preset, "resolution": size, "frames": data.frames, "heldout_frames": len(held),
        "feature_kind": data.feature_kind, "device": _device_info(device), "versions": _versions(),
        "settings": {"lmd_alignment": LMD_ALIGN, "lmd_units": f"pixels at {size}x{size}", "detect_size": DETECT_SIZE,
                     "lipsync_max_lag_frames": LIPSYNC_MAX_LAG, "seed": seed, "face_region_pad": 0.15},
        "reference": PAPER_REFERENCE,
    }
    parts: dict[str, dict[str, Any]] = {}

    t0 = time.perf_counter()
    figures["reconstruction"], parts["reconstruction"] = _reconstruction(speaker, data, held, real_track, device, store, progress)
    seconds["reconstruction"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    figures["audio_driven"], parts["audio_driven"] = _audio_driven(speaker, data, held, real_track, device, store, seed, hubert, progress)
    seconds["audio_driven"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    figures["lipsync"], parts["lipsync"] = identity_lipsync(store, name, data, device)
    seconds["lipsync"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    emo_audio = user_audio if user_audio is not None else data.audio
    emo_audio = emo_audio[: int(round(seconds_per_emotion * SAMPLE_RATE))]
    figures["emotion"], parts["emotion"] = emotion_figures(speaker, emo_audio, chosen, device, store, seed, hubert, progress,
                                                           reference=actors_reference)
    if user_audio is not None:
        figures["emotion"]["audio"] = str(audio)
    seconds["emotion"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if user_audio is not None:
        idle_audio, source = user_audio, str(audio)
    else:
        start, stop = int(held[0]) * SAMPLES_PER_FRAME, (int(held[-1]) + 1) * SAMPLES_PER_FRAME
        idle_audio = np.concatenate([data.audio[start:stop], np.zeros(int(idle_silence * SAMPLE_RATE), np.float32)])
        source = f"held-out audio + {idle_silence:g} s of silence"
    figures["idle"], parts["idle"] = _idle(speaker, idle_audio, source, store, seed, hubert)
    seconds["idle"] = time.perf_counter() - t0

    if reference is not None:
        t0 = time.perf_counter()
        ref_emotions = chosen if emotions else ["neutral", "happy"]
        try:
            ref_ldm = load_ldm(store, device) if len(ref_emotions) > 1 else None
        except NotFoundError:
            ref_ldm = None
        figures["reference_lipsync"], parts["reference_lipsync"] = reference_lipsync(
            speaker, reference, ref_emotions, store=store, ldm=ref_ldm, seconds=reference_seconds, device=device,
            seed=seed, hubert=hubert, progress=progress,
        )
        seconds["reference_lipsync"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    real = data.images[held]
    grids = [
        ("Reconstruction, held-out frames: real | rendered | landmarks (real green, rendered red)",
         png_base64(frame_grid(real, parts["reconstruction"]["frames"], _lm68(real_track), parts["reconstruction"]["landmarks68"]))),
        ("Audio-driven, held-out frames: real | rendered from audio | landmarks (real green, rendered red)",
         png_base64(frame_grid(real, parts["audio_driven"]["frames"], _lm68(real_track), parts["audio_driven"]["landmarks68"]))),
    ]
    shots = parts["emotion"].get("shots", {})
    if shots:
        grid = compose_grid(list(shots.values()), list(shots))
        grids.append(("Emotions (middle frame), full resolution", png_base64(grid)))
    plots = report_plots(parts, figures) + [(PLOT_TITLE, lipsync_plot(parts["lipsync"], figures["lipsync"]))]
    if "reference_lipsync" in parts:
        plots.append((REFERENCE_PLOT_TITLE, reference_lipsync_plot(parts["reference_lipsync"], figures["reference_lipsync"])))
    page = report_html(figures, grids, plots)
    seconds["report"] = time.perf_counter() - t0
    figures["seconds"] = seconds

    json_out, report_out = _write(store, name, figures, page, json_path, report_path)
    return EvaluationResult(name=name, figures=figures, json_path=json_out, report_path=report_out, seconds=seconds)


def evaluate_lipsync_only(name: str, *, store: Store, device: str = "cpu", json_path: str | Path | None = None,
                          report_path: str | Path | None = None) -> EvaluationResult:
    """Evaluate a preprocessed identity without a renderer: only the ``lipsync`` figures.

    Writes ``identities/<name>/evaluation.json`` (``{"identity", "lipsync", ...}``) and an HTML
    report with the mouth-opening plot.

    Returns:
        :class:`~emogene_cli.evaluation.EvaluationResult` with the ``lipsync`` figures alone.

    Raises:
        NotFoundError: not preprocessed, or no audio-to-motion model at all.
    """
    t0 = time.perf_counter()
    data = load_identity(store, name, with_images=False)
    seconds = {"load": time.perf_counter() - t0}
    t0 = time.perf_counter()
    lip, series = identity_lipsync(store, name, data, device)
    seconds["lipsync"] = time.perf_counter() - t0
    figures = {"identity": name, "fitted": False, "frames": data.frames, "feature_kind": data.feature_kind,
               "lipsync": lip, "seconds": seconds,
               "note": "no renderer: only the audio-to-motion figures (run `emogene fit-identity` for the rendering ones)"}
    page = lipsync_report_html(name, figures["note"], lip, series)
    json_out, report_out = _write(store, name, figures, page, json_path, report_path)
    return EvaluationResult(name=name, figures=figures, json_path=json_out, report_path=report_out, seconds=seconds)


def _write(store: Store, name: str, figures: dict[str, Any], page: str, json_path: str | Path | None,
           report_path: str | Path | None) -> tuple[Path, Path]:
    """Write the figures as strict JSON and the HTML page, each atomically (default: in the identity's folder)."""
    json_out = Path(json_path) if json_path else store.identity_dir(name) / "evaluation.json"
    report_out = Path(report_path) if report_path else store.identity_dir(name) / "evaluation.html"
    atomic_write_bytes(json_out, json.dumps(json_ready(figures), indent=1, allow_nan=False).encode())
    atomic_write_bytes(report_out, page.encode())
    return json_out, report_out
