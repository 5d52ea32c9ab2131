"""Lip sync end to end: drive an identity with another person's real talking video and compare mouths.

The EmoGene paper leaves open whether the emotional deformation harms lip sync; self
reenactment cannot show it (there the head poses and landmarks come from the same real
frames). This measure takes a real talking video of *another* person (``evaluate
--reference VIDEO``), drives the fitted identity with its sound exactly as ``speak`` does
(audio-to-motion, LDM, post-processing, idle poses), renders neutral and each emotion asked
for, re-detects the mouth on the rendered frames, and compares three mouth-opening series
(inner-lip gap over the inter-ocular distance, 25 fps, with the head pose removed:
:func:`emogene_cli.geometry.mouth_opening_pose_free`):

- the reference speaker's real mouth, tracked in the reference video;
- the driving landmarks (what the renderer is asked to draw);
- the rendered mouth (what the video shows).

Per emotion: Pearson r at lag 0 and the best within ±3 frames, with the ratio of standard
deviations (:func:`emogene_cli.evaluation.metrics.mouth_agreement`), for rendered vs speaker,
rendered vs driving (the renderer's fidelity) and driving vs speaker (the audio side).

The driving landmarks are pose-free (canonical), so the tracked mouths are brought into the
head frame before they are compared: measured in the image, a head that nods foreshortens
the lips and the idle head poses would read as mouth movement (obama_20s, a 4 s voice:
r 0.77 in the image, 0.82 pose-free). The image-plane figures stay in ``image_plane``.

A reference whose sound and picture are out of sync compares the rendered mouth with a
shifted one. The reference's own offset is estimated from the neutral driving mouth against
the speaker's, over ±8 frames (:func:`emogene_cli.motion.estimate_offset`, the search
``fit-identity`` runs on the identity's recording with the generic model as the judge; here
the judge is the identity's own model as ``speak`` drives it, which ``fit-identity`` trained on
its realigned recording). It is reported; beyond the ±3 frames of the per-pair search, on a
reference of at least :data:`MIN_OFFSET_FRAMES` frames where the driving mouth matches the
speaker's at r ≥ :data:`MIN_OFFSET_R` at the offset, a note says that the figures against
the speaker measure the recording's offset (outdoor_man_7s in ``talking/``: r -0.02 at lag 0,
0.46 with its sound 6 frames late).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import geometry, media
from ..audio import SAMPLES_PER_FRAME, load_audio
from ..emotions import EMOTIONS
from ..errors import InputError
from ..evaluation import metrics
from ..face import redetect, track_frames
from ..motion import SyncOffset, estimate_offset, mouth_open
from ..render import Speaker, render_clip
from ..store import Store
from .speak import plan_motion

Progress = Callable[[str, int, int], None]
MAX_LAG = 3  # frames searched for the best lag (120 ms)
MIN_OFFSET_FRAMES = 100  # a reference shorter than 4 s gets its offset reported but no warning: too few frames
MIN_OFFSET_R = 0.3  # nor one whose driving mouth follows the speaker's below this at any lag: no judge there


def track_reference(reference: Path, frames: int, store: Store) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference speaker's mouth opening over the first ``frames`` video frames (25 fps).

    Returns:
        ``(mouth [T], mouth_image [T], found [T] bool)``: the opening with the speaker's head
        pose removed (against the speaker's own Procrustes mean shape) and in the image, both
        in inter-ocular distances, T <= ``frames``.

    Raises:
        InputError: no face in the reference video.
    """
    track = track_frames(itertools.islice(media.read_frames(reference), frames), store=store)
    if not track.found.any():
        raise InputError("no face found in the reference video", path=reference)
    mean = geometry.mean_shape(track.landmarks[track.found])
    return (geometry.mouth_opening_pose_free(track.landmarks, mean),
            geometry.mouth_opening_iod(track.landmarks[:, geometry.LM68_FROM_LM478]), track.found)


def _three_pairs(rendered: np.ndarray, driving: np.ndarray, speaker: np.ndarray, rendered_found: np.ndarray,
                 speaker_found: np.ndarray) -> dict[str, dict[str, float]]:
    """:func:`~emogene_cli.evaluation.metrics.mouth_agreement` of rendered vs speaker, rendered vs driving and
    driving vs speaker (``[T]`` mouth openings each; a pair is measured where both of its series were)."""
    return {
        "rendered_vs_speaker": metrics.mouth_agreement(rendered, speaker, valid=rendered_found & speaker_found, max_lag=MAX_LAG),
        "rendered_vs_driving": metrics.mouth_agreement(rendered, driving, valid=rendered_found, max_lag=MAX_LAG),
        "driving_vs_speaker": metrics.mouth_agreement(driving, speaker, valid=speaker_found, max_lag=MAX_LAG),
    }


def reference_lipsync(
    speaker: Speaker,
    reference: str | Path,
    emotions: Sequence[str],
    *,
    store: Store,
    ldm: Any = None,
    seconds: float = 8.0,
    device: str = "cpu",
    seed: int = 0,
    hubert: str | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Drive ``speaker`` with the sound of ``reference`` and measure the rendered mouth (see the module).

    Args:
        speaker: a loaded fitted identity (:func:`emogene_cli.render.load_speaker`), with its
            calibration attached when emotions are rendered.
        reference: a video of another person talking, with sound.
        emotions: the emotions to render; ``neutral`` is always measured first.
        ldm: the landmark deformation model (None: only neutral is rendered).
        seconds: how much of the reference is used (from its start).

    Returns:
        ``(figures, series)``: figures ``{"reference", "frames", "seconds",
        "face_found_reference", "per_emotion": {emotion: {"rendered_vs_speaker",
        "rendered_vs_driving", "driving_vs_speaker": mouth_agreement(...),
        "face_found_rendered", "image_plane": {"rendered_vs_speaker", "rendered_vs_driving", "driving_vs_speaker"}}},
        "reference_offset": reference_offset_figures(...), "note"}``, and ``"skipped"`` when emotions
        were asked without an ``ldm``; series ``{"speaker": [T], emotion: {"driving", "rendered"}}``
        for the plot.

    Raises:
        NotFoundError / InputError: the reference is missing, unreadable, has no sound or no face.
    """
    reference = Path(reference)
    info = media.require_video(reference, audio_hint="--reference needs a video of a person talking, with sound")
    if not info.has_audio:
        raise InputError("no audio track: --reference needs a video of a person talking, with sound", path=reference)
    frames = max(3, int(round(seconds * media.FPS)))
    audio = load_audio(reference)[: frames * SAMPLES_PER_FRAME]
    speaker_mouth, speaker_image, speaker_found = track_reference(reference, frames, store)
    T = min(len(speaker_mouth), len(audio) // SAMPLES_PER_FRAME)
    audio = audio[: T * SAMPLES_PER_FRAME]
    speaker_mouth, speaker_image, speaker_found = speaker_mouth[:T], speaker_image[:T], speaker_found[:T]
    mean68 = speaker.mean_shape[geometry.LM68_FROM_LM478]
    chosen = ["neutral"] + [e for e in emotions if e != "neutral" and ldm is not None]
    per: dict[str, Any] = {}
    series: dict[str, Any] = {"speaker": speaker_mouth}
    for k, emotion in enumerate(chosen):
        plan = plan_motion(speaker, audio, emotion=emotion, ldm=ldm, seed=seed, hubert=hubert, store_dir=store.third_party_dir)
        n = min(T, len(plan.motion))
        driving = mouth_open(plan.motion68[:n], mean68, speaker.iod)
        rendered_frames = render_clip(
            speaker, plan.poses[:n], plan.motion[:n], device,
            code_motion=None if plan.code_motion is None else plan.code_motion[:n],
            progress=(lambda d, m, e=emotion: progress(f"reference lip sync: {e}", d, m)) if progress else None,
        )
        track = redetect(rendered_frames, store)
        rendered = geometry.mouth_opening_pose_free(track.landmarks, speaker.mean_shape)
        rendered_image = geometry.mouth_opening_iod(track.landmarks[:, geometry.LM68_FROM_LM478])
        per[emotion] = {
            **_three_pairs(rendered, driving, speaker_mouth[:n], track.found, speaker_found[:n]),
            "face_found_rendered": track.found_fraction,
            "image_plane": _three_pairs(rendered_image, driving, speaker_image[:n], track.found, speaker_found[:n]),
        }
        if speaker.emotion_gain is not None and emotion != "neutral":
            per[emotion]["emotion_gain"] = float(speaker.emotion_gain[EMOTIONS.index(emotion)])
        series[emotion] = {"driving": driving, "rendered": rendered}
        if progress:
            progress("reference lip sync", k + 1, len(chosen))
    figures = {
        "reference": str(reference), "frames": int(T), "seconds": T / media.FPS,
        "face_found_reference": float(speaker_found.mean()), "per_emotion": per,
        "note": ("mouth opening = inner-lip gap / inter-ocular distance with the head pose removed (image_plane: "
                 "measured in the image); the identity is driven by the reference's sound "
                 "as speak does (its own idle head poses); r at lag 0 and best within ±3 frames (positive lag: the first "
                 "series moves later); std_ratio = std(first) / std(second)"),
    }
    # the reference recording's own audio-video offset, judged by the neutral driving mouth
    neutral = series["neutral"]["driving"]
    n = len(neutral)
    offset = estimate_offset(neutral, np.where(speaker_found[:n], speaker_mouth[:n], np.nanmean(speaker_mouth[:n])))
    figures["reference_offset"] = reference_offset_figures(offset, frames=n)
    if ldm is None and any(e != "neutral" for e in emotions):
        figures["skipped"] = "no landmark deformation model: neutral only"
    return figures, series


def reference_offset_figures(offset: SyncOffset, *, frames: int) -> dict[str, Any]:
    """The reference recording's audio-video offset as reported, with a note when it is out of sync.

    Args:
        offset: :class:`emogene_cli.motion.SyncOffset` of the neutral driving mouth against the
            speaker's (positive: the sound comes later than the picture).
        frames: how many frames it was measured on.

    Returns:
        ``{"frames", "ms", "r_lag0", "r_at_offset"}``, plus ``"note"`` when ``|frames|`` exceeds
        :data:`MAX_LAG` (the lags searched per pair), on at least :data:`MIN_OFFSET_FRAMES` frames,
        and the driving mouth matches the speaker's at r ≥ :data:`MIN_OFFSET_R` at that offset (below,
        it follows the speaker nowhere and cannot judge).
    """
    out = {"frames": offset.offset, "ms": offset.milliseconds, "r_lag0": offset.corr0, "r_at_offset": offset.corr}
    if abs(offset.offset) > MAX_LAG and frames >= MIN_OFFSET_FRAMES and offset.corr >= MIN_OFFSET_R:
        where = "behind" if offset.offset > 0 else "ahead of"
        out["note"] = (f"the reference's sound is {abs(offset.offset)} frames ({abs(offset.milliseconds)} ms) {where} "
                       f"its picture (driving vs speaker mouth r {offset.corr:.2f} at {offset.offset:+d}, "
                       f"{offset.corr0:.2f} at 0); the figures against the speaker measure that gap, not the lip sync; "
                       "use an in-sync recording")
    return out
