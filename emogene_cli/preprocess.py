"""The preprocess stage: a person's talking video -> an identity dataset in the store.

Usage::

    result = preprocess_video(Path("obama.mp4"), store=Store(), size=512, audio_features="mel")
    data = load_identity(Store(), result.name, size=256)      # arrays + images, resized
    data.landmarks.shape, data.images.shape                     # [T, 478, 3], [T, 256, 256, 3]

Steps (GeneFace++'s data preparation, as typed functions): one square crop for the whole
clip (:func:`choose_crop_box`), per-frame MediaPipe landmarks / blendshapes / transform and
person mask on the cropped frames, head poses and canonical landmarks
(:mod:`emogene_cli.geometry`), head / torso / background labels (:func:`split_head_torso`),
a static background plate (:func:`background_plate`) and the audio features.

Written (see DESIGN.md, "Artifacts")::

    identities/<name>/dataset.safetensors          arrays listed in preprocess_video
    identities/<name>/frames/images/00000.jpg ...  cropped RGB frames at size x size
    identities/<name>/frames/masks/00000.png ...   labels: 0 background, 1 torso, 2 head
    identities/<name>/frames/background.png        background plate

All times are video frames at 25 fps; all image coordinates are pixels.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from . import geometry, media
from .errors import EmogeneError, InputError, MismatchError, NotFoundError
from .face import BLENDSHAPE_NAMES, FaceTracker, PersonSegmenter, TrackBuilder, TrackResult, track_frames
from .interrupt import held, note_kept
from .store import NAME_PATTERN, Store, load_artifact, save_artifact, validate_name

FPS = media.FPS
MIN_SECONDS = 2.0
MIN_FACE_FRACTION = 0.9
SCAN_EVERY = 5  # the crop scan looks at every 5th frame (5 fps)
MAX_PLATE_FRAMES = 200  # frames (evenly spaced) that the background median looks at
JPEG_QUALITY = 95

LABEL_BACKGROUND, LABEL_TORSO, LABEL_HEAD = 0, 1, 2
CHIN_LM478 = 152
FOREHEAD_LM478 = 10

Progress = Callable[[str, int, int], None]


@dataclass
class PreprocessResult:
    """What :func:`preprocess_video` did.

    Attributes:
        name: identity name.
        frames: number of video frames T (25 fps).
        seconds: T / 25.
        face_found_fraction: fraction of frames where MediaPipe found the face.
        crop_box: ``(x, y, side, side)`` in source-video pixels (may reach past the frame).
        size: side of the stored square frames, pixels.
        feature_kind: audio feature kind recorded with the dataset.
        paths: what was written: ``dataset``, ``frames``, ``images``, ``masks``, ``background``.
        feature_note: why that feature kind was chosen (for ``auto``), empty if nothing to say.
    """

    name: str
    frames: int
    seconds: float
    face_found_fraction: float
    crop_box: tuple[int, int, int, int]
    size: int
    feature_kind: str
    paths: dict[str, Path]
    feature_note: str = ""


@dataclass
class IdentityData:
    """A preprocessed identity loaded by :func:`load_identity` (T frames at 25 fps, ``size`` pixels).

    Attributes:
        name: identity name.
        landmarks: ``[T, 478, 3]`` float32 crop pixels at ``size``.
        face_found: ``[T]`` bool, False where the landmarks were interpolated.
        blendshapes: ``[T, 52]`` float32 (:data:`~emogene_cli.face.BLENDSHAPE_NAMES`).
        mp_transform: ``[T, 4, 4]`` float32 MediaPipe facial transformation matrices.
        poses: ``[T, 4, 4]`` float32 camera-from-head similarity poses (crop pixels at ``size``).
        mean_shape: ``[478, 3]`` float32 head-frame mean shape.
        canonical: ``[T, 478, 3]`` float32 canonical landmarks.
        motion: ``[T, 68, 3]`` float32 motion in inter-ocular units.
        audio_features: ``[2T, D]`` float32 at 50 Hz.
        f0: ``[T]`` float32 Hz (0 = unvoiced).
        audio: ``[N]`` float32, 16 kHz mono.
        crop_box: ``[4]`` int32 ``x, y, side, side`` in source pixels.
        iod: inter-ocular distance of ``mean_shape`` (its units).
        images: ``[T, size, size, 3]`` uint8 RGB.
        labels: ``[T, size, size]`` uint8: 0 background, 1 torso, 2 head.
        background: ``[size, size, 3]`` uint8 RGB plate.
        feature_kind: audio feature kind (``"mel"`` or ``"hubert:<model>"``).
        size: frame side in pixels.
        metadata: the dataset file's metadata strings.
    """

    name: str
    landmarks: np.ndarray
    face_found: np.ndarray
    blendshapes: np.ndarray
    mp_transform: np.ndarray
    poses: np.ndarray
    mean_shape: np.ndarray
    canonical: np.ndarray
    motion: np.ndarray
    audio_features: np.ndarray
    f0: np.ndarray
    audio: np.ndarray
    crop_box: np.ndarray
    iod: float
    images: np.ndarray
    labels: np.ndarray
    background: np.ndarray
    feature_kind: str
    size: int
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        """Number of video frames T."""
        return len(self.landmarks)


# --------------------------------------------------------------------------------------
# pure steps


def face_box(landmarks: np.ndarray) -> np.ndarray:
    """Bounding box ``[4]`` = ``x0, y0, x1, y1`` (pixels) of ``[478, 3]`` landmarks."""
    xy = np.asarray(landmarks)[:, :2]
    return np.concatenate([xy.min(0), xy.max(0)]).astype(np.float64)


def choose_crop_box(
    face_boxes: np.ndarray,
    frame_size: tuple[int, int],
    *,
    scale: float = 2.2,
    min_scale: float = 1.25,
    down_shift: float = 0.25,
) -> tuple[int, int, int, int]:
    """One square crop for a whole clip from face boxes seen in some of its frames.

    The square is centred on the mean face centre, shifted down by ``down_shift`` mean face
    heights so the shoulders are in, with side ``scale`` x the largest face extent plus the
    spread of the face centres (head motion). If that side exceeds the shorter frame side but
    ``min_scale`` x the extent (plus spread) would fit, it shrinks to the frame (no black
    bars). The box is then shifted to stay inside the frame where it fits, or to pad as
    little as possible where it does not.

    Args:
        face_boxes: ``[K, 4]`` ``x0, y0, x1, y1`` face boxes in source pixels (K >= 1).
        frame_size: ``(width, height)`` of the source video in pixels.

    Returns:
        ``(x, y, side, side)`` ints, source pixels; may extend past the frame.
    """
    boxes = np.asarray(face_boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        raise ValueError("choose_crop_box needs at least one face box")
    width, height = frame_size
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    fw, fh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    extent = float(max(fw.max(), fh.max()))
    spread = float(max(np.ptp(cx), np.ptp(cy)))
    side = scale * extent + spread
    shorter = min(width, height)
    if side > shorter >= min_scale * extent + spread:
        side = shorter
    side = max(2, int(round(side)))
    side -= side % 2  # even sides keep downstream resizes symmetric
    centre_x = float(cx.mean())
    centre_y = float(cy.mean()) + down_shift * float(fh.mean())
    x = int(round(centre_x - side / 2))
    y = int(round(centre_y - side / 2))
    # inside the frame where it fits; else covering the whole frame side with least padding
    x = int(np.clip(x, min(0, width - side), max(0, width - side)))
    y = int(np.clip(y, min(0, height - side), max(0, height - side)))
    return x, y, side, side


def crop_valid_mask(box: tuple[int, int, int, int], frame_size: tuple[int, int], size: int) -> np.ndarray:
    """Which pixels of a ``size`` x ``size`` crop of ``box`` show the source frame (not padding).

    Args:
        box: ``(x, y, side, side)`` in source pixels.
        frame_size: ``(width, height)`` of the source.

    Returns:
        ``[size, size]`` bool, True where the pixel centre lies inside the source frame.
    """
    x, y, side = box[0], box[1], box[2]
    width, height = frame_size
    centres = (np.arange(size) + 0.5) * (side / size)  # source offsets of the pixel centres
    cols = (x + centres >= 0) & (x + centres <= width)
    rows = (y + centres >= 0) & (y + centres <= height)
    return rows[:, None] & cols[None, :]


def split_head_torso(
    person: np.ndarray,
    landmarks: np.ndarray,
    *,
    neck_offset: float = 0.1,
    band: float = 1.6,
    neck_band: float = 0.65,
    jaw_level: float = 0.25,
) -> np.ndarray:
    """Label a frame's person mask as head or torso using its face landmarks.

    With the face's up direction from the chin (landmark 152) to the forehead (landmark 10),
    face height ``|10 - 152|`` and face half-width (the landmarks' largest distance from
    their centre across that direction): head = person pixels above a "neck line"
    ``neck_offset`` face heights below the chin, perpendicular to the up direction, and
    within a band around the face centre: ``band`` half-widths wide from ``jaw_level`` face
    heights above the chin upwards (hair, ears), narrowing linearly to ``neck_band``
    half-widths at the chin (the neck, not the collar); plus the landmarks' convex hull.
    Torso = the rest of the person.

    Args:
        person: ``[H, W]`` bool person mask.
        landmarks: ``[478, 3]`` face landmarks in pixels of that frame.

    Returns:
        ``[H, W]`` uint8 labels: 0 background, 1 torso, 2 head.
    """
    person = np.asarray(person, dtype=bool)
    h, w = person.shape
    xy = np.asarray(landmarks, dtype=np.float64)[:, :2]
    chin, top = xy[CHIN_LM478], xy[FOREHEAD_LM478]
    up = top - chin
    face_height = float(np.linalg.norm(up))
    up = up / face_height if face_height > 1e-6 else np.array([0.0, -1.0])
    across = np.array([-up[1], up[0]])
    centre = xy.mean(0)
    half_width = max(float(np.abs((xy - centre) @ across).max()), 1e-6)

    # separable projections of the pixel grid: height above the chin and offset across
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    height = ((xs - chin[0]) * up[0] + (ys - chin[1]) * up[1]) / face_height  # face heights
    offset = np.abs((xs - centre[0]) * across[0] + (ys - centre[1]) * across[1]) / half_width
    allowed = neck_band + (band - neck_band) * np.clip(height / jaw_level, 0.0, 1.0)
    head = person & (height > -neck_offset) & (offset <= allowed)

    hull = cv2.convexHull(np.round(xy).astype(np.int32))
    hull_mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull_mask, hull, 1)
    head |= hull_mask.astype(bool)

    labels = np.zeros((h, w), np.uint8)
    labels[person] = LABEL_TORSO
    labels[head] = LABEL_HEAD
    return labels


def background_plate(
    frames: np.ndarray,
    person: np.ndarray,
    *,
    dilate_px: int = 0,
    inpaint_radius: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Static background: per-pixel median colour over the frames where no person covers it.

    Each person mask is first dilated by ``dilate_px`` pixels (a margin for soft edges and
    motion). Pixels covered in every frame are filled with ``cv2.inpaint`` (Telea).

    Args:
        frames: ``[K, H, W, 3]`` uint8 frames (any channel order; it is kept).
        person: ``[K, H, W]`` bool person masks.
        dilate_px: dilation radius in pixels.
        inpaint_radius: Telea neighbourhood radius in pixels.
        progress: called as ``progress(rows_done, H)``.

    Returns:
        ``[H, W, 3]`` uint8 plate.
    """
    frames = np.asarray(frames)
    person = np.asarray(person, dtype=bool)
    k, h, w, _ = frames.shape
    if k == 0 or person.shape != (k, h, w):
        raise ValueError(
            f"background_plate needs K >= 1 frames [K,H,W,3] and masks [K,H,W]; got {frames.shape}, {person.shape}"
        )
    if dilate_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
        covered = np.stack([cv2.dilate(m.astype(np.uint8), kernel).astype(bool) for m in person])
    else:
        covered = person
    plate = np.zeros((h, w, 3), np.uint8)
    rows = max(1, (1 << 22) // max(1, k * w * 3))  # ~4 M values per chunk
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        # covered samples become 256 and sort last; the median is taken among the first n
        vals = frames[:, r0:r1].astype(np.uint16)
        vals[covered[:, r0:r1]] = 256
        vals = np.moveaxis(vals, 0, -1)  # [rows, W, 3, K]
        vals = np.sort(vals, axis=-1, kind="stable")
        n = (~covered[:, r0:r1]).sum(0)[:, :, None, None]  # [rows, W, 1, 1]
        n = np.broadcast_to(n, vals.shape[:-1] + (1,))
        lo = np.take_along_axis(vals, np.maximum(n - 1, 0) // 2, -1)
        hi = np.take_along_axis(vals, n // 2, -1)
        med = (lo.astype(np.float32) + np.minimum(hi, 255).astype(np.float32)) / 2
        plate[r0:r1] = np.clip(np.round(med[..., 0]), 0, 255).astype(np.uint8)
        if progress is not None:
            progress(r1, h)
    holes = covered.all(0)
    if holes.any():
        plate[holes] = 0
        plate = cv2.inpaint(plate, holes.astype(np.uint8), inpaint_radius, cv2.INPAINT_TELEA)
    return plate


# --------------------------------------------------------------------------------------
# the stage


def _check_input(video: Path, name: str | None) -> tuple[str, media.MediaInfo]:
    """Validate the identity name and the video's streams and length; see preprocess_video."""
    if name is None and not NAME_PATTERN.match(video.stem):
        raise EmogeneError(
            f"the file name {video.stem!r} is not a valid identity name: pass --name NAME "
            "(1-64 letters, digits, '_' or '-')",
            path=video,
        )
    name = validate_name(name or video.stem)
    info = media.require_video(
        video, audio_hint="preprocess needs a video of the person talking; `emogene speak AUDIO --emotion EMOTION` takes audio",
    )
    if not info.has_audio:
        raise InputError(
            "no audio track: fit-identity trains lip motion from the person's speech, so the video must have sound",
            path=video,
        )
    if info.duration < MIN_SECONDS:
        raise InputError(f"clip too short to fit ({info.duration:.1f} s; need at least {MIN_SECONDS:g} s)", path=video)
    return name, info


def _report(progress: Progress | None, label: str, done: int, total: int) -> None:
    if progress is not None:
        progress(label, done, max(total, done))


def find_crop_box(
    video: Path,
    info: media.MediaInfo,
    *,
    model_dir: str | Path | None = None,
    store: Store | None = None,
    progress: Progress | None = None,
) -> tuple[int, int, int, int]:
    """Scan every 5th frame (5 fps) of ``video`` for the face and choose the clip's crop box.

    Returns:
        ``(x, y, side, side)`` in source pixels (see :func:`choose_crop_box`).

    Raises:
        InputError: no face in any scanned frame.
    """
    scan_fps = FPS / SCAN_EVERY
    total = max(1, math.ceil(info.duration * scan_fps))
    track = track_frames(
        media.read_frames(video, fps=scan_fps),
        fps=scan_fps,
        model_file=model_dir,
        store=store,
        progress=lambda done: _report(progress, "finding the face", done, total),
    )
    if not track.found.any():
        raise InputError("no face found in the video", path=video)
    boxes = np.stack([face_box(lm) for lm in track.landmarks[track.found]])
    return choose_crop_box(boxes, (info.width, info.height))


@dataclass
class _Tracked:
    """Per-frame results of the main pass (T frames)."""

    track: TrackResult  # landmarks [T, 478, 3] crop pixels at size, gaps filled
    person_bits: list[np.ndarray]  # T packed [size, size] bool person masks
    plate_frames: list[np.ndarray]  # every plate_step-th frame, [size, size, 3] uint8
    plate_person: list[np.ndarray]  # their person masks [size, size] bool


def _track_crop(
    video: Path,
    box: tuple[int, int, int, int],
    frame_size: tuple[int, int],
    size: int,
    images_dir: Path,
    *,
    expected_frames: int,
    model_dir: str | Path | None,
    store: Store,
    progress: Progress | None,
) -> _Tracked:
    """Decode the crop at ``size``, write each frame as JPEG, track the face and segment the person."""
    plate_step = max(1, math.ceil(expected_frames / MAX_PLATE_FRAMES))
    valid = crop_valid_mask(box, frame_size, size)  # black padding is never "person"
    builder = TrackBuilder()
    bits: list[np.ndarray] = []
    plate_frames: list[np.ndarray] = []
    plate_person: list[np.ndarray] = []
    with FaceTracker(model_dir, store=store) as tracker, PersonSegmenter(model_dir, store=store) as segmenter:
        for t, rgb in enumerate(media.read_frames(video, crop=box, size=size)):
            ts = t * 1000 // FPS
            cv2.imwrite(str(images_dir / f"{t:05d}.jpg"), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            builder.add(tracker.detect(rgb, ts))
            person = (segmenter.segment(rgb, ts) > 0.5) & valid
            bits.append(np.packbits(person))
            if t % plate_step == 0:
                plate_frames.append(rgb.copy())
                plate_person.append(person)
            _report(progress, "tracking the face", t + 1, expected_frames)
    return _Tracked(builder.build(), bits, plate_frames, plate_person)


def _compute_audio(video: Path, num_frames: int, *, kind: str, hubert: str | None, device: str, store: Store):
    """``(audio [N] float32 16 kHz, AudioFeatures)`` for the video's sound track."""
    from .audio import compute_audio_features, load_audio

    audio = load_audio(video)
    feats = compute_audio_features(
        audio, num_frames=num_frames, kind=kind, hubert=hubert, device=device, store_dir=store.third_party_dir
    )
    return audio, feats


def _swap_in(new_dir: Path, final_dir: Path) -> None:
    """Replace ``final_dir`` by ``new_dir`` (two renames; the old folder is deleted afterwards)."""
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final_dir, old)
    os.replace(new_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def preprocess_video(
    video: Path,
    *,
    store: Store,
    name: str | None = None,
    size: int = 512,
    audio_features: str = "auto",
    hubert: str | None = None,
    model_dir: str | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
) -> PreprocessResult:
    """Turn a talking video into the identity dataset ``name`` in ``store``.

    Args:
        video: the person talking, with sound, at least 2 s (resampled to 25 fps).
        store: the artifact store to write into.
        name: identity name; default the file name's stem.
        size: side in pixels of the stored square frames.
        audio_features: ``"auto"``, ``"hubert"``, ``"mel"`` (see :mod:`emogene_cli.audio`).
        hubert: explicit HuBERT directory or hub id.
        model_dir: folder (or file) with the MediaPipe model files; see
            :func:`~emogene_cli.modelfiles.resolve_model_file`.
        device: torch device for HuBERT.
        progress: called as ``progress(stage_label, done, total)`` during the long loops.

    Returns:
        :class:`PreprocessResult`. The dataset holds ``landmarks [T,478,3]`` (crop pixels at
        ``size``), ``face_found [T]`` uint8, ``blendshapes [T,52]``, ``mp_transform [T,4,4]``,
        ``poses [T,4,4]``, ``mean_shape [478,3]``, ``canonical [T,478,3]``, ``motion [T,68,3]``,
        ``audio_features [2T,D]``, ``f0 [T]``, ``audio [N]`` (16 kHz), ``crop_box [4]`` int32 and
        ``iod []`` (float32 unless noted). An earlier dataset of the same name stays intact
        until the new one is complete.

    Raises:
        EmogeneError: invalid name (or a file stem that is not one, without ``name``).
        NotFoundError: the video or a model file does not exist.
        InputError: unreadable media, an image or an audio file instead of a video, no video
            stream, no audio track, shorter than 2 s,
            no face, or a face in fewer than 90 % of the frames.
    """
    video = Path(video)
    name, info = _check_input(video, name)
    if size < 32:
        raise EmogeneError(f"frame size {size} is too small (use at least 32 pixels)", path=video)
    params = {
        "video": str(video), "name": name, "size": size, "audio_features": audio_features,
        "hubert": hubert, "model_dir": model_dir, "device": device,
    }

    box = find_crop_box(video, info, model_dir=model_dir, store=store, progress=progress)

    ident_dir = store.identity_dir(name)
    ident_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".frames.", suffix=".tmp", dir=ident_dir))
    tmp_dataset = ident_dir / f".dataset.{uuid.uuid4().hex[:8]}.tmp.safetensors"
    try:
        (work / "images").mkdir()
        (work / "masks").mkdir()
        expected = max(1, round(info.duration * FPS))
        tracked = _track_crop(
            video, box, (info.width, info.height), size, work / "images",
            expected_frames=expected, model_dir=model_dir, store=store, progress=progress,
        )
        track = tracked.track
        T = len(track.found)
        if T < MIN_SECONDS * FPS:
            raise InputError(
                f"clip too short to fit ({T / FPS:.1f} s of video; need at least {MIN_SECONDS:g} s)", path=video
            )
        frac = track.found_fraction
        if frac < MIN_FACE_FRACTION:
            raise InputError(
                f"a face was found in only {frac:.0%} of frames (need {MIN_FACE_FRACTION:.0%})", path=video
            )

        _report(progress, "audio features", 0, 1)
        audio, feats = _compute_audio(video, T, kind=audio_features, hubert=hubert, device=device, store=store)
        _report(progress, "audio features", 1, 1)

        landmarks = track.landmarks
        mean = geometry.mean_shape(landmarks)
        poses = geometry.estimate_poses(landmarks, mean)
        canonical = geometry.to_canonical(landmarks, poses)
        iod = geometry.interocular_distance(mean)
        motion = geometry.motion68(canonical, mean, iod)

        for t in range(T):
            person = np.unpackbits(tracked.person_bits[t], count=size * size).reshape(size, size).astype(bool)
            cv2.imwrite(str(work / "masks" / f"{t:05d}.png"), split_head_torso(person, landmarks[t]))
            _report(progress, "head and torso masks", t + 1, T)

        plate = background_plate(
            np.stack(tracked.plate_frames),
            np.stack(tracked.plate_person),
            dilate_px=max(1, size // 32),
            inpaint_radius=max(3, size // 64),
            progress=lambda done, total: _report(progress, "background plate", done, total),
        )
        cv2.imwrite(str(work / "background.png"), plate[:, :, ::-1])

        tensors = {
            "landmarks": landmarks.astype(np.float32),
            "face_found": track.found.astype(np.uint8),
            "blendshapes": track.blendshapes.astype(np.float32),
            "mp_transform": track.transforms.astype(np.float32),
            "poses": poses.astype(np.float32),
            "mean_shape": mean.astype(np.float32),
            "canonical": canonical.astype(np.float32),
            "motion": motion.astype(np.float32),
            "audio_features": np.asarray(feats.features, dtype=np.float32),
            "f0": np.asarray(feats.f0, dtype=np.float32),
            "audio": np.asarray(audio, dtype=np.float32),
            "crop_box": np.asarray(box, dtype=np.int32),
            "iod": np.asarray(iod, dtype=np.float32),
        }
        extra = {
            "fps": str(FPS), "size": str(size), "source": str(video.resolve()), "iod": repr(iod),
            "frames": str(T), "face_found_fraction": f"{frac:.4f}",
            "blendshape_names": json.dumps(list(BLENDSHAPE_NAMES)),
        }
        save_artifact(tmp_dataset, tensors, producer="preprocess", params=params, feature_kind=feats.kind, extra=extra)
        frames_dir = store.frames_dir(name)
        with held():  # frames and dataset are replaced together, a signal waits for both
            _swap_in(work, frames_dir)
            os.replace(tmp_dataset, store.dataset_path(name))
            note_kept("dataset", f"identity dataset '{name}'", store.dataset_path(name), then="complete")
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
        tmp_dataset.unlink(missing_ok=True)
        if not any(ident_dir.iterdir()):
            ident_dir.rmdir()  # a first run that failed leaves no empty identity folder

    return PreprocessResult(
        name=name,
        frames=T,
        seconds=T / FPS,
        face_found_fraction=frac,
        crop_box=tuple(int(v) for v in box),
        size=size,
        feature_kind=feats.kind,
        paths={
            "dataset": store.dataset_path(name),
            "frames": frames_dir,
            "images": frames_dir / "images",
            "masks": frames_dir / "masks",
            "background": frames_dir / "background.png",
        },
        feature_note=getattr(feats, "note", ""),
    )


# --------------------------------------------------------------------------------------
# loading


_DATASET_KEYS = (
    "landmarks", "face_found", "blendshapes", "mp_transform", "poses", "mean_shape", "canonical",
    "motion", "audio_features", "f0", "audio", "crop_box", "iod",
)


def _read_image(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise MismatchError("cannot read image of the identity dataset; re-run preprocess", path=path)
    return img


def load_identity(store: Store, name: str, size: int | None = None, *, with_images: bool = True) -> IdentityData:
    """Load a preprocessed identity, optionally resized to another square ``size``.

    With ``with_images=False`` only the background plate is read; ``images`` and ``labels``
    are then empty ``[0, size, size, ...]`` arrays (what ``speak`` needs is the plate and poses).

    Resizing uses ``cv2.INTER_AREA`` for images and the plate and ``INTER_NEAREST`` for labels;
    landmarks and poses are scaled by ``f = size / stored size`` (``pose[:3, :] *= f``: both
    ``sR`` and ``t``); mean shape, canonical landmarks, motion and iod are unchanged.

    Raises:
        NotFoundError: the identity was never preprocessed, or its frames folder is missing.
        MismatchError: an unreadable dataset or images that do not match it.
    """
    art = load_artifact(store.require_dataset(name), what="identity dataset")
    missing = [k for k in _DATASET_KEYS if k not in art.tensors]
    if missing:
        raise MismatchError(f"identity dataset lacks {', '.join(missing)}; re-run preprocess", path=art.path)
    tens = art.tensors
    T = len(tens["landmarks"])
    frames_dir = store.frames_dir(name)
    image_files = sorted((frames_dir / "images").glob("*.jpg"))
    mask_files = sorted((frames_dir / "masks").glob("*.png"))
    if not (frames_dir / "background.png").is_file():
        raise NotFoundError(f"frames of identity '{name}' are missing; re-run preprocess", path=frames_dir)
    if len(image_files) != T or len(mask_files) != T:
        raise MismatchError(
            f"frames folder has {len(image_files)} images and {len(mask_files)} masks but the dataset has {T} frames; re-run preprocess",
            path=frames_dir,
        )
    stored = int(art.metadata.get("size", 0)) or _read_image(image_files[0], cv2.IMREAD_COLOR).shape[0]
    out = size or stored
    resize = out != stored

    def load_rgb(path: Path) -> np.ndarray:
        img = _read_image(path, cv2.IMREAD_COLOR)[:, :, ::-1]
        return cv2.resize(img, (out, out), interpolation=cv2.INTER_AREA) if resize else np.ascontiguousarray(img)

    def load_labels(path: Path) -> np.ndarray:
        lab = _read_image(path, cv2.IMREAD_UNCHANGED)
        return cv2.resize(lab, (out, out), interpolation=cv2.INTER_NEAREST) if resize else lab

    if with_images:
        images = np.stack([load_rgb(p) for p in image_files])
        labels = np.stack([load_labels(p) for p in mask_files])
    else:
        images = np.zeros((0, out, out, 3), np.uint8)
        labels = np.zeros((0, out, out), np.uint8)
    background = load_rgb(frames_dir / "background.png")

    f = out / stored
    landmarks = tens["landmarks"].astype(np.float32) * np.float32(f)
    poses = tens["poses"].astype(np.float32).copy()
    poses[:, :3, :] *= np.float32(f)
    return IdentityData(
        name=name,
        landmarks=landmarks,
        face_found=tens["face_found"].astype(bool),
        blendshapes=tens["blendshapes"],
        mp_transform=tens["mp_transform"],
        poses=poses,
        mean_shape=tens["mean_shape"],
        canonical=tens["canonical"],
        motion=tens["motion"],
        audio_features=tens["audio_features"],
        f0=tens["f0"],
        audio=tens["audio"],
        crop_box=tens["crop_box"],
        iod=float(np.asarray(tens["iod"]).reshape(-1)[0]),
        images=images,
        labels=labels,
        background=background,
        feature_kind=art.feature_kind or "",
        size=out,
        metadata=art.metadata,
    )
