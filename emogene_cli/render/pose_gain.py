"""The renderer's mouth against the head pose: how far the rendered mouth opens at each head pitch.

A renderer fitted on a few hundred frames can tie the look of the mouth to the head pose. In
obama_20s's training frames the inner-lip gap and the head's pitch correlate at -0.48, and
driven by a voice it never heard, his renderer opens the mouth at his most pitched poses about
15 % less than its driving landmarks say, and at his level poses a little more (issue 22). The
head field has no pose input, so the tie lives in its geometry, and its size differs from one
fit of the same recipe to the next.

This calibration measures the tie through the renderer and ``speak`` undoes it:

1. ``CALIBRATION_FRAMES`` training frames whose mouths are open by the identity's 20th to 70th
   percentile are rendered with their own motion in five pitch groups, each frame under the pose
   of another training frame: in each group, the training frames whose pitch lies nearest one of
   the 5, 27.5, 50, 72.5 and 95 % quantiles of the training frames' pitch (so that a group's yaw,
   roll and position vary as the identity's do); the renders are re-tracked with MediaPipe;
2. the log ratio of the rendered to the driving inner-lip gap (pose-free,
   :func:`~emogene_cli.geometry.mouth_opening_pose_free`) of every render is fitted as a straight
   line in the pitch of its pose; a slope less than ``MIN_T`` standard errors from 0 counts as
   no tie (one calibration is a few dozen re-tracked renders, and on a face without a tie
   single groups scatter by ±10 %);
3. :meth:`PoseMouthGain.factors` gives each output frame the inverse of that line at its pitch,
   relative to the median group's pitch (flat beyond the lowest and highest group, clipped to
   ``FACTOR_RANGE``); ``speak`` scales the mouth's motion by it about the closed posture
   (:func:`~emogene_cli.motion.amplify_mouth`, so a closure stays closed) in what drives the
   renderer only: the driving landmarks, and every figure measured against them, stay as planned.

Usage::

    gain = identity_pose_mouth_gain(store, "obama_20s", renderer)   # stored, or measured (~20 s) and saved
    factors = gain.factors(poses)                                    # [T], 1 at the median pitch
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import geometry
from ..dataset import IdentityData, load_identity, split_frames
from ..face import redetect, source_stamp
from ..models.renderer import TalkingHeadRenderer
from ..store import Store, load_artifact, save_artifact

CALIBRATION_FRAMES = 24
PITCH_QUANTILES = (5.0, 27.5, 50.0, 72.5, 95.0)  # % of the training frames' pitch
OPENING_PERCENTILES = (20.0, 70.0)  # the training frames' inner-lip gap: speech-sized openings, not the widest
FACTOR_RANGE = (0.75, 1.5)
MIN_GAP = 0.005  # inter-ocular distances: a rendered gap below this counts as closed and is left out
MIN_FOUND = 0.5  # fraction of the renders at a pose that must be re-tracked with an open mouth
MIN_T = 3.0  # a slope within this many standard errors of 0 counts as no tie
VERSION = "3"


class PoseGainError(ValueError):
    """Too few of a calibration's renders were re-tracked with an open mouth to measure the ratio."""


def head_pitch(poses: np.ndarray) -> np.ndarray:
    """``[..., 4, 4]`` camera-from-head poses -> ``[...]`` pitch in degrees: the x component of the
    head rotation's axis-angle (a nod; positive looks down in the crop's frame)."""
    return np.degrees(geometry.pose_to_vector(np.asarray(poses, dtype=np.float64))[..., 0])


@dataclass
class PoseMouthGain:
    """The rendered mouth's opening over the driving one against the head's pitch.

    Attributes:
        pitch: ``[K]`` degrees, ascending: where the log ratio is given (the mean pitch of the lowest
            and the highest group of calibration poses).
        log_ratio: ``[K]`` log of the rendered over the driving inner-lip gap there, relative to the
            median group's pitch; 0 where the slope was not significant.
        frames: renders per group that the fit came from (the fewest over the groups).
        slope, slope_se: the fitted slope of the log ratio (per degree) and its standard error,
            before the significance test.
    """

    pitch: np.ndarray
    log_ratio: np.ndarray
    frames: int
    slope: float = 0.0
    slope_se: float = 0.0

    def factors(self, poses: np.ndarray) -> np.ndarray:
        """``poses [T, 4, 4]`` -> ``[T]`` float32 mouth factors: ``exp(-log_ratio)`` at each frame's pitch,
        piecewise linear between the calibration poses, flat beyond them, clipped to ``FACTOR_RANGE``."""
        ratio = np.interp(head_pitch(poses), self.pitch, self.log_ratio)
        return np.clip(np.exp(-ratio), *FACTOR_RANGE).astype(np.float32)

    @property
    def tied(self) -> bool:
        """Whether the slope was significant: the factors differ from 1."""
        return bool(np.any(self.log_ratio))

    def end_factors(self) -> tuple[float, float]:
        """The factors at the lowest and the highest calibration pitch (``pitch[0]``, ``pitch[-1]``), as :meth:`factors` gives them."""
        lo, hi = np.clip(np.exp(-self.log_ratio[[0, -1]]), *FACTOR_RANGE)
        return float(lo), float(hi)


def measure_pose_mouth_gain(
    motion: np.ndarray, driving_gap: np.ndarray, poses: np.ndarray,
    render: Callable[[np.ndarray, np.ndarray], np.ndarray], detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    mean_shape: np.ndarray, progress: Callable[[int, int], None] | None = None,
) -> PoseMouthGain:
    """Render ``motion`` in each group of calibration poses and compare the re-tracked mouth with the driving one.

    Args:
        motion: ``[N, 478, 3]`` dense motion (inter-ocular units) of N frames.
        driving_gap: ``[N]`` their inner-lip gaps (inter-ocular distances, pose-free).
        poses: ``[P, N, 4, 4]`` P groups of calibration poses, one per frame (pixels at the renderer's
            resolution), or ``[P, 4, 4]``, one pose per group; P ≥ 2.
        render: ``render(poses [N, 4, 4], motion) -> [N, H, W, 3]`` uint8 frames.
        detect: ``detect(frames) -> (landmarks [N, 478, 3] pixels, found [N] bool)``.
        mean_shape: ``[478, 3]`` the identity's mean shape (head frame).
        progress: ``progress(poses done, poses)``.

    Returns:
        :class:`PoseMouthGain`: the straight line through the renders' log ratios against their
        poses' pitch, relative to the median group's mean pitch, over the groups' range; flat
        (all 0) when the slope lies within ``MIN_T`` standard errors of 0.

    Raises:
        PoseGainError: in some group fewer than ``MIN_FOUND`` of the renders were re-tracked with
            an open mouth.
    """
    driving_gap = np.asarray(driving_gap, dtype=np.float64)
    poses = np.asarray(poses)
    if poses.ndim == 3:
        poses = np.repeat(poses[:, None], len(motion), 1)
    pitches = head_pitch(poses)  # [P, N]
    pitch = pitches.mean(1)
    order = np.argsort(pitch, kind="stable")
    xs, ys, counts = [], [], []
    for p in order:
        frames = render(poses[p], motion)
        landmarks, found = detect(frames)
        gap = geometry.mouth_opening_pose_free(landmarks, mean_shape)
        ok = np.asarray(found, bool) & np.isfinite(gap) & (gap > MIN_GAP) & (driving_gap > MIN_GAP)
        if ok.sum() < MIN_FOUND * len(motion):
            raise PoseGainError(f"{int(ok.sum())} of {len(motion)} renders at pitch {pitch[p]:.1f}° re-tracked with an open mouth")
        xs.append(pitches[p][ok])
        ys.append(np.log(gap[ok] / driving_gap[ok]))
        counts.append(int(ok.sum()))
        if progress is not None:
            progress(len(counts), len(order))
    x, y = np.concatenate(xs), np.concatenate(ys)
    spread = float(np.sum((x - x.mean()) ** 2))
    slope, se = 0.0, float("inf")
    if spread > 1e-9 and len(x) > 2:
        slope, intercept = np.polyfit(x, y, 1)
        se = float(np.sqrt(np.sum((y - intercept - slope * x) ** 2) / (len(x) - 2) / spread))
    use = slope if abs(slope) >= MIN_T * se else 0.0
    ends = pitch[order][[0, -1]]
    centre = pitch[order][len(order) // 2]
    return PoseMouthGain(pitch=ends.astype(np.float32), log_ratio=(use * (ends - centre)).astype(np.float32),
                         frames=min(counts), slope=float(slope), slope_se=se)


def calibration_inputs(data, frames: int = CALIBRATION_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """``(frame indices [N], pose frame indices [P, N])`` of a calibration: N training frames whose
    tracked inner-lip gap lies within ``OPENING_PERCENTILES`` of the training frames' (evenly spread
    over them in time), and for each of ``PITCH_QUANTILES`` the N training frames whose pitch lies
    nearest it (shuffled with a fixed seed, so that no motion always meets the same pose)."""
    train_idx, _ = split_frames(len(data.motion))
    found = np.asarray(data.face_found)[train_idx]
    train_idx = train_idx[found] if found.any() else train_idx
    gap = geometry.mouth_opening_pose_free(data.landmarks[train_idx], data.mean_shape)
    lo, hi = np.nanpercentile(gap, OPENING_PERCENTILES)
    cand = train_idx[(gap >= lo) & (gap <= hi)]
    pick = cand[np.linspace(0, len(cand) - 1, num=min(frames, len(cand))).astype(int)]
    pitch = head_pitch(data.poses[train_idx])
    rng = np.random.default_rng(0)
    pose_idx = np.stack([rng.permutation(train_idx[np.argsort(np.abs(pitch - v), kind="stable")[:len(pick)]])
                         for v in np.percentile(pitch, PITCH_QUANTILES)])
    return pick, pose_idx


def pose_gain_path(store: Store, name: str) -> Path:
    """``identities/NAME/pose_mouth_gain.safetensors``."""
    return store.identity_dir(name) / "pose_mouth_gain.safetensors"


def _stamp(store: Store, name: str, frames: int = CALIBRATION_FRAMES) -> str:
    """What a calibration depends on: this module's version, its frame count, the dataset and the renderer file."""
    return f"{VERSION}:{frames}:{source_stamp(store.dataset_path(name))}:{source_stamp(store.renderer_path(name))}"


def stored_pose_mouth_gain(store: Store, name: str) -> tuple[bool, PoseMouthGain | None]:
    """``(stored, gain)``: whether a calibration was stored for the identity's current dataset and
    renderer, and the gain (None when that calibration found too few tracked renders)."""
    path = pose_gain_path(store, name)
    if not path.is_file() or not store.renderer_path(name).is_file() or not store.dataset_path(name).is_file():
        return False, None
    art = load_artifact(path, what="pose mouth gain")
    if art.metadata.get("calibrated_for") != _stamp(store, name):
        return False, None
    if art.metadata.get("measured") == "no":
        return True, None
    t = art.tensors
    md = art.metadata
    return True, PoseMouthGain(pitch=np.asarray(t["pitch"], np.float32), log_ratio=np.asarray(t["log_ratio"], np.float32),
                               frames=int(md.get("frames", "0")), slope=float(md.get("slope", "0")), slope_se=float(md.get("slope_se", "0")))


def load_pose_mouth_gain(store: Store, name: str) -> PoseMouthGain | None:
    """The identity's stored calibration for its current dataset and renderer, else None."""
    return stored_pose_mouth_gain(store, name)[1]


def calibrate_pose_mouth_gain(store: Store, name: str, renderer: TalkingHeadRenderer, device: str = "cpu",
                              frames: int = CALIBRATION_FRAMES, progress: Callable[..., None] | None = None,
                              data: IdentityData | None = None) -> PoseMouthGain:
    """Measure the identity's calibration (:func:`measure_pose_mouth_gain`) and save it.

    ``frames × 5`` renders at the renderer's resolution, re-tracked (about 20 s at 256x256 on 2 CPU
    cores). Written to ``identities/NAME/pose_mouth_gain.safetensors`` with the stamp of the
    dataset, the renderer file and ``frames`` (:func:`load_pose_mouth_gain` ignores it when any of them changed,
    or when ``frames`` is not ``CALIBRATION_FRAMES``).
    ``progress("mouth vs pose", poses done, poses)``. ``data``: the identity already loaded at the
    renderer's resolution (images not needed), else it is loaded here.

    Raises:
        NotFoundError: the identity was not preprocessed.
        PoseGainError: too few renders re-tracked with an open mouth.
    """
    if data is None:
        data = load_identity(store, name, size=renderer.config.resolution, with_images=False)
    pick, pose_idx = calibration_inputs(data, frames)
    motion = geometry.dense_motion(data.canonical[pick], data.mean_shape, data.iod)
    driving = geometry.mouth_opening_pose_free(data.landmarks[pick], data.mean_shape)

    def render(poses: np.ndarray, dense: np.ndarray) -> np.ndarray:
        return np.stack(list(renderer.render_frames(poses, dense, data.background, device)))

    def detect(rendered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        track = redetect(rendered, store, fps=1)  # frames far apart in time: each is tracked afresh
        return track.landmarks, np.asarray(track.found, bool)

    gain = measure_pose_mouth_gain(motion, driving, data.poses[pose_idx], render, detect, data.mean_shape,
                                   progress=None if progress is None else (lambda done, total: progress("mouth vs pose", done, total)))
    params = {"identity": name, "frames": len(pick), "pose_frames": [[int(i) for i in row] for row in pose_idx],
              "pitch_deg": [round(float(p), 2) for p in gain.pitch], "factor": [round(float(np.exp(-r)), 3) for r in gain.log_ratio],
              "slope_per_deg": round(gain.slope, 5), "slope_se": round(gain.slope_se, 5)}
    save_artifact(pose_gain_path(store, name), {"pitch": gain.pitch, "log_ratio": gain.log_ratio}, producer="pose-mouth-gain",
                  params=params, extra={"calibrated_for": _stamp(store, name, frames), "frames": str(gain.frames),
                                        "slope": repr(gain.slope), "slope_se": repr(gain.slope_se)})
    return gain


def identity_pose_mouth_gain(store: Store, name: str, renderer: TalkingHeadRenderer, device: str = "cpu",
                             on_measure: Callable[[], None] | None = None,
                             progress: Callable[..., None] | None = None,
                             data: IdentityData | None = None) -> PoseMouthGain | None:
    """The stored calibration, else measured once and saved (``on_measure()`` is called first;
    ``data`` as in :func:`calibrate_pose_mouth_gain`).

    None when too few renders were re-tracked (e.g. a renderer trained for seconds): the mouth is
    then rendered without it, and that outcome is stored too, so it is not measured again until
    the dataset or the renderer changes.
    """
    stored, gain = stored_pose_mouth_gain(store, name)
    if stored:
        return gain
    if on_measure is not None:
        on_measure()
    try:
        return calibrate_pose_mouth_gain(store, name, renderer, device, progress=progress, data=data)
    except PoseGainError as e:
        nan = np.full(1, np.nan, np.float32)
        save_artifact(pose_gain_path(store, name), {"pitch": nan, "log_ratio": nan}, producer="pose-mouth-gain",
                      params={"identity": name, "error": str(e)}, extra={"calibrated_for": _stamp(store, name), "measured": "no"})
        return None
