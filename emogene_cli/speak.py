"""The speak stage: speech audio + emotion -> video of the identity saying it with that emotion.

Reads as EmoGene's figure, one call per step::

    audio features -> audio-to-motion (VAE) -> neutral landmarks
      -> landmark deformation (emotion, intensity) -> emotional landmarks
      -> post-processing (LLE projection, mouth refinement, One-Euro, clamp, blinks)
      -> head poses (identity's own, idle segments where silent)
      -> renderer (head NeRF + torso over the background plate) -> H.264 + AAC mux

Frames run at 25 fps; the video has ``round(audio seconds * 25)`` frames, so its length
matches the audio within one frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from . import geometry
from .audio import check_kind, compute_audio_features, frames_for, load_audio, voice_activity
from .emotions import EMOTIONS, parse_emotion
from .errors import EmogeneError, NotFoundError
from .fit_renderer import split_frames
from .media import VideoWriter
from .models.a2m import A2MConfig, AudioToMotionVAE
from .models.ldm import LandmarkDeformationModel, LDMConfig
from .models.renderer import TalkingHeadRenderer
from .poses import find_idle_segments, sample_poses
from .postprocess import PostConfig, postprocess
from .preprocess import load_identity
from .store import Store, load_model
from .train_a2m import predict_motion


@dataclass
class Speaker:
    """Everything ``speak`` needs of one fitted identity, loaded once (see :func:`load_speaker`).

    ``bank_motion [N, 68, 3]`` and ``bank_poses [N, 4, 4]`` are the identity's training frames
    (poses in pixels at the renderer's resolution); ``background [H, W, 3]`` uint8.
    """

    name: str
    renderer: TalkingHeadRenderer
    a2m: AudioToMotionVAE
    feature_kind: str
    bank_motion: np.ndarray
    bank_poses: np.ndarray
    background: np.ndarray
    mean_shape: np.ndarray
    iod: float
    face_size: float
    idle_segments: list[tuple[int, int]]
    device: str


def load_speaker(store: Store, name: str | None, device: str = "cpu") -> Speaker:
    """Load a fitted identity's renderer, audio-to-motion model and pose bank.

    Raises:
        NotFoundError: the identity is unknown or not fitted (lists the fitted ones).
        MismatchError: renderer and audio-to-motion model were made with other audio features than the dataset.
    """
    name = store.resolve_identity(name)
    renderer = TalkingHeadRenderer.load(store.renderer_path(name), device=device)
    a2m, art = load_model(store.a2m_path(name), AudioToMotionVAE, A2MConfig, what="audio-to-motion model", device=device)
    data = load_identity(store, name, size=renderer.config.resolution, with_images=False)
    check_kind(data.feature_kind, art.feature_kind or data.feature_kind, store.a2m_path(name))
    train_idx, _ = split_frames(len(data.motion))
    lm68 = data.landmarks[train_idx][:, geometry.LM68_FROM_LM478]
    face_size = float(np.median(lm68[:, :, 1].max(1) - lm68[:, :, 1].min(1)))
    poses = data.poses[train_idx]
    return Speaker(
        name=name, renderer=renderer, a2m=a2m, feature_kind=data.feature_kind, bank_motion=data.motion[train_idx],
        bank_poses=poses, background=data.background, mean_shape=data.mean_shape, iod=float(data.iod),
        face_size=face_size, idle_segments=find_idle_segments(poses, face_size), device=device,
    )


def load_ldm(store: Store, device: str = "cpu") -> LandmarkDeformationModel:
    """The landmark deformation model from the store; NotFoundError telling to run train-ldm."""
    path = store.ldm_path
    if not path.is_file():
        raise NotFoundError("no landmark deformation model: run `emogene train-ldm MEAD_DIR` first (or use --emotion neutral)", path=path)
    model, _ = load_model(path, LandmarkDeformationModel, LDMConfig, what="landmark deformation model", device=device)
    return model


@dataclass
class MotionPlan:
    """Per-frame driving signals for the renderer (25 fps).

    ``neutral``, ``emotional`` and ``motion`` (post-processed) are ``[T, 68, 3]`` in
    inter-ocular units; ``poses [T, 4, 4]``; ``active [T]`` voice activity.
    """

    neutral: np.ndarray
    emotional: np.ndarray
    motion: np.ndarray
    poses: np.ndarray
    active: np.ndarray
    feature_note: str = ""


def plan_motion(
    speaker: Speaker,
    audio: np.ndarray,
    *,
    emotion: str,
    intensity: float = 1.0,
    ldm: LandmarkDeformationModel | None = None,
    temperature: float = 0.2,
    seed: int = 0,
    hubert: str | None = None,
    store_dir: Path | None = None,
    post: PostConfig | None = None,
) -> MotionPlan:
    """Audio (``[N]`` float32, 16 kHz) -> landmarks and head poses for every output frame."""
    T = frames_for(audio)
    feats = compute_audio_features(audio, num_frames=T, kind=speaker.feature_kind, hubert=hubert, device=speaker.device, store_dir=store_dir)
    neutral = predict_motion(speaker.a2m, feats.features, feats.f0, temperature=temperature, seed=seed, device=speaker.device)
    if emotion == "neutral" or ldm is None:
        emotional = neutral
    else:
        with torch.inference_mode():
            emotional = ldm.deform(torch.from_numpy(neutral).to(next(ldm.parameters()).device), EMOTIONS.index(emotion), intensity).cpu().numpy()
    motion = postprocess(emotional, neutral, speaker.bank_motion, post or PostConfig(seed=seed))
    active = voice_activity(audio, T)
    poses = sample_poses(speaker.bank_poses, active, face_size=speaker.face_size, idle_segments=speaker.idle_segments, seed=seed)
    return MotionPlan(neutral=neutral, emotional=emotional, motion=motion, poses=poses, active=active, feature_note=feats.note)


def draw_landmarks(motion: np.ndarray, poses: np.ndarray, speaker: Speaker, size: int) -> np.ndarray:
    """Images of the posed 68 driving landmarks on black, ``[T, size, size, 3]`` uint8."""
    pts = geometry.motion_to_landmarks68(motion, speaker.mean_shape, speaker.iod, poses)
    out = np.zeros((len(motion), size, size, 3), np.uint8)
    radius = max(1, size // 128)
    for t in range(len(motion)):
        for k, (x, y) in enumerate(pts[t, :, :2]):
            colour = (255, 90, 90) if k >= 48 else (90, 220, 255)
            cv2.circle(out[t], (int(round(x)), int(round(y))), radius, colour, -1, lineType=cv2.LINE_AA)
    return out


@dataclass
class SpeakResult:
    """What :func:`speak` wrote and how long each step took (seconds)."""

    identity: str
    emotion: str
    intensity: float
    frames: int
    duration: float
    output: Path
    preview: Path | None
    silent_fraction: float
    feature_kind: str
    feature_note: str
    seconds: dict[str, float] = field(default_factory=dict)


def speak(
    audio_path: str | Path,
    *,
    store: Store,
    emotion: str,
    identity: str | None = None,
    intensity: float = 1.0,
    output: str | Path | None = None,
    preview: bool = False,
    device: str = "cpu",
    temperature: float = 0.2,
    seed: int = 0,
    hubert: str | None = None,
    post: PostConfig | None = None,
    progress: Callable[..., None] | None = None,
) -> SpeakResult:
    """Render ``identity`` saying ``audio_path`` with ``emotion`` into an mp4 with the audio muxed in.

    Args:
        emotion: one of :data:`~emogene_cli.emotions.EMOTIONS` (``disgust``/``surprise`` accepted).
        intensity: scale of the emotional displacement (0 = neutral, 1 = as learned).
        output: mp4 path (default ``<audio stem>_<emotion>.mp4`` in the current folder).
        preview: also write ``<output stem>_preview.mp4``: rendered frame | driving landmarks.

    Raises:
        EmogeneError: unknown emotion, negative intensity; NotFoundError: missing audio,
        identity or models; InputError: unreadable audio or no audio track.
    """
    emotion = parse_emotion(emotion)
    if not 0.0 <= intensity <= 3.0:
        raise EmogeneError(f"intensity {intensity} out of range (0 to 3)", path="--intensity")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    audio = load_audio(audio_path)
    speaker = load_speaker(store, identity, device)
    ldm = load_ldm(store, device) if emotion != "neutral" else None
    seconds["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    plan = plan_motion(speaker, audio, emotion=emotion, intensity=intensity, ldm=ldm, temperature=temperature, seed=seed,
                       hubert=hubert, store_dir=store.third_party_dir, post=post)
    seconds["motion"] = time.perf_counter() - t0

    out = Path(output) if output else Path.cwd() / f"{Path(audio_path).stem}_{emotion}.mp4"
    if out.suffix.lower() != ".mp4":
        raise EmogeneError("output must be an .mp4 file", path=out)
    size = speaker.renderer.config.resolution
    T = len(plan.motion)
    t0 = time.perf_counter()
    preview_path = out.with_name(out.stem + "_preview.mp4") if preview else None
    landmark_images = draw_landmarks(plan.motion, plan.poses, speaker, size) if preview else None
    writer = VideoWriter(out, size, size, audio=audio_path)
    side = VideoWriter(preview_path, 2 * size, size, audio=audio_path) if preview_path else None
    try:
        frames = speaker.renderer.render_frames(
            plan.poses, plan.motion, speaker.background, device,
            progress=(lambda d, n: progress("render", d, n)) if progress else None,
        )
        for t, frame in enumerate(frames):
            writer.write(frame)
            if side is not None:
                side.write(np.concatenate([frame, landmark_images[t]], axis=1))
    except BaseException:
        writer.abort()
        if side is not None:
            side.abort()
        raise
    writer.close()
    if side is not None:
        side.close()
    seconds["render"] = time.perf_counter() - t0
    return SpeakResult(
        identity=speaker.name, emotion=emotion, intensity=intensity, frames=T, duration=T / 25.0, output=out,
        preview=preview_path, silent_fraction=float(1.0 - plan.active.mean()), feature_kind=speaker.feature_kind,
        feature_note=plan.feature_note, seconds=seconds,
    )
