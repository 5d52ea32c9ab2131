"""Face landmarks and person masks: the one MediaPipe landmark extractor and segmenter.

Usage::

    with FaceTracker() as tracker:                       # face_landmarker.task, VIDEO mode
        face = tracker.detect(rgb, timestamp_ms=0)        # FaceResult or None
    track = track_frames(media.read_frames("clip.mp4"))   # TrackResult over a whole clip

Landmarks are MediaPipe Face Landmarker's 478 points in **pixels of the image given**:
``x = nx * W``, ``y = ny * H``, ``z = nz * W`` (see :mod:`emogene_cli.geometry`). Blendshapes are
the 52 coefficients in :data:`BLENDSHAPE_NAMES` order; the transform is MediaPipe's 4x4 facial
transformation matrix (canonical face model, centimetres, to camera).

The MediaPipe tasks are always closed explicitly (use the classes as context managers):
their own ``__del__`` fails when run at interpreter exit.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import InputError
from ..modelfiles import resolve_model_file
from ..store import Store

# Quieten MediaPipe's C++ logging; mediapipe itself is imported lazily, after this line ran.
os.environ.setdefault("GLOG_minloglevel", "2")

FACE_MODEL_FILE = "face_landmarker.task"
SEGMENTER_MODEL_FILE = "selfie_segmentation.tflite"
NUM_LANDMARKS = 478

#: The 52 blendshape names in MediaPipe's output order (index 0 is ``_neutral``).
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)


@dataclass
class FaceResult:
    """One detected face.

    Attributes:
        landmarks: ``[478, 3]`` float32, pixels of the input image (z scaled like x).
        blendshapes: ``[52]`` float32 in [0, 1], :data:`BLENDSHAPE_NAMES` order.
        transform: ``[4, 4]`` float32 MediaPipe facial transformation matrix.
    """

    landmarks: np.ndarray
    blendshapes: np.ndarray
    transform: np.ndarray


@dataclass
class TrackResult:
    """Per-frame face tracking of a clip (T frames); frames without a face are interpolated.

    Attributes:
        landmarks: ``[T, 478, 3]`` float32 pixels.
        blendshapes: ``[T, 52]`` float32.
        transforms: ``[T, 4, 4]`` float32.
        found: ``[T]`` bool, True where MediaPipe found the face (False: filled in).
        faces_in_view: the most faces seen in one frame (see :class:`FaceTracker`'s
            ``num_faces``; with several, the tracked one is the largest at first sight).
    """

    landmarks: np.ndarray
    blendshapes: np.ndarray
    transforms: np.ndarray
    found: np.ndarray
    faces_in_view: int = 1

    @property
    def found_fraction(self) -> float:
        """Fraction of frames in which a face was found (0 for an empty clip)."""
        return float(self.found.mean()) if len(self.found) else 0.0


def _mp_image(rgb: np.ndarray):
    import mediapipe as mp

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an [H, W, 3] uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (``EMOGENE_DEBUG=1`` keeps it).

    MediaPipe's C++ graph writes absl/glog lines straight to fd 2 when a task is built and
    first run; Python-level errors are still raised and reported normally.
    """
    if os.environ.get("EMOGENE_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _create_task(factory: Callable, options, model_path: Path):
    """Create a MediaPipe task; a model file MediaPipe cannot load becomes an InputError."""
    try:
        with native_stderr_silenced():
            return factory(options)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"cannot load MediaPipe model ({exc})", path=model_path) from exc


class _MediaPipeTask:
    """A MediaPipe task held open until :meth:`close` or the end of a ``with`` block.

    MediaPipe's own ``__del__`` fails at interpreter exit, so every task is closed explicitly.
    """

    _task = None

    def _open_task(self):
        """The task; RuntimeError once closed."""
        if self._task is None:
            raise RuntimeError(f"{type(self).__name__} is closed")
        return self._task

    def close(self) -> None:
        """Release the MediaPipe task (idempotent)."""
        if self._task is not None:
            self._task.close()
            self._task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FaceTracker(_MediaPipeTask):
    """MediaPipe Face Landmarker in VIDEO mode (one face tracked, blendshapes and transform on).

    With ``num_faces`` > 1 it looks for several faces and follows one: the largest when it
    first sees faces, then in each frame the one nearest to where that face last was.
    ``faces_in_view`` counts the most faces seen in one frame.

    Args:
        model_file: ``face_landmarker.task`` or a folder holding it; None to resolve it with
            :func:`~emogene_cli.modelfiles.resolve_model_file`.
        store: the store used to resolve/cache the model file.
        min_confidence: minimum detection / presence / tracking confidence.
        num_faces: how many faces MediaPipe looks for in each frame.

    Raises:
        NotFoundError: the model file cannot be found.
        InputError: MediaPipe cannot load it.
    """

    def __init__(
        self,
        model_file: str | Path | None = None,
        *,
        store: Store | None = None,
        min_confidence: float = 0.5,
        num_faces: int = 1,
    ) -> None:
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        self.model_path = resolve_model_file(FACE_MODEL_FILE, model_file, store)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=num_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._task = _create_task(vision.FaceLandmarker.create_from_options, options, self.model_path)
        self.faces_in_view = 0
        self._last_centre: np.ndarray | None = None

    def detect(self, rgb: np.ndarray, timestamp_ms: int) -> FaceResult | None:
        """Landmarks of the face in one video frame, or None if there is no face.

        Args:
            rgb: ``[H, W, 3]`` uint8 RGB frame.
            timestamp_ms: the frame's time; must increase from call to call.
        """
        task = self._open_task()
        h, w = rgb.shape[:2]
        if not getattr(self, "_ran", False):  # the first run initialises the graph, noisily
            with native_stderr_silenced():
                result = task.detect_for_video(_mp_image(rgb), int(timestamp_ms))
            self._ran = True
        else:
            result = task.detect_for_video(_mp_image(rgb), int(timestamp_ms))
        if not result.face_landmarks:
            return None
        faces = [np.array([(p.x, p.y, p.z) for p in f], dtype=np.float32) * np.array([w, h, w], dtype=np.float32)
                 for f in result.face_landmarks]
        self.faces_in_view = max(self.faces_in_view, len(faces))
        k = self._follow(faces)
        lms = faces[k]
        blend = np.zeros(len(BLENDSHAPE_NAMES), dtype=np.float32)
        if len(result.face_blendshapes) > k:
            scores = [c.score for c in result.face_blendshapes[k]]
            blend[: len(scores)] = scores[: len(blend)]
        transform = np.eye(4, dtype=np.float32)
        if len(result.facial_transformation_matrixes) > k:
            transform = np.asarray(result.facial_transformation_matrixes[k], dtype=np.float32).reshape(4, 4)
        return FaceResult(landmarks=lms, blendshapes=blend, transform=transform)


    def _follow(self, faces: list[np.ndarray]) -> int:
        """Index of the face to track among ``faces`` (``[478, 3]`` pixels each); see the class."""
        centres = np.stack([f[:, :2].mean(0) for f in faces])
        if self._last_centre is None:
            extents = [float(np.ptp(f[:, :2], axis=0).max()) for f in faces]
            k = int(np.argmax(extents))
        else:
            k = int(np.argmin(np.linalg.norm(centres - self._last_centre, axis=1)))
        self._last_centre = centres[k]
        return k


class PersonSegmenter(_MediaPipeTask):
    """MediaPipe selfie segmentation (Image Segmenter, VIDEO mode): person probability per pixel.

    Args:
        model_file: ``selfie_segmentation.tflite`` or a folder holding it; None to resolve it.
        store: the store used to resolve/cache the model file.

    Raises:
        NotFoundError: the model file cannot be found.
        InputError: MediaPipe cannot load it.
    """

    def __init__(self, model_file: str | Path | None = None, *, store: Store | None = None) -> None:
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        self.model_path = resolve_model_file(SEGMENTER_MODEL_FILE, model_file, store)
        options = vision.ImageSegmenterOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO,
            output_confidence_masks=True,
            output_category_mask=False,
        )
        self._task = _create_task(vision.ImageSegmenter.create_from_options, options, self.model_path)

    def segment(self, rgb: np.ndarray, timestamp_ms: int) -> np.ndarray:
        """Person probability of each pixel of ``rgb`` (``[H, W, 3]`` uint8): ``[H, W]`` float32 in [0, 1]."""
        h, w = rgb.shape[:2]
        result = self._open_task().segment_for_video(_mp_image(rgb), int(timestamp_ms))
        if not result.confidence_masks:
            return np.zeros((h, w), dtype=np.float32)
        mask = np.array(result.confidence_masks[0].numpy_view(), dtype=np.float32)  # copy out of the buffer
        return np.clip(mask.reshape(h, w), 0.0, 1.0)


def fill_missing(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill the frames where ``found`` is False by linear interpolation over time.

    Frames between two found frames get the linear blend of those neighbours; frames before
    the first / after the last found frame copy the nearest found one. With no found frame
    the values are returned unchanged.

    Args:
        values: ``[T, ...]`` per-frame values.
        found: ``[T]`` bool.

    Returns:
        ``[T, ...]`` array of ``values``' dtype (a copy).
    """
    values = np.array(values, copy=True)
    found = np.asarray(found, dtype=bool)
    known = np.flatnonzero(found)
    missing = np.flatnonzero(~found)
    if len(known) == 0 or len(missing) == 0:
        return values
    flat = values.reshape(len(values), -1)
    # index of the last found frame at or before each missing frame, and the next one after
    right = np.searchsorted(known, missing)
    lo = known[np.clip(right - 1, 0, len(known) - 1)]
    hi = known[np.clip(right, 0, len(known) - 1)]
    span = np.maximum(hi - lo, 1)
    w = np.clip((missing - lo) / span, 0.0, 1.0)[:, None]
    filled = (1.0 - w) * flat[lo].astype(np.float64) + w * flat[hi].astype(np.float64)
    flat[missing] = filled.astype(values.dtype)
    return flat.reshape(values.shape)


class TrackBuilder:
    """Collects per-frame detections into a :class:`TrackResult` (gaps filled at the end).

    Usage::

        builder = TrackBuilder()
        for t, rgb in enumerate(frames):
            builder.add(tracker.detect(rgb, t * 40))
        track = builder.build()
    """

    def __init__(self) -> None:
        self._landmarks: list[np.ndarray] = []
        self._blendshapes: list[np.ndarray] = []
        self._transforms: list[np.ndarray] = []
        self._found: list[bool] = []

    def __len__(self) -> int:
        return len(self._found)

    def add(self, face: FaceResult | None) -> None:
        """Append one frame's detection (None: no face in that frame)."""
        self._found.append(face is not None)
        if face is None:
            self._landmarks.append(np.zeros((NUM_LANDMARKS, 3), np.float32))
            self._blendshapes.append(np.zeros(len(BLENDSHAPE_NAMES), np.float32))
            self._transforms.append(np.eye(4, dtype=np.float32))
        else:
            self._landmarks.append(face.landmarks)
            self._blendshapes.append(face.blendshapes)
            self._transforms.append(face.transform)

    def build(self) -> TrackResult:
        """The :class:`TrackResult` of the frames added so far; missing frames via :func:`fill_missing`."""
        found = np.array(self._found, dtype=bool)
        if not len(found):
            return TrackResult(
                landmarks=np.zeros((0, NUM_LANDMARKS, 3), np.float32),
                blendshapes=np.zeros((0, len(BLENDSHAPE_NAMES)), np.float32),
                transforms=np.zeros((0, 4, 4), np.float32),
                found=found,
            )
        return TrackResult(
            landmarks=fill_missing(np.stack(self._landmarks), found),
            blendshapes=fill_missing(np.stack(self._blendshapes), found),
            transforms=fill_missing(np.stack(self._transforms), found),
            found=found,
        )


def track_frames(
    frames: Iterable[np.ndarray],
    fps: float = 25,
    *,
    model_file: str | Path | None = None,
    store: Store | None = None,
    progress: Callable[[int], None] | None = None,
    num_faces: int = 1,
) -> TrackResult:
    """Track the face through a sequence of frames with a fresh :class:`FaceTracker`.

    Args:
        frames: ``[H, W, 3]`` uint8 RGB frames (e.g. :func:`emogene_cli.media.read_frames`).
        fps: their frame rate (timestamps are ``i * 1000 / fps`` ms).
        model_file, store: where the face model comes from (see :class:`FaceTracker`).
        progress: called with the number of frames done after each frame.
        num_faces: faces looked for per frame; with several the largest is followed.

    Returns:
        :class:`TrackResult` (``[T, ...]`` arrays); frames without a face are filled by
        :func:`fill_missing` (all zeros / identity if no frame had a face).
    """
    builder = TrackBuilder()
    with FaceTracker(model_file, store=store, num_faces=num_faces) as tracker:
        for i, rgb in enumerate(frames):
            builder.add(tracker.detect(rgb, round(i * 1000.0 / fps)))
            if progress is not None:
                progress(i + 1)
        track = builder.build()
        track.faces_in_view = tracker.faces_in_view
    return track


#: Frames are upscaled to at least this side before MediaPipe looks at them (a 64-pixel
#: face is below what its face detector finds reliably); landmarks are scaled back.
DETECT_SIZE = 256


def redetect(frames: np.ndarray, store: Store, min_size: int = DETECT_SIZE, fps: float = 25) -> TrackResult:
    """Re-detect landmarks and blendshapes on ``[T, H, W, 3]`` uint8 frames (a fresh MediaPipe tracker).

    Frames smaller than ``min_size`` are upscaled (bicubic) for MediaPipe only; the
    landmarks come back in pixels of the frames given (see :func:`track_frames`). ``fps``:
    the frames' rate (a video's 25; 1 for unrelated frames, tracked far apart in time).
    """
    import cv2

    h = frames.shape[1]
    scale = max(1.0, min_size / h)
    side = int(round(h * scale))
    seq = (cv2.resize(f, (side, side), interpolation=cv2.INTER_CUBIC) if scale > 1 else f for f in frames)
    track = track_frames(seq, fps, store=store)
    track.landmarks = (track.landmarks / np.float32(side / h)).astype(np.float32)
    return track


def masked_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Column means of ``[T, K]`` over the valid rows (nan row if none)."""
    valid = np.asarray(valid, dtype=bool)
    return values[valid].mean(0) if valid.any() else np.full(values.shape[1:], np.nan)
