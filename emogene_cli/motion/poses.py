"""Head poses for the output video: the identity's own motion, resting still where audio is silent.

EmoGene's pose sampling: speech stretches take head poses from the identity's video in
order (looping back and forth); silent stretches, found per segment by voice activity,
take poses from *idle segments* of the identity's video — the longest stretches where the
head is nearly still — so that the head rests instead of nodding through silence.
Runs join without jumps (see :func:`sample_poses`) and the result is One-Euro smoothed.

Poses are ``[T, 4, 4]`` camera-from-head similarity matrices (see :mod:`emogene_cli.geometry`).
"""

from __future__ import annotations

import numpy as np

from ..geometry import pose_to_vector, vector_to_pose
from .postprocessing import one_euro_filter


def pose_speed(poses: np.ndarray, face_size: float) -> np.ndarray:
    """Per-frame pose change ``[T]``: rotation (radians) + translation / ``face_size`` (pixels/pixels).

    Frame 0 gets the speed of frame 1.
    """
    vec = pose_to_vector(poses)
    d = np.diff(vec, axis=0)
    speed = np.linalg.norm(d[:, :3], axis=1) + np.linalg.norm(d[:, 3:6], axis=1) / face_size + np.abs(d[:, 6])
    return np.concatenate([speed[:1], speed]) if len(speed) else np.zeros(len(poses))


def find_idle_segments(poses: np.ndarray, face_size: float, *, min_frames: int = 15, quantile: float = 0.35) -> list[tuple[int, int]]:
    """Stretches ``[start, end)`` of at least ``min_frames`` frames where the head is nearly still.

    "Still" is a speed (:func:`pose_speed`, lightly smoothed) below the clip's ``quantile``.
    Returns segments sorted longest first; if none qualifies, the single stillest window of
    ``min_frames`` frames (or the whole clip when shorter).
    """
    T = len(poses)
    speed = pose_speed(poses, face_size)
    if T < 3:
        return [(0, T)]
    smooth = np.convolve(speed, np.ones(5) / 5, mode="same")
    still = smooth <= np.quantile(smooth, quantile)
    segs, start = [], None
    for t, s in enumerate(np.append(still, False)):
        if s and start is None:
            start = t
        elif not s and start is not None:
            if t - start >= min_frames:
                segs.append((start, t))
            start = None
    if not segs:
        w = min(min_frames, T)
        csum = np.concatenate([[0], np.cumsum(smooth)])
        best = int(np.argmin(csum[w:] - csum[:-w])) if T > w else 0
        segs = [(best, best + w)]
    return sorted(segs, key=lambda s: s[0] - s[1])


def _pingpong(start: int, end: int, n: int, offset: int = 0) -> np.ndarray:
    """``n`` frame indices walking forth and back through ``[start, end)``."""
    length = end - start
    if length <= 1:
        return np.full(n, start)
    period = 2 * (length - 1)
    k = (np.arange(n) + offset) % period
    return start + np.where(k < length, k, period - k)


def sample_poses(
    poses: np.ndarray,
    active: np.ndarray,
    *,
    face_size: float,
    idle_segments: list[tuple[int, int]] | None = None,
    settle: float = 10.0,
    seed: int = 0,
) -> np.ndarray:
    """Head poses for an output of ``T = len(active)`` frames.

    Speech runs walk through the identity's poses; a silent run keeps the pose the head
    is in and adds only the small motion of an idle segment (relative to its first frame),
    so the head rests where it is. When speech resumes, the offset between the resting pose
    and the speech poses decays with time constant ``settle`` frames, so no run starts
    with a jump.

    Args:
        poses: ``[N, 4, 4]`` the identity's poses (training frames).
        active: ``[T]`` bool voice activity per output frame.
        face_size: the identity's face size in pixels (scales translation speed).
        idle_segments: from :func:`find_idle_segments` (computed if None).

    Returns:
        ``[T, 4, 4]`` float32.
    """
    T = len(active)
    rng = np.random.default_rng(seed)
    segs = idle_segments or find_idle_segments(poses, face_size)
    vec = pose_to_vector(poses)
    out = np.empty((T, vec.shape[1]))
    speech_pos = int(rng.integers(0, max(1, len(poses))))
    runs, t = [], 0
    while t < T:
        end = t
        while end < T and active[end] == active[t]:
            end += 1
        runs.append((t, end, bool(active[t])))
        t = end
    for i, (a, b, speaking) in enumerate(runs):
        n = b - a
        if speaking:
            raw = vec[_pingpong(0, len(poses), n, offset=speech_pos)]
            speech_pos += n
            decay = np.exp(-np.arange(n) / settle)[:, None]
        else:
            s, e = segs[i % len(segs)]
            raw = vec[_pingpong(s, e, n)]
            decay = np.ones((n, 1))  # rest where the head is
        offset = out[a - 1] - raw[0] if a > 0 else np.zeros(vec.shape[1])
        out[a:b] = raw + decay * offset
    out = one_euro_filter(out, min_cutoff=1.0, beta=0.3)
    return vector_to_pose(out).astype(np.float32)
