"""The fit-identity stage: the person's renderer (head NeRF + torso) and audio-to-motion VAE.

The renderer trains on the first 90% of the identity's frames; the last 10% are never
trained on, and held-out PSNR/SSIM (ground-truth poses and landmarks) are reported on them.
The audio-to-motion model is fine-tuned from the generic model (``train-a2m``) when the store
has one, else trained from scratch (``a2m="auto"``), on all but the clip's last
``max(10 %, 5 s)``, where its landmark errors and mouth-opening correlation are reported
(:func:`emogene_cli.motion.fit_person_a2m`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..dataset import heldout_frames, load_identity, split_frames
from ..emotion import attach_calibration, emotion_gain_path, load_ldm, tracker_gain_path
from ..errors import EmogeneError, InputError
from ..models.renderer import RendererConfig
from ..motion import A2MTraining, SyncOffset, fit_person_a2m, load_a2m, pool_scores, resolve_a2m_mode, save_a2m, score_clip, validation_clips
from ..render import PoseMouthGain, evaluate_renderer, identity_pose_mouth_gain, load_speaker, pose_gain_path, train_renderer
from ..store import Store, atomic_write_bytes, load_artifact

PRESETS = ("tiny", "quick", "full")
MIN_FRAMES = 50  # 2 s at 25 fps


@dataclass
class FitPreset:
    """A named bundle of renderer and audio-to-motion settings."""

    name: str
    renderer: RendererConfig
    a2m: A2MTraining

    @classmethod
    def get(cls, name: str) -> "FitPreset":
        """``tiny`` (tests, seconds), ``quick`` (CPU, about 7-10 min on a 20 s clip), ``full`` (GPU, minutes of video)."""
        if name not in PRESETS:
            raise EmogeneError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}", path="--preset")
        steps = {"tiny": A2MTraining(steps=60, window=32, batch=8), "quick": A2MTraining(steps=1500), "full": A2MTraining(steps=20000, window=64, batch=32)}
        return cls(name, RendererConfig.preset(name), steps[name])


@dataclass
class FitResult:
    """What :func:`fit_identity` trained and measured (PSNR in dB, SSIM 0..1, landmark errors in inter-ocular units)."""

    name: str
    preset: str
    resolution: int
    frames: int
    train_frames: int
    heldout_frames: int
    psnr: float
    ssim: float
    a2m_errors: dict[str, float]
    feature_kind: str
    seconds: dict[str, float] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    renderer_steps: int = 0
    renderer_start_step: int = 0  # > 0: continued from a checkpoint (``resume``)
    a2m_mode: str = "scratch"
    a2m_note: str = ""
    a2m_train_frames: int = 0
    a2m_heldout_frames: int = 0
    voice_check: dict[str, float] = field(default_factory=dict)
    a2m_sync: SyncOffset | None = None  # the recording's audio-video offset the audio-to-motion model was trained with
    ldm: str = ""  # the landmark deformation model the gains were measured for (Store.ldm_label), "" if none
    pose_mouth_gain: PoseMouthGain | None = None  # the renderer's mouth against the head pitch; None if not measured


def save_preview(path: Path, real: list[np.ndarray], rendered: list[np.ndarray]) -> Path:
    """A PNG grid, one row per frame: real | rendered (RGB uint8 ``[H, W, 3]`` each)."""
    rows = [np.concatenate([r, f], axis=1) for r, f in zip(real, rendered)]
    grid = np.concatenate(rows, axis=0)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 failure
        raise InputError("could not encode preview image", path=path)
    atomic_write_bytes(path, buf.tobytes())
    return path


def fit_identity(
    name: str,
    *,
    store: Store,
    preset: str = "quick",
    device: str = "cpu",
    resume: bool = False,
    seed: int = 0,
    a2m: str = "auto",
    a2m_only: bool = False,
    progress: Callable[..., None] | None = None,
) -> FitResult:
    """Train and save the renderer and the audio-to-motion model of a preprocessed identity.

    Args:
        name: identity name (preprocessed before).
        preset: see :meth:`FitPreset.get`.
        resume: continue the renderer and the audio-to-motion model from their last checkpoints
            (``<identity>/checkpoints``), e.g. after an interruption.
        a2m: ``auto`` (fine-tune the generic model when the store has one, else from scratch),
            ``finetune`` or ``scratch``.
        a2m_only: train only the audio-to-motion model and keep the renderer as it is.
        progress: ``progress(label, done, total, **fields)``.

    Raises:
        NotFoundError: the identity was not preprocessed; ``a2m="finetune"`` without a generic model.
        MismatchError: ``a2m="finetune"`` with a generic model of other audio features.
        InputError: the clip is too short to fit (under 2 s).
        Interrupted: SIGINT or SIGTERM; a training loop checkpoints its current step first.
    """
    cfg = FitPreset.get(preset)
    kind = load_artifact(store.require_dataset(name), what="identity dataset").feature_kind or "mel"
    a2m_mode, a2m_note = resolve_a2m_mode(a2m, store, kind)  # fails before any long work
    t0 = time.perf_counter()
    if a2m_only:
        return _fit_a2m_only(name, store=store, cfg=cfg, mode=a2m_mode, note=a2m_note, device=device, seed=seed, progress=progress,
                             resume=resume)
    data = load_identity(store, name, size=cfg.renderer.resolution)
    T = len(data.motion)
    if T < MIN_FRAMES:
        raise InputError(f"clip too short to fit ({T / 25:.1f} s; need at least {MIN_FRAMES / 25:.0f} s)", path=store.dataset_path(name))
    train_idx, held_idx = split_frames(T)
    seconds = {"load": time.perf_counter() - t0}
    params = {"identity": name, "preset": preset, "device": device, "seed": seed, "resolution": cfg.renderer.resolution}

    # renderer ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    ckpt = store.checkpoint_dir(name) / "renderer.safetensors"

    def renderer_progress(step: int, total: int, info: dict) -> None:
        if progress:
            progress("renderer", step, total, loss=float(info.get("loss", 0.0)), psnr=float(info.get("psnr", 0.0)))

    renderer, renderer_stats = train_renderer(data, cfg.renderer, device=device, checkpoint=ckpt, resume=resume, progress=renderer_progress, seed=seed)
    seconds["renderer"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    held = heldout_frames(T)
    report = evaluate_renderer(renderer, data, held, device)
    seconds["evaluate"] = time.perf_counter() - t0
    renderer_path = renderer.save(store.renderer_path(name), producer="fit-identity", params=params, feature_kind=data.feature_kind)
    pick = held[np.linspace(0, len(held) - 1, num=min(3, len(held))).astype(int)]
    frames = report.get("frames")
    rendered = [frames[list(held).index(i)] for i in pick] if frames is not None else []
    preview = save_preview(store.identity_dir(name) / "fit_preview.png", [data.images[i] for i in pick], rendered) if rendered else None

    # audio-to-motion --------------------------------------------------------------------
    t0 = time.perf_counter()
    person = _train_person_a2m(data, name, store=store, cfg=cfg, mode=a2m_mode, params=params, device=device, seed=seed, progress=progress,
                              resume=resume)
    seconds["audio_to_motion"] = time.perf_counter() - t0

    paths = {"renderer": renderer_path, "audio-to-motion": person["path"], "checkpoint": ckpt}
    if preview is not None:
        paths["preview (real | rendered, held-out)"] = preview
    t0 = time.perf_counter()
    pose_gain = identity_pose_mouth_gain(store, name, renderer, device, progress=progress, data=data)
    if pose_gain is not None:
        paths["mouth vs head pitch"] = pose_gain_path(store, name)
    seconds["pose_calibration"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    paths.update(_calibrate(store, name, device, progress))
    if store.ldm_file.is_file():
        seconds["calibration"] = time.perf_counter() - t0
    r = person["result"]
    return FitResult(
        name=name, preset=preset, resolution=cfg.renderer.resolution, frames=T, train_frames=len(train_idx),
        heldout_frames=len(held), psnr=float(report["psnr"]), ssim=float(report["ssim"]), a2m_errors=r.errors,
        feature_kind=data.feature_kind, seconds=seconds, paths=paths, a2m_mode=r.mode, a2m_note=" ".join(x for x in (a2m_note, r.note) if x),
        a2m_train_frames=r.train_frames, a2m_heldout_frames=r.heldout_frames, voice_check=person["voice_check"], a2m_sync=r.sync,
        renderer_steps=int(renderer_stats["steps"]), renderer_start_step=int(renderer_stats["start_step"]),
        ldm=store.ldm_label() if store.ldm_file.is_file() else "", pose_mouth_gain=pose_gain,
    )


def _calibrate(store: Store, name: str, device: str, progress: Callable[..., None] | None) -> dict[str, Path]:
    """The identity's tracker and emotion gains for the store's LDM (:func:`~emogene_cli.emotion.attach_calibration`),
    measured unless stored.

    Returns their files: none when there is no LDM yet (``speak`` measures them on first use),
    and a gain is missing when no face was tracked in its frames (the emotion is then rendered
    at the actors' size).
    """
    if not store.ldm_file.is_file():
        return {}
    speaker = attach_calibration(load_speaker(store, name, device), store, load_ldm(store, device), progress=progress)
    paths = {}
    if speaker.tracker_gain is not None:
        paths["tracker gain"] = tracker_gain_path(store, name)
    if speaker.emotion_gain is not None:
        paths["emotion gain"] = emotion_gain_path(store, name)
    return paths


def _train_person_a2m(data, name: str, *, store: Store, cfg: FitPreset, mode: str, params: dict, device: str, seed: int,
                      progress: Callable[..., None] | None, resume: bool = False) -> dict:
    """Train, check and save the person's audio-to-motion model; ``{"result", "path", "voice_check"}``.

    Its training state is checkpointed to ``<identity>/checkpoints/a2m.safetensors`` (on SIGINT /
    SIGTERM and at the end); ``resume`` continues from there.
    """
    r = fit_person_a2m(data, mode, cfg.name, cfg.a2m, store=store, device=device, seed=seed, progress=progress,
                       checkpoint=store.checkpoint_dir(name) / "a2m.safetensors", resume=resume)
    voice = voice_independence(r.model, store, device) if mode == "finetune" else {}
    extra = {"a2m_mode": mode, "a2m_train_frames": str(r.train_frames), "a2m_heldout_frames": str(r.heldout_frames),
             "sync_offset": str(r.sync.offset), "sync_corr0": f"{r.sync.corr0:.4f}", "sync_corr": f"{r.sync.corr:.4f}",
             "mouth_gain": f"{r.errors['mouth_gain']:.4f}"}
    path = save_a2m(store.a2m_path(name), r.model, producer="fit-identity", params={**params, "a2m": mode},
                    feature_kind=data.feature_kind, extra=extra)
    return {"result": r, "path": path, "voice_check": voice}


def voice_independence(model, store: Store, device: str = "cpu") -> dict[str, float]:
    """Mouth-opening correlation of ``model`` and of the generic model on train-a2m's validation people.

    Both are driven by the held-out people's audio (clips from the generic model's metadata, cached
    in the store); a fine-tuned model that re-learned one voice falls behind the generic one.
    Empty when those clips are not available here.
    """
    generic, art = load_a2m(store.generic_a2m_file, what="generic audio-to-motion model", device=device)
    clips = validation_clips(store, {**art.metadata, "feature_kind": art.feature_kind or "mel"})
    if not clips:
        return {}
    model = model.to(device)
    person = pool_scores([score_clip(model, c, device) for c in clips])
    base = pool_scores([score_clip(generic, c, device) for c in clips])
    return {"people": ", ".join(sorted({c.person for c in clips})), "frames": person["frames"],
            "person_corr": person["mouth_open_corr"], "generic_corr": base["mouth_open_corr"]}


def _fit_a2m_only(name: str, *, store: Store, cfg: FitPreset, mode: str, note: str, device: str, seed: int,
                  progress: Callable[..., None] | None, resume: bool = False) -> FitResult:
    """fit-identity --a2m-only: the audio-to-motion model alone; the renderer is left as it is."""
    t0 = time.perf_counter()
    data = load_identity(store, name, with_images=False)
    T = data.frames
    if T < MIN_FRAMES:
        raise InputError(f"clip too short to fit ({T / 25:.1f} s; need at least {MIN_FRAMES / 25:.0f} s)", path=store.dataset_path(name))
    seconds = {"load": time.perf_counter() - t0}
    params = {"identity": name, "preset": cfg.name, "device": device, "seed": seed, "a2m_only": True}
    t0 = time.perf_counter()
    person = _train_person_a2m(data, name, store=store, cfg=cfg, mode=mode, params=params, device=device, seed=seed, progress=progress,
                               resume=resume)
    seconds["audio_to_motion"] = time.perf_counter() - t0
    r = person["result"]
    return FitResult(
        name=name, preset=cfg.name, resolution=data.size, frames=T, train_frames=r.train_frames, heldout_frames=r.heldout_frames,
        psnr=float("nan"), ssim=float("nan"), a2m_errors=r.errors, feature_kind=data.feature_kind, seconds=seconds,
        paths={"audio-to-motion": person["path"]}, a2m_mode=r.mode, a2m_note=" ".join(x for x in (note, r.note) if x),
        a2m_train_frames=r.train_frames, a2m_heldout_frames=r.heldout_frames, voice_check=person["voice_check"], a2m_sync=r.sync,
    )
