"""Voice activity and loudness per 25 fps video frame (librosa), for idle poses and lip-sync measures."""

from __future__ import annotations

import numpy as np

from .timing import SAMPLES_PER_FRAME, fit_length


def voice_activity(audio: np.ndarray, num_frames: int, *, top_db: float = 35.0, min_silence: float = 0.4) -> np.ndarray:
    """Per-frame voice activity by energy, segment by segment (librosa.effects.split).

    Non-silent intervals are those within ``top_db`` of the utterance's loudest frame;
    silent gaps shorter than ``min_silence`` seconds count as speech (pauses between words).

    Returns:
        ``[T]`` bool, True where someone speaks (frames at 25 fps).
    """
    import librosa

    active = np.zeros(num_frames, dtype=bool)
    if len(audio) == 0 or np.max(np.abs(audio)) < 1e-4:
        return active
    intervals = librosa.effects.split(audio, top_db=top_db, frame_length=1024, hop_length=256)
    for start, end in intervals:
        active[int(start // SAMPLES_PER_FRAME) : int(np.ceil(end / SAMPLES_PER_FRAME))] = True
    # fill short gaps
    gap = int(round(min_silence * 25))
    idx = np.flatnonzero(active)
    if len(idx):
        for a, b in zip(idx[:-1], idx[1:]):
            if 1 < b - a <= gap:
                active[a:b] = True
    return active


def loudness_envelope(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """RMS loudness per video frame (hop 640 samples), ``[T]`` float32."""
    import librosa

    rms = librosa.feature.rms(y=audio.astype(np.float32), frame_length=1280, hop_length=SAMPLES_PER_FRAME, center=True)[0]
    return fit_length(rms.astype(np.float32), num_frames)
