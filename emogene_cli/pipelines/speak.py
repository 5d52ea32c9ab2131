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

import numpy as np

from ..audio import PitchInBackground, compute_audio_features, frames_for, load_audio, voice_activity
from ..emotion import (
    TrackRow, attach_calibration, clip_track, constant_weights, describe_blend, emotional_motion, is_all, load_ldm, load_track,
    one_hot_weights, parse_blend, track_weights,
)
from ..emotions import EMOTIONS
from ..errors import EmogeneError, NotFoundError
from ..media import VideoWriter
from ..models.ldm import LandmarkDeformationModel
from ..motion import SPEAK_TEMPERATURE, PostConfig, predict_motion, sample_poses
from ..render import GRID_COLUMNS, Speaker, draw_landmarks, load_landmark_speaker, load_speaker, render_grid
from ..store import Store


@dataclass
class MotionPlan:
    """Per-frame driving signals for the renderer (25 fps).

    ``neutral`` (audio-to-motion), ``emotional`` (neutral + LDM displacement) and
    ``motion68`` (post-processed) are ``[T, 68, 3]`` in inter-ocular units; ``motion``
    ``[T, 478, 3]`` is the post-processed dense motion that deforms the renderer's head and
    ``code_motion [T, 478, 3]`` the motion that sets its expression code (``motion`` with the
    eyelids and mouth corners of the neutral motion, see :func:`emotional_motion`); ``poses [T, 4, 4]``;
    ``active [T]`` voice activity. ``motion`` and ``code_motion`` open the mouth by ``mouth_factors [T]``
    (the renderer's calibration at each frame's head pitch, :class:`~emogene_cli.render.PoseMouthGain`;
    None without one) about the closed posture; ``motion68`` is the mouth as planned.
    """

    neutral: np.ndarray
    emotional: np.ndarray
    motion68: np.ndarray
    motion: np.ndarray
    poses: np.ndarray
    active: np.ndarray
    feature_note: str = ""
    code_motion: np.ndarray | None = None
    mouth_factors: np.ndarray | None = None


def plan_motion(
    speaker: Speaker,
    audio: np.ndarray,
    *,
    emotion: str = "neutral",
    intensity: float = 1.0,
    weights: np.ndarray | None = None,
    ldm: LandmarkDeformationModel | None = None,
    temperature: float = SPEAK_TEMPERATURE,
    seed: int = 0,
    hubert: str | None = None,
    store_dir: Path | None = None,
    post: PostConfig | None = None,
    poses: np.ndarray | None = None,
    f0_job: PitchInBackground | None = None,
) -> MotionPlan:
    """Audio (``[N]`` float32, 16 kHz) -> landmarks and head poses for every output frame.

    ``weights [T, 8]`` (over :data:`EMOTIONS`, intensity folded in; see
    :mod:`emogene_cli.emotion.control`) directs the emotion frame by frame; without it the
    whole clip gets ``emotion`` × ``intensity``. ``poses [T, 4, 4]``: the head poses to render at
    (e.g. a real video's, for evaluation); default sampled from the identity's pose bank as
    ``speak`` does. The renderer's mouth calibration is taken at these poses. ``f0_job``: the f0
    and voice activity of ``audio`` being computed in a second process, collected once the
    speech encoder has run; default computed here.

    Raises:
        ValueError: ``poses`` not ``[T, 4, 4]``.
        the errors of :func:`~emogene_cli.audio.compute_audio_features` and of ``f0_job.result()``.
    """
    T = frames_for(audio)
    collected: dict[str, np.ndarray] = {}

    def f0_of_job() -> np.ndarray:
        collected["f0"], collected["active"] = f0_job.result()
        return collected["f0"]

    feats = compute_audio_features(audio, num_frames=T, kind=speaker.feature_kind, hubert=hubert, device=speaker.device,
                                   store_dir=store_dir, f0=None if f0_job is None else f0_of_job)
    neutral = predict_motion(speaker.a2m, feats.features, feats.f0, temperature=temperature, seed=seed, device=speaker.device)
    if weights is None:
        weights = one_hot_weights(emotion, intensity, T)
    active = collected["active"] if f0_job is not None else voice_activity(audio, T)
    if poses is None:
        poses = sample_poses(speaker.bank_poses, active, face_size=speaker.face_size, idle_segments=speaker.idle_segments, seed=seed)
    elif np.shape(poses) != (T, 4, 4):
        raise ValueError(f"poses of shape {np.shape(poses)} for {T} frames of audio (need [{T}, 4, 4])")
    factors = None if speaker.pose_mouth_gain is None else speaker.pose_mouth_gain.factors(poses)
    if factors is not None and np.all(factors == 1.0):  # a fit without a measurable tie
        factors = None
    emotional, motion68, motion, code_motion = emotional_motion(speaker, neutral, weights, ldm=ldm, post=post, seed=seed,
                                                                render_mouth_gain=factors)
    return MotionPlan(neutral=neutral, emotional=emotional, motion68=motion68, motion=motion, poses=poses, active=active,
                      feature_note=feats.note, code_motion=code_motion, mouth_factors=factors)


@dataclass
class SpeakResult:
    """What :func:`speak` wrote and how long each step took (seconds).

    ``emotion`` describes what was asked (``happy``, ``happy 0.70 + surprised 0.30``,
    ``all``, ``track``); ``track`` holds the rows used (cut to the audio) when a track drove it.
    """

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
    ldm: str = ""  # which landmark deformation model was used (Store.ldm_label), "" when none
    track: list[TrackRow] | None = None
    mouth_factors: tuple[float, float] | None = None  # smallest and largest MotionPlan.mouth_factors; None without
    warnings: list[str] = field(default_factory=list)


def speak(
    audio_path: str | Path,
    *,
    store: Store,
    emotion: str | None = None,
    track: str | Path | None = None,
    transition: float = 0.3,
    identity: str | None = None,
    intensity: float = 1.0,
    output: str | Path | None = None,
    preview: bool = False,
    device: str = "cpu",
    temperature: float = SPEAK_TEMPERATURE,
    seed: int = 0,
    hubert: str | None = None,
    post: PostConfig | None = None,
    landmarks_only: bool = False,
    progress: Callable[..., None] | None = None,
    on_track: Callable[[list[TrackRow], list[str], float], None] | None = None,
    on_calibrate: Callable[[], None] | None = None,
) -> SpeakResult:
    """Render ``identity`` saying ``audio_path`` with an emotion into an mp4 with the audio muxed in.

    Give exactly one of ``emotion`` and ``track``. Every option is checked before a model
    is loaded or a file written.

    Args:
        emotion: one of :data:`~emogene_cli.emotions.EMOTIONS` (aliases such as ``surprise``
            accepted), a blend ``happy:0.7,surprised:0.3`` (mixed in the LDM's displacement
            space), or ``all``: one video with the eight emotions in a labelled 4x2 grid
            (motion and head poses planned once, rendered eight times).
        track: an emotion track file (see :func:`~emogene_cli.emotion.load_track`),
            cut to the audio with a warning when longer; uncovered time is neutral.
        transition: seconds over which a track's changes ease in and out (smoothstep).
        intensity: scale of the emotional displacement (0 = neutral, 1 = the learned displacement
            times the identity's emotion gain, :attr:`Speaker.emotion_gain`); with a
            track, a factor on every row's intensity.
        output: mp4 path (default ``<audio stem>_<emotion | track stem | all>.mp4`` here).
        preview: also write ``<output stem>_preview.mp4``: rendered frame | driving landmarks
            (not with ``all``).
        on_track: called as ``on_track(rows used, warnings, audio seconds)`` once the track
            is cut to the audio, before any model loads.
        on_calibrate: called once before the identity's calibrations are measured (the
            renderer's mouth against the head pitch after a new preprocess or fit, about 20 s, see
            :func:`~emogene_cli.render.load_speaker`; the emotion gains on the first emotional
            speak after a new LDM, preprocess or fit, up to a minute, see :func:`attach_calibration`).
        landmarks_only: write only the driving landmarks (``<output stem>_landmarks.mp4`` by
            default; no renderer needed, see :func:`load_landmark_speaker`): an identity that
            was only preprocessed is driven by the generic audio-to-motion model.

    Raises:
        EmogeneError: a bad emotion spec or track, intensity or transition out of range, a
        non-mp4 output; NotFoundError: missing audio, track, identity or models; InputError:
        unreadable audio or no audio track.
    """
    # -- check every option before loading anything
    if emotion is not None and track is not None:
        raise EmogeneError("give --emotion or --emotion-track, not both (a track sets the emotion itself)", path="--emotion")
    if emotion is None and track is None:
        raise EmogeneError(f"give --emotion ({', '.join(EMOTIONS)}, a blend like happy:0.7,sad:0.3, or all) "
                           "or --emotion-track FILE", path="--emotion")
    if not 0.0 <= intensity <= 3.0:
        raise EmogeneError(f"intensity {intensity} out of range (0 to 3)", path="--intensity")
    if not 0.0 <= transition <= 10.0:
        raise EmogeneError(f"transition {transition} s out of range (0 to 10)", path="--transition")
    grid = emotion is not None and is_all(emotion)
    blend = parse_blend(emotion) if emotion is not None and not grid else None
    rows = load_track(track) if track is not None else None
    if grid and preview:
        raise EmogeneError("--preview is not available with --emotion all (the grid already shows every emotion)", path="--preview")
    if landmarks_only and (grid or preview or not identity):
        raise EmogeneError("--landmarks-only needs --identity NAME and draws one face (not with --emotion all or --preview)",
                           path="--landmarks-only")
    label = "all" if grid else ("track" if rows is not None else describe_blend(blend))
    if output:
        out = Path(output)
    else:
        tag = "all" if grid else (Path(track).stem if rows is not None else "-".join(blend))
        out = Path.cwd() / f"{Path(audio_path).stem}_{tag}{'_landmarks' if landmarks_only else ''}.mp4"
    if out.suffix.lower() != ".mp4":
        raise EmogeneError("output must be an .mp4 file", path=out)

    seconds: dict[str, float] = {}
    warnings: list[str] = []
    t0 = time.perf_counter()
    if not landmarks_only:
        require_renderer(store, identity)
    audio = load_audio(audio_path)
    T = frames_for(audio)
    if rows is not None:
        rows, warnings = clip_track(rows, T / 25.0)
        if on_track is not None:
            on_track(rows, warnings, T / 25.0)
        weights = track_weights(rows, T, transition=transition, intensity=intensity)
    elif blend is not None:
        weights = constant_weights(blend, intensity, T)
    else:
        weights = np.zeros((T, len(EMOTIONS)), np.float32)  # the grid plans neutral first
    emotive = grid or bool(np.delete(weights, EMOTIONS.index("neutral"), axis=1).any())
    which = ""
    told: list[bool] = []

    def calibrating() -> None:  # one note for however many calibrations are measured
        if on_calibrate is not None and not told:
            told.append(True)
            on_calibrate()

    # pYIN and the voice activity (librosa) run in a second process while the models load and the speech encoder runs
    with PitchInBackground(audio, num_frames=T, path=audio_path) as pending:
        if landmarks_only:
            speaker, which = load_landmark_speaker(store, identity, device)
        else:
            speaker = load_speaker(store, identity, device, on_measure=calibrating)
        ldm = load_ldm(store, device) if emotive and intensity > 0 else None
        if ldm is not None and not landmarks_only:
            attach_calibration(speaker, store, ldm, on_measure=calibrating, progress=progress)
        seconds["load"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        plan = plan_motion(speaker, audio, weights=weights, ldm=ldm, temperature=temperature, seed=seed,
                           hubert=hubert, store_dir=store.third_party_dir, post=post, f0_job=pending)
    motions = [(plan.motion, plan.code_motion)]
    if grid:  # the same neutral motion and poses, each emotion's displacement on top
        motions = [(plan.motion, plan.code_motion) if e == "neutral" else
                   emotional_motion(speaker, plan.neutral, one_hot_weights(e, intensity, T), ldm=ldm, post=post, seed=seed,
                                    render_mouth_gain=plan.mouth_factors)[2:]
                   for e in EMOTIONS]
    seconds["motion"] = time.perf_counter() - t0
    if landmarks_only:
        t0 = time.perf_counter()
        size = int(speaker.background.shape[0])
        with VideoWriter(out, size, size, audio=audio_path) as lm_writer:
            for frame in draw_landmarks(plan.motion68, plan.poses, speaker, size):
                lm_writer.write(frame)
        seconds["draw"] = time.perf_counter() - t0
        note = "; ".join(x for x in (f"landmarks only, {which} audio-to-motion model", plan.feature_note) if x)
        return SpeakResult(
            identity=speaker.name, emotion=label, intensity=intensity, frames=T, duration=T / 25.0, output=out, preview=None,
            silent_fraction=float(1.0 - plan.active.mean()), feature_kind=speaker.feature_kind, feature_note=note,
            seconds=seconds, track=rows, warnings=warnings, ldm=store.ldm_label() if ldm is not None else "",
        )

    size = speaker.renderer.config.resolution
    t0 = time.perf_counter()
    preview_path = out.with_name(out.stem + "_preview.mp4") if preview else None
    landmark_images = draw_landmarks(plan.motion68, plan.poses, speaker, size) if preview else None
    width, height = (GRID_COLUMNS * size, 2 * size) if grid else (size, size)
    writer = VideoWriter(out, width, height, audio=audio_path)
    side = VideoWriter(preview_path, 2 * size, size, audio=audio_path) if preview_path else None
    try:
        step = (lambda d, n: progress("render", d, n)) if progress else None
        if grid:
            frames = render_grid(speaker, plan.poses, motions, list(EMOTIONS), device, progress=step)
        else:
            frames = speaker.renderer.render_frames(plan.poses, plan.motion, speaker.background, device, progress=step,
                                                    code_motion=plan.code_motion)
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
        identity=speaker.name, emotion=label, intensity=intensity, frames=T, duration=T / 25.0, output=out,
        preview=preview_path, silent_fraction=float(1.0 - plan.active.mean()), feature_kind=speaker.feature_kind,
        feature_note=plan.feature_note, seconds=seconds, track=rows, warnings=warnings,
        ldm=store.ldm_label() if ldm is not None else "",
        mouth_factors=None if plan.mouth_factors is None else (float(plan.mouth_factors.min()), float(plan.mouth_factors.max())),
    )


# --------------------------------------------------------------------------------------
# landmarks only: identities without a renderer


def require_renderer(store: Store, identity: str | None) -> None:
    """NotFoundError for a preprocessed identity without renderer, pointing at fit-identity and --landmarks-only."""
    if identity and store.dataset_path(identity).is_file() and not store.renderer_path(identity).is_file():
        raise NotFoundError(
            f"identity '{identity}' has no renderer: run `emogene fit-identity {identity}` to render video, "
            "or pass --landmarks-only for a landmark video driven by the audio-to-motion model",
            path=store.renderer_path(identity),
        )
