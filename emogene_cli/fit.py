"""The fit-identity stage: the person's renderer (head NeRF + torso) and audio-to-motion VAE.

Both are trained on the first 90% of the identity's frames; the last 10% are never trained
on, and held-out PSNR/SSIM (renderer, ground-truth poses and landmarks) and landmark
errors (audio-to-motion) are reported on them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .errors import EmogeneError, InputError
from .fit_renderer import evaluate_renderer, heldout_frames, split_frames, train_renderer
from .models.a2m import A2MConfig
from .models.renderer import RendererConfig
from .preprocess import load_identity
from .store import Store, atomic_write_bytes, save_model
from .train_a2m import A2MTraining, motion_errors, predict_motion, train_a2m

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
        """``tiny`` (tests, seconds), ``quick`` (CPU, about 15-20 min on a 20 s clip), ``full`` (GPU, minutes of video)."""
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
    progress: Callable[..., None] | None = None,
) -> FitResult:
    """Train and save the renderer and the audio-to-motion model of a preprocessed identity.

    Args:
        name: identity name (preprocessed before).
        preset: see :meth:`FitPreset.get`.
        resume: continue the renderer and the audio-to-motion model from their last checkpoints
            (``<identity>/checkpoints``), e.g. after an interruption.
        progress: ``progress(label, done, total, **fields)``.

    Raises:
        NotFoundError: the identity was not preprocessed.
        InputError: the clip is too short to fit (under 2 s).
        Interrupted: SIGINT or SIGTERM; a training loop checkpoints its current step first.
    """
    cfg = FitPreset.get(preset)
    store.require_dataset(name)
    t0 = time.perf_counter()
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
    a2m_cfg = A2MConfig.preset(preset, audio_dim=data.audio_features.shape[1])
    a2m = train_a2m(
        data.audio_features, data.f0, data.motion, len(train_idx), a2m_cfg, cfg.a2m, device=device, seed=seed,
        progress=progress, checkpoint=store.checkpoint_dir(name) / "a2m.safetensors", resume=resume,
    )
    pred = predict_motion(a2m, data.audio_features, data.f0, temperature=0.0, seed=seed, device=device)
    errors = motion_errors(pred[held], data.motion[held])
    a2m_path = save_model(store.a2m_path(name), a2m.cpu(), a2m_cfg, producer="fit-identity", params=params, feature_kind=data.feature_kind)
    seconds["audio_to_motion"] = time.perf_counter() - t0

    paths = {"renderer": renderer_path, "audio-to-motion": a2m_path, "checkpoint": ckpt}
    if preview is not None:
        paths["preview (real | rendered, held-out)"] = preview
    return FitResult(
        name=name, preset=preset, resolution=cfg.renderer.resolution, frames=T, train_frames=len(train_idx),
        heldout_frames=len(held), psnr=float(report["psnr"]), ssim=float(report["ssim"]), a2m_errors=errors,
        feature_kind=data.feature_kind, seconds=seconds, paths=paths,
        renderer_steps=int(renderer_stats["steps"]), renderer_start_step=int(renderer_stats["start_step"]),
    )
