"""Per-frame head / torso / background labels and the static background plate.

Usage::

    labels = split_head_torso(person_mask, landmarks)          # [H, W] uint8: 0 / 1 / 2
    plate = background_plate(frames, person_masks, valid)      # [H, W, 3] uint8

GeneFace++'s parsing and background steps, with MediaPipe's person mask
(:class:`~emogene_cli.face.tracking.PersonSegmenter`) and the face landmarks in place of a
face-parsing network. All coordinates are pixels of the cropped frames.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

LABEL_BACKGROUND, LABEL_TORSO, LABEL_HEAD = 0, 1, 2
CHIN_LM478 = 152
FOREHEAD_LM478 = 10


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

    # separable projections of the pixel grid: height above the chin (face heights) and offset
    # across (half-widths), each a column term plus a row term, then scaled in place (the same
    # float64 operations as writing them out over the grid, about 4x faster at 512x512)
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    height = ((xs - chin[0]) * up[0])[None, :] + ((ys - chin[1]) * up[1])[:, None]
    height /= face_height
    offset = ((xs - centre[0]) * across[0])[None, :] + ((ys - centre[1]) * across[1])[:, None]
    np.abs(offset, out=offset)
    offset /= half_width
    allowed = np.clip(height / jaw_level, 0.0, 1.0)  # neck_band at the chin, widening to band at jaw_level
    allowed *= band - neck_band
    allowed += neck_band
    head = person & (height > -neck_offset) & (offset <= allowed)

    hull = cv2.convexHull(np.round(xy).astype(np.int32))
    hull_mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull_mask, hull, 1)
    head |= hull_mask.view(bool)

    labels = person.astype(np.uint8) * np.uint8(LABEL_TORSO)
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
        # [rows, W, 3, K] copied so that each pixel's K samples lie together, sorted in place: integers
        # sort to the same values by any method, and introsort on contiguous rows is 2-3x faster here
        vals = np.ascontiguousarray(np.moveaxis(vals, 0, -1))
        vals.sort(axis=-1)
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
