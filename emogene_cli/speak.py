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
from typing import Callable, Iterator

import cv2
import numpy as np
import torch

from . import geometry
from .audio import check_kind, compute_audio_features, frames_for, load_audio, voice_activity
from .emotion_control import (
    TrackRow, clip_track, constant_weights, describe_blend, is_all, load_track, one_hot_weights, parse_blend, track_weights,
)
from .emotions import EMOTIONS
from .errors import EmogeneError, NotFoundError
from .fit_renderer import split_frames
from .media import VideoWriter
from .models.a2m import AudioToMotionVAE
from .models.ldm import LandmarkDeformationModel, LDMConfig
from .models.renderer import TalkingHeadRenderer
from .poses import find_idle_segments, sample_poses
from .postprocess import PostConfig, postprocess
from .preprocess import load_identity
from .store import Store, load_model
from .tracker_gain import apply_gain
from .train_a2m import load_a2m, predict_motion


#: 68-point landmarks whose motion the renderer's expression code takes from the neutral motion
#: (:func:`emotional_motion`): the eyelids and the inner mouth corners (the lip-width feature).
CODE_FROM_NEUTRAL_68 = np.concatenate([geometry.LM68_UPPER_LID, geometry.LM68_LOWER_LID, [60, 64]])


@dataclass
class Speaker:
    """Everything ``speak`` needs of one fitted identity, loaded once (see :func:`load_speaker`).

    ``bank_motion [N, 68, 3]`` and ``bank_poses [N, 4, 4]`` are the identity's training frames
    (poses in pixels at the renderer's resolution); ``background [H, W, 3]`` uint8;
    ``lift``: ``(W [1434, 204], b [1434])``, the identity's own 68 -> 478 landmark map
    (:func:`geometry.fit_lift` on its training frames) that densifies the neutral motion;
    ``tracker_gain [478, 3]``: MediaPipe's gain on this identity's face for the LDM's emotions
    (:mod:`emogene_cli.tracker_gain`) and ``emotion_gain [8]``: each emotion's gain on it
    (:mod:`emogene_cli.emotion_gain`), both set by :func:`attach_calibration`, None until measured.
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


def load_speaker(store: Store, name: str | None, device: str = "cpu") -> Speaker:
    """Load a fitted identity's renderer, audio-to-motion model and pose bank.

    Raises:
        NotFoundError: the identity is unknown or not fitted (lists the fitted ones).
        MismatchError: renderer and audio-to-motion model were made with other audio features than the dataset.
    """
    name = store.resolve_identity(name)
    renderer = TalkingHeadRenderer.load(store.renderer_path(name), device=device)
    a2m, art = load_a2m(store.a2m_path(name), device=device)
    data = load_identity(store, name, size=renderer.config.resolution, with_images=False)
    check_kind(data.feature_kind, art.feature_kind or data.feature_kind, store.a2m_path(name))
    train_idx, _ = split_frames(len(data.motion))
    lm68 = data.landmarks[train_idx][:, geometry.LM68_FROM_LM478]
    face_size = float(np.median(lm68[:, :, 1].max(1) - lm68[:, :, 1].min(1)))
    poses = data.poses[train_idx]
    dense = geometry.dense_motion(data.canonical[train_idx], data.mean_shape, data.iod)
    return Speaker(
        name=name, renderer=renderer, a2m=a2m, feature_kind=data.feature_kind, bank_motion=data.motion[train_idx],
        bank_poses=poses, background=data.background, mean_shape=data.mean_shape, iod=float(data.iod),
        face_size=face_size, idle_segments=find_idle_segments(poses, face_size), device=device,
        lift=geometry.fit_lift(data.motion[train_idx], dense),
    )


def attach_calibration(speaker: Speaker, store: Store, ldm: LandmarkDeformationModel,
                       on_measure: Callable[[], None] | None = None,
                       progress: Callable[..., None] | None = None) -> Speaker:
    """Set the identity's ``tracker_gain`` and ``emotion_gain`` for ``ldm``.

    Each is the stored calibration, or measured once and stored (about 25 s each at 256x256 on
    2 CPU cores; ``on_measure()`` is called once before, e.g. to tell the user):
    :func:`.tracker_gain.identity_tracker_gain` (how much of a landmark motion MediaPipe reads
    on this face) and then :func:`.emotion_gain.identity_emotion_gain` (how strongly the
    rendered face shows each emotion, measured through the renderer with the tracker gain).
    Without a face in the chosen frames a gain stays None: the displacement is then rendered
    as tracked, at the actors' size.
    """
    from .emotion_gain import identity_emotion_gain
    from .tracker_gain import identity_tracker_gain

    told = []

    def once() -> None:
        if on_measure is not None and not told:
            told.append(True)
            on_measure()

    size = speaker.renderer.config.resolution
    speaker.tracker_gain = identity_tracker_gain(store, speaker.name, ldm, size=size, on_measure=once, progress=progress)
    speaker.emotion_gain = identity_emotion_gain(store, speaker, ldm, on_measure=once, progress=progress)
    return speaker


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

    ``neutral`` (audio-to-motion), ``emotional`` (neutral + LDM displacement) and
    ``motion68`` (post-processed) are ``[T, 68, 3]`` in inter-ocular units; ``motion``
    ``[T, 478, 3]`` is the post-processed dense motion that deforms the renderer's head and
    ``code_motion [T, 478, 3]`` the motion that sets its expression code (``motion`` with the
    eyelids and mouth corners of the neutral motion, see :func:`emotional_motion`); ``poses [T, 4, 4]``;
    ``active [T]`` voice activity.
    """

    neutral: np.ndarray
    emotional: np.ndarray
    motion68: np.ndarray
    motion: np.ndarray
    poses: np.ndarray
    active: np.ndarray
    feature_note: str = ""
    code_motion: np.ndarray | None = None


def plan_motion(
    speaker: Speaker,
    audio: np.ndarray,
    *,
    emotion: str = "neutral",
    intensity: float = 1.0,
    weights: np.ndarray | None = None,
    ldm: LandmarkDeformationModel | None = None,
    temperature: float = 0.2,
    seed: int = 0,
    hubert: str | None = None,
    store_dir: Path | None = None,
    post: PostConfig | None = None,
) -> MotionPlan:
    """Audio (``[N]`` float32, 16 kHz) -> landmarks and head poses for every output frame.

    ``weights [T, 8]`` (over :data:`EMOTIONS`, intensity folded in; see
    :mod:`emogene_cli.emotion_control`) directs the emotion frame by frame; without it the
    whole clip gets ``emotion`` × ``intensity``.
    """
    T = frames_for(audio)
    feats = compute_audio_features(audio, num_frames=T, kind=speaker.feature_kind, hubert=hubert, device=speaker.device, store_dir=store_dir)
    neutral = predict_motion(speaker.a2m, feats.features, feats.f0, temperature=temperature, seed=seed, device=speaker.device)
    if weights is None:
        weights = one_hot_weights(emotion, intensity, T)
    emotional, motion68, motion, code_motion = emotional_motion(speaker, neutral, weights, ldm=ldm, post=post, seed=seed)
    active = voice_activity(audio, T)
    poses = sample_poses(speaker.bank_poses, active, face_size=speaker.face_size, idle_segments=speaker.idle_segments, seed=seed)
    return MotionPlan(neutral=neutral, emotional=emotional, motion68=motion68, motion=motion, poses=poses, active=active,
                      feature_note=feats.note, code_motion=code_motion)


def emotional_motion(
    speaker: Speaker,
    neutral: np.ndarray,
    weights: np.ndarray,
    *,
    ldm: LandmarkDeformationModel | None,
    post: PostConfig | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neutral motion ``[T, 68, 3]`` + emotion weights ``[T, 8]`` -> the motion that drives the renderer.

    EmoGene's motion-to-emotion step with its landmark mixture:

    1. the LDM's displacement ``ldm.mixed_displacement(neutral, weights)`` (zero when ``ldm``
       is None or every weight is zero), intensity already in ``weights``, each emotion's
       weight times its gain on this identity (:attr:`Speaker.emotion_gain`, 1 to
       :data:`.emotion_gain.GAIN_MAX`: how much more motion this face needs to show the
       emotion as strongly as the actors);
    2. :func:`postprocess`: the neutral motion alone is projected onto the identity's own
       landmark manifold, smoothed, clamped to its range and given blinks; the displacement
       is only low-passed in time, so the emotion keeps its full size;
    3. both are lifted to the 478 face-mesh points: the neutral motion with the identity's
       own map (:attr:`Speaker.lift`), the displacement with the map fitted on the MEAD
       actors' emotional faces (``ldm.lift``) and divided by MediaPipe's gain on this face
       (:attr:`Speaker.tracker_gain`: the actors' motion as tracked -> as it is in pixels), and
       added.
    4. the renderer's expression code is set from the same dense motion but with the eyelids
       and the mouth corners of the neutral motion (:data:`CODE_FROM_NEUTRAL_68`): the code
       learned the identity's own blinks and speech, and pushed to the edge of its range by
       an emotion's wide eyes or stretched mouth it changed the whole head (the collar under
       the chin tore on obama_20s); lids and corners still move by geometry, and the code
       still sees the emotion's mouth opening (teeth and the mouth's interior). Around the
       eyes only, the renderer takes the eyelid features from ``dense`` after all
       (:meth:`~emogene_cli.models.renderer.TalkingHeadRenderer.render_image`), so that wide
       or narrowed eyes also show in the eyes' appearance.

    Returns:
        ``emotional [T, 68, 3]`` (neutral + raw displacement), ``motion68 [T, 68, 3]`` (the
        post-processed sum), ``dense [T, 478, 3]`` (inter-ocular units) that deforms the
        renderer's head and ``code [T, 478, 3]``, the motion for its expression code.

    Raises:
        ValueError: ``weights`` is not ``[T, 8]``.
    """
    weights = np.asarray(weights, dtype=np.float32)
    if weights.shape != (len(neutral), len(EMOTIONS)):
        raise ValueError(f"weights shape {weights.shape} != {(len(neutral), len(EMOTIONS))}")
    if speaker.emotion_gain is not None:
        weights = weights * np.asarray(speaker.emotion_gain, np.float32)[None]
    displacement = np.zeros_like(neutral)
    if ldm is not None and weights.any():
        dev = next(ldm.parameters()).device
        with torch.inference_mode():
            n = torch.from_numpy(neutral).to(dev)
            displacement = ldm.mixed_displacement(n, torch.from_numpy(weights).to(dev)).cpu().numpy()
    base, displacement = postprocess(neutral, displacement, speaker.bank_motion, post or PostConfig(seed=seed))
    dense, code = dense_motion(speaker, base, displacement, ldm)
    return neutral + displacement, base + displacement, dense, code


def dense_motion(speaker: Speaker, base: np.ndarray, displacement: np.ndarray,
                 ldm: LandmarkDeformationModel | None) -> tuple[np.ndarray, np.ndarray]:
    """Steps 3-4 of :func:`emotional_motion`: 68-point ``base`` motion and emotional
    ``displacement`` (``[T, 68, 3]``, inter-ocular units) -> the renderer's ``dense [T, 478, 3]``
    and its expression-code motion ``code [T, 478, 3]``."""
    base_dense = geometry.apply_lift(base, *speaker.lift)
    if ldm is None or not displacement.any():
        return base_dense, base_dense
    dense = base_dense + apply_gain(geometry.apply_lift(displacement, ldm.lift.cpu().numpy()), speaker.tracker_gain)
    neutral_points = geometry.LM68_FROM_LM478[CODE_FROM_NEUTRAL_68]
    code = dense.copy()
    code[:, neutral_points] = base_dense[:, neutral_points]
    return dense, code


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


GRID_COLUMNS = 4  # --emotion all: the eight emotions as 4 columns x 2 rows


def compose_grid(tiles: list[np.ndarray], labels: list[str], columns: int = GRID_COLUMNS) -> np.ndarray:
    """Tile equally sized ``[H, W, 3]`` uint8 frames row by row, each labelled on a dark band at its bottom.

    Returns ``[rows × H, columns × W, 3]`` uint8 (``rows = ceil(len(tiles) / columns)``; empty cells black).
    """
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    grid = np.zeros((rows * h, columns * w, 3), np.uint8)
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, max(0.3, 0.6 * h / 256), max(1, int(round(h / 256)))
    (_, th), base = cv2.getTextSize("Ag", font, scale, thick)  # one band height for every label
    pad = max(2, h // 64)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        cell = np.ascontiguousarray(tile, dtype=np.uint8).copy()
        if label:
            tw = cv2.getTextSize(label, font, scale, thick)[0][0]
            band = cell[h - th - base - 2 * pad:, : tw + 2 * pad]
            band[:] = band // 3  # darken under the text so it reads on any face or background
            cv2.putText(cell, label, (pad, h - base - pad), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
        r, c = divmod(i, columns)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = cell
    return grid


def render_grid(
    speaker: Speaker,
    poses: np.ndarray,
    motions: list[tuple[np.ndarray, np.ndarray | None]],
    labels: list[str],
    device: str,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 25,
) -> Iterator[np.ndarray]:
    """Render several motions under the same poses ``[T, 4, 4]`` and yield labelled grids.

    ``motions``: per tile ``(dense [T, 478, 3], code motion [T, 478, 3] or None)`` (see
    :func:`emotional_motion`).

    Renders ``chunk`` frames (1 s) of each motion in turn, so memory holds one chunk per
    motion; yields ``[2H, 4W, 3]`` uint8 frames (see :func:`compose_grid`). ``progress(done,
    total)`` counts rendered tiles (``len(motions) × T``).
    """
    T = len(poses)
    total = T * len(motions)
    done = 0
    for s in range(0, T, chunk):
        e = min(T, s + chunk)
        tiles = []
        for m, c in motions:
            base = done
            step = (lambda d, n, base=base: progress(base + d, total)) if progress else None
            tiles.append(list(speaker.renderer.render_frames(poses[s:e], m[s:e], speaker.background, device, progress=step,
                                                             code_motion=None if c is None else c[s:e])))
            done += e - s
        for i in range(e - s):
            yield compose_grid([t[i] for t in tiles], labels)


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
    track: list[TrackRow] | None = None
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
    temperature: float = 0.2,
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
        track: an emotion track file (see :func:`~emogene_cli.emotion_control.load_track`),
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
        on_calibrate: called before the identity's calibration is measured (the first
            emotional speak after a new LDM, preprocess or fit, up to a minute; see
            :func:`attach_calibration`).
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
    if landmarks_only:
        speaker, which = load_landmark_speaker(store, identity, device)
    else:
        speaker = load_speaker(store, identity, device)
    ldm = load_ldm(store, device) if emotive and intensity > 0 else None
    if ldm is not None and not landmarks_only:
        attach_calibration(speaker, store, ldm, on_measure=on_calibrate, progress=progress)
    seconds["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    plan = plan_motion(speaker, audio, weights=weights, ldm=ldm, temperature=temperature, seed=seed,
                       hubert=hubert, store_dir=store.third_party_dir, post=post)
    motions = [(plan.motion, plan.code_motion)]
    if grid:  # the same neutral motion and poses, each emotion's displacement on top
        motions = [(plan.motion, plan.code_motion) if e == "neutral" else
                   emotional_motion(speaker, plan.neutral, one_hot_weights(e, intensity, T), ldm=ldm, post=post, seed=seed)[2:]
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
            seconds=seconds, track=rows, warnings=warnings,
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


def load_landmark_speaker(store: Store, name: str, device: str = "cpu") -> tuple[Speaker, str]:
    """A :class:`Speaker` without renderer (``renderer=None``) for a preprocessed identity.

    Uses the person's audio-to-motion model when it has one, else the generic one
    (``models/a2m.safetensors``). Poses and landmarks are in pixels of the dataset's frames.

    Returns:
        ``(speaker, which model: "person" or "generic")``.

    Raises:
        NotFoundError: not preprocessed, or no audio-to-motion model at all (names train-a2m).
        MismatchError: the model's audio features differ from the dataset's.
    """
    store.require_dataset(name)
    data = load_identity(store, name, with_images=False)
    if store.a2m_path(name).is_file():
        a2m, _ = load_a2m(store.a2m_path(name), device=device, feature_kind=data.feature_kind)
        which = "person's"
    elif store.generic_a2m_path.is_file():
        a2m, _ = load_a2m(store.generic_a2m_path, what="generic audio-to-motion model", device=device, feature_kind=data.feature_kind)
        which = "generic"
    else:
        raise NotFoundError(f"identity '{name}' has no audio-to-motion model and the store no generic one: run `emogene train-a2m VIDEOS` "
                            f"or `emogene fit-identity {name}`", path=store.generic_a2m_path)
    train_idx, _ = split_frames(len(data.motion))
    lm68 = data.landmarks[train_idx][:, geometry.LM68_FROM_LM478]
    face_size = float(np.median(lm68[:, :, 1].max(1) - lm68[:, :, 1].min(1)))
    poses = data.poses[train_idx]
    dense = geometry.dense_motion(data.canonical[train_idx], data.mean_shape, data.iod)
    speaker = Speaker(
        name=name, renderer=None, a2m=a2m, feature_kind=data.feature_kind, bank_motion=data.motion[train_idx], bank_poses=poses,
        background=data.background, mean_shape=data.mean_shape, iod=float(data.iod), face_size=face_size,
        idle_segments=find_idle_segments(poses, face_size), device=device, lift=geometry.fit_lift(data.motion[train_idx], dense),
    )
    return speaker, which
