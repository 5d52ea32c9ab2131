"""The clip's square crop around the face: one box for the whole video (GeneFace++'s crop step).

Usage::

    box, faces = find_crop_box(Path("talk.mp4"), media.probe("talk.mp4"))   # (x, y, side, side) source pixels

:func:`choose_crop_box` is pure (boxes in, box out); :func:`find_crop_box` scans the video at
5 fps with MediaPipe to get the boxes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from .. import media
from ..errors import InputError
from ..store import Store
from .tracking import track_frames

SCAN_EVERY = 5  # the crop scan looks at every 5th frame (5 fps)
SCAN_FACES = 4  # faces the crop scan looks for in each frame (the largest is the person)

Progress = Callable[[str, int, int], None]


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


def find_crop_box(
    video: Path,
    info: media.MediaInfo,
    *,
    model_dir: str | Path | None = None,
    store: Store | None = None,
    progress: Progress | None = None,
) -> tuple[tuple[int, int, int, int], int]:
    """Scan every 5th frame (5 fps) of ``video`` for the face and choose the clip's crop box.

    Where several people are in view, the face that is largest when faces first appear is
    followed through the scan (see :class:`~emogene_cli.face.tracking.FaceTracker`).

    Returns:
        ``((x, y, side, side), faces_in_view)``: the box in source pixels (see
        :func:`choose_crop_box`) and the most faces seen in one scanned frame.

    Raises:
        InputError: no face in any scanned frame.
    """
    scan_fps = media.FPS / SCAN_EVERY
    total = max(1, math.ceil(info.duration * scan_fps))
    track = track_frames(
        media.read_frames(video, fps=scan_fps),
        fps=scan_fps,
        model_file=model_dir,
        store=store,
        progress=(lambda done: progress("finding the face", done, max(total, done))) if progress else None,
        num_faces=SCAN_FACES,
    )
    if not track.found.any():
        raise InputError("no face found in the video", path=video)
    boxes = np.stack([face_box(lm) for lm in track.landmarks[track.found]])
    return choose_crop_box(boxes, (info.width, info.height)), track.faces_in_view
