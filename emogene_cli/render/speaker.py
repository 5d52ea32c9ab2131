"""A fitted identity loaded for speaking: renderer, audio-to-motion model, pose bank, landmark lift.

Usage::

    speaker = load_speaker(store, "obama_20s", device="cpu")
    frames = speaker.renderer.render_frames(poses, dense_motion, speaker.background, "cpu")

Loaded once per command and shared by ``speak``, ``evaluate``, ``fit-identity``'s calibration
and the emotion calibrations (:mod:`emogene_cli.emotion`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import geometry
from ..audio import check_kind
from ..dataset import IdentityData, load_identity, split_frames
from ..errors import NotFoundError
from ..models.a2m import AudioToMotionVAE
from ..models.renderer import TalkingHeadRenderer
from ..motion import find_idle_segments, load_a2m, mouth_rest
from ..store import Store
from .pose_gain import PoseMouthGain, identity_pose_mouth_gain


@dataclass
class Speaker:
    """Everything ``speak`` needs of one fitted identity, loaded once (see :func:`load_speaker`).

    ``bank_motion [N, 68, 3]`` and ``bank_poses [N, 4, 4]`` are the identity's training frames
    (poses in pixels at the renderer's resolution); ``background [H, W, 3]`` uint8;
    ``lift``: ``(W [1434, 204], b [1434])``, the identity's own 68 -> 478 landmark map
    (:func:`geometry.fit_lift` on its training frames) that densifies the neutral motion;
    ``tracker_gain [478, 3]``: MediaPipe's gain on this identity's face for the LDM's emotions
    (:mod:`emogene_cli.emotion.tracker_gain`) and ``emotion_gain [8]``: each emotion's gain on it
    (:mod:`emogene_cli.emotion.gain`), both set by :func:`~emogene_cli.emotion.attach_calibration`,
    None until measured. ``mouth_gain``: how much wider the identity's real mouth moves than its
    post-processed audio-to-motion output on held-out audio (fit-identity; 1.0 for models made
    before it or for the generic model), applied about the identity's mean posture and bounded by
    ``mouth_rest [68, 3]``, its closed-mouth posture (:func:`~emogene_cli.motion.postprocessing.amplify_mouth`),
    about which the pose calibration scales. ``pose_mouth_gain``: how far the
    renderer opens the mouth at each head pitch (:mod:`.pose_gain`), set by :func:`load_speaker`; None
    without a renderer or where it could not be measured.
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
    lift: tuple[np.ndarray, np.ndarray]
    tracker_gain: np.ndarray | None = None
    emotion_gain: np.ndarray | None = None
    mouth_gain: float = 1.0
    mouth_rest: np.ndarray | None = None
    pose_mouth_gain: PoseMouthGain | None = None


def load_speaker(store: Store, name: str | None, device: str = "cpu", *,
                 on_measure: Callable[[], None] | None = None) -> Speaker:
    """Load a fitted identity's renderer, audio-to-motion model, pose bank and the renderer's mouth
    calibration against the head pose (:func:`.pose_gain.identity_pose_mouth_gain`: stored by
    fit-identity, or measured here once, about 20 s; ``on_measure()`` is called before).

    Raises:
        NotFoundError: the identity is unknown or not fitted (lists the fitted ones).
        MismatchError: renderer and audio-to-motion model were made with other audio features than the dataset.
    """
    name = store.resolve_identity(name)
    renderer = TalkingHeadRenderer.load(store.renderer_path(name), device=device)
    a2m, art = load_a2m(store.a2m_path(name), device=device)
    data = load_identity(store, name, size=renderer.config.resolution, with_images=False)
    check_kind(data.feature_kind, art.feature_kind or data.feature_kind, store.a2m_path(name))
    speaker = _speaker(name, data, renderer, a2m, device, mouth_gain=_mouth_gain(art.metadata))
    speaker.pose_mouth_gain = identity_pose_mouth_gain(store, name, renderer, device, on_measure=on_measure, data=data)
    return speaker


def _mouth_gain(metadata: dict[str, str]) -> float:
    """``mouth_gain`` of a person's model file (written by fit-identity); 1.0 in files made before it."""
    return float(metadata.get("mouth_gain", "1"))


def _speaker(name: str, data: IdentityData, renderer: TalkingHeadRenderer | None, a2m: AudioToMotionVAE,
             device: str, mouth_gain: float = 1.0) -> Speaker:
    """The :class:`Speaker` of ``data``: its training frames (:func:`split_frames`) as the pose and
    motion bank, their face height (pixels) for the idle segments, the identity's own 68 -> 478 lift."""
    train_idx, _ = split_frames(len(data.motion))
    lm68 = data.landmarks[train_idx][:, geometry.LM68_FROM_LM478]
    face_size = float(np.median(lm68[:, :, 1].max(1) - lm68[:, :, 1].min(1)))
    poses = data.poses[train_idx]
    dense = geometry.dense_motion(data.canonical[train_idx], data.mean_shape, data.iod)
    return Speaker(
        name=name, renderer=renderer, a2m=a2m, feature_kind=data.feature_kind, bank_motion=data.motion[train_idx],
        bank_poses=poses, background=data.background, mean_shape=data.mean_shape, iod=float(data.iod),
        face_size=face_size, idle_segments=find_idle_segments(poses, face_size), device=device,
        lift=geometry.fit_lift(data.motion[train_idx], dense), mouth_gain=mouth_gain,
        mouth_rest=mouth_rest(data.motion[train_idx], data.mean_shape[geometry.LM68_FROM_LM478], float(data.iod)),
    )


def load_landmark_speaker(store: Store, name: str, device: str = "cpu") -> tuple[Speaker, str]:
    """A :class:`Speaker` without renderer (``renderer=None``) for a preprocessed identity.

    Uses the person's audio-to-motion model when it has one, else the generic one
    (``models/a2m.safetensors``). Poses and landmarks are in pixels of the dataset's frames.

    Returns:
        ``(speaker, which model: "the person's" or "the generic (...)" naming its file)``.

    Raises:
        NotFoundError: not preprocessed, or no audio-to-motion model at all (names train-a2m).
        MismatchError: the model's audio features differ from the dataset's.
    """
    store.require_dataset(name)
    data = load_identity(store, name, with_images=False)
    if store.a2m_path(name).is_file():
        a2m, art = load_a2m(store.a2m_path(name), device=device, feature_kind=data.feature_kind)
        which, gain = "the person's", _mouth_gain(art.metadata)
    elif store.generic_a2m_file.is_file():
        a2m, _ = load_a2m(store.generic_a2m_file, what="generic audio-to-motion model", device=device, feature_kind=data.feature_kind)
        which, gain = f"the generic ({store.generic_a2m_label()})", 1.0
    else:
        raise NotFoundError(f"identity '{name}' has no audio-to-motion model and the store no generic one: run `emogene train-a2m VIDEOS` "
                            f"or `emogene fit-identity {name}`", path=store.generic_a2m_path)
    return _speaker(name, data, None, a2m, device, mouth_gain=gain), which
