"""Frames around the renderer: a clip rendered for measuring, driving-landmark images and
labelled grids of several renders.

Usage::

    frames = render_clip(speaker, poses, dense_motion, "cpu")          # [T, H, W, 3] uint8
    images = draw_landmarks(motion68, poses, speaker, 256)          # [T, 256, 256, 3] uint8
    grid = compose_grid(tiles, ["angry", "happy"])                   # tiles side by side, labelled
    for frame in render_grid(speaker, poses, motions, labels, "cpu"): ...
"""

from __future__ import annotations

from typing import Callable, Iterator

import cv2
import numpy as np

from .. import geometry
from .speaker import Speaker


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


def render_clip(speaker: Speaker, poses: np.ndarray, motion: np.ndarray, device: str, *,
                code_motion: np.ndarray | None = None, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``[T, H, W, 3]`` uint8: the identity's renderer on head ``poses [T, 4, 4]`` and dense
    ``motion [T, 478, 3]`` (inter-ocular units; ``code_motion`` for its expression code) over its
    background, every frame held at once, for measuring (``speak`` streams them instead).
    ``progress(done, total)`` after each frame."""
    return np.stack(list(speaker.renderer.render_frames(poses, motion, speaker.background, device, progress=progress,
                                                        code_motion=code_motion)))


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
    :func:`~emogene_cli.emotion.emotional_motion`).

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
