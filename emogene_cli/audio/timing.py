"""The clock that audio and video share (DESIGN.md, data contracts).

Audio is 16 kHz mono, video 25 fps, so one video frame is 640 samples; audio features run at
50 Hz (hop 320 samples), two feature frames per video frame: ``features [2T, D]``.
"""

from __future__ import annotations

import numpy as np

HOP = 320  # samples per feature frame (50 Hz)
SAMPLES_PER_FRAME = 640  # samples per video frame (25 fps)


def frames_for(audio: np.ndarray) -> int:
    """Number of 25 fps video frames covering ``audio`` (16 kHz): ``round(N / 640)``, at least 1."""
    return max(1, int(round(len(audio) / SAMPLES_PER_FRAME)))


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or edge-pad ``x`` along axis 0 to length ``n``."""
    if len(x) >= n:
        return x[:n]
    pad = [(0, n - len(x))] + [(0, 0)] * (x.ndim - 1)
    return np.pad(x, pad, mode="edge") if len(x) else np.zeros((n,) + x.shape[1:], x.dtype)
