"""Audio-video offset of one person's recording, judged by the generic audio-to-motion model.

Many recordings carry their sound a few frames early or late against their picture (encoding,
editing, a camera's audio path): in ``../shared/data/talking`` ``train-a2m`` finds offsets of up
to ±4 frames, and obama_20s's mouth moves 5 frames (200 ms) before the generic model expects it
for the same sound. A person's model fine-tuned on such a clip learns the offset with the mouth,
and under another voice it then moves late (or early) and narrow: a regression to the mean over
the misaligned frames. ``fit-identity`` therefore measures the offset first and trains on the
realigned pairs, as :func:`emogene_cli.motion.generic.sync_offsets` does for the corpus (the
SyncNet-style correction of LRS3 / VoxCeleb2), with the generic model as the judge.

Convention (the same as :func:`emogene_cli.motion.corpus.shift_clip`): offset ``k > 0`` means
the mouth moves ``k`` frames earlier than the sound predicts, so audio frame ``t + k`` is paired
with video frame ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..evaluation import metrics

SYNC_MAX_LAG = 8  # frames searched (±320 ms at 25 fps)
SYNC_MIN_GAIN = 0.05  # correlation an offset must gain over lag 0 to be used


@dataclass(frozen=True)
class SyncOffset:
    """A recording's offset in frames (25 fps) with the correlations that chose it.

    ``corr0``: the judge's mouth opening against the tracked one at lag 0; ``corr``: at ``offset``.
    """

    offset: int = 0
    corr0: float = float("nan")
    corr: float = float("nan")

    @property
    def milliseconds(self) -> int:
        """The offset in milliseconds (40 ms per frame)."""
        return int(self.offset * 40)


def estimate_offset(pred_open: np.ndarray, real_open: np.ndarray, max_lag: int = SYNC_MAX_LAG,
                    min_gain: float = SYNC_MIN_GAIN) -> SyncOffset:
    """The lag at which a predicted mouth opening best matches the tracked one.

    Args:
        pred_open: ``[T]`` mouth opening predicted from the recording's audio (any unit).
        real_open: ``[T]`` mouth opening tracked in its video.
        max_lag: largest offset tried, in frames.
        min_gain: the best lag is used only when its Pearson r beats lag 0 by this much;
            otherwise the offset is 0.

    Returns:
        :class:`SyncOffset`; offset 0 with NaN correlations when either series is constant.
    """
    r0, _ = metrics.lipsync_correlation(pred_open, real_open, max_lag=0)
    r, k = metrics.lipsync_correlation(pred_open, real_open, max_lag=max_lag)
    if not (np.isfinite(r) and np.isfinite(r0)) or r - r0 < min_gain:
        return SyncOffset(0, float(r0), float(r0))
    return SyncOffset(int(k), float(r0), float(r))


def paired_frames(start: int, stop: int, offset: int, total: int) -> tuple[slice, slice]:
    """``(audio frames, video frames)`` that pair video frames ``[start, stop)`` with their sound.

    Video frame ``t`` goes with audio frame ``t + offset``; both ranges are cut to ``[0, total)``
    and to the same length (at least 0).
    """
    v0, v1 = max(start, -offset), min(stop, total - offset)
    v1 = max(v0, v1)
    return slice(v0 + offset, v1 + offset), slice(v0, v1)
