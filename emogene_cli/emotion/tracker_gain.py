"""Tracker-gain calibration: how much of an emotion's face motion MediaPipe reports.

MediaPipe's face mesh is a regressor with a strong shape prior: when the brows of a real face
move 4 px in the image it reports about 2.5 px. Every landmark this project learns from is such
a reading (the MEAD actors' for the landmark deformation model, the identity's own for the
renderer), so the emotional displacement that ``speak`` adds is the *tracked* motion of a real
actor. The renderer moves pixels: driven by the tracked displacement it moves the face by the
tracked amount, and a tracker (or a viewer) sees the attenuation a second time.

The gain depends on the shape of the motion (a local brow bulge is read at ~60 %, the same
brow motion spread over the forehead at ~85 %), so it is measured with the motion that will be
rendered: on a few of the identity's own frames, each emotion's displacement from the landmark
deformation model (lifted to the 478 face-mesh points) is applied with a smooth image warp,
MediaPipe runs again on the warped and on the original frame, and per face region and image
axis the gain is the least-squares ratio of the measured to the applied landmark motion.
``speak`` divides the emotional displacement by it (:func:`apply_gain`), so that a real
actor's tracked motion becomes the pixel motion a tracker reads as that actor's.

    gain = measure_tracker_gain(images, landmarks, poses, iod, patterns, detect)
    gain.per_landmark                      # [478, 3]: x, y per region, z 1
    displacement / gain.per_landmark       # apply_gain
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..dataset import load_identity, split_frames
from ..emotions import EMOTIONS
from ..face import FaceTracker, source_stamp
from ..geometry import LM68_FROM_LM478, apply_lift
from ..store import load_artifact, save_artifact

#: Regions calibrated, as indices of the 68-point scheme; every face-mesh point takes the gain
#: of the region of its nearest 68-point landmark (within ``REGION_RADIUS``), or 1.
REGIONS68: dict[str, np.ndarray] = {
    "brows": np.arange(17, 27),
    "upper_lids": np.array([37, 38, 43, 44]),
    "lower_lids": np.array([40, 41, 46, 47]),
    "mouth_corners": np.array([48, 54, 60, 64]),
    "upper_lip": np.array([49, 50, 51, 52, 53, 61, 62, 63]),
    "lower_lip": np.array([55, 56, 57, 58, 59, 65, 66, 67]),
    "jaw": np.arange(3, 14),
}
REGION_RADIUS = 0.12  # inter-ocular distances
WARP_SIGMA = 0.05  # inter-ocular distances: the blend between landmarks (the renderer's, see models/renderer/deformation.py)
GAIN_RANGE = (0.5, 1.25)  # at most a 2x boost
MIN_MOTION_PX = 0.5  # a region moved less than this (RMS over patterns) keeps gain 1
VERSION = "1"


class NoFaceError(ValueError):
    """No face where a calibration needs one (the identity's frames or its renders); the
    emotion is then rendered uncalibrated (:func:`identity_tracker_gain`,
    :func:`emogene_cli.emotion.identity_emotion_gain`)."""


@dataclass
class TrackerGain:
    """Measured tracker gain.

    ``regions``: ``{region: (gain_x, gain_y)}`` (1.0 where the patterns hardly moved it);
    ``per_landmark [478, 3]``: the gain of each face-mesh point (x, y from its region, z = 1,
    points outside every region 1); ``frames``: how many frames were measured.
    """

    regions: dict[str, tuple[float, float]]
    per_landmark: np.ndarray
    frames: int


def region_of_landmarks(mean_shape: np.ndarray, iod: float) -> np.ndarray:
    """``[478]`` region index per face-mesh point (into ``list(REGIONS68)``), -1 outside all.

    A point belongs to the region of its nearest 68-point landmark (in the mean shape's x, y)
    if that landmark is in a region and closer than ``REGION_RADIUS`` inter-ocular distances.
    """
    pts = np.asarray(mean_shape, np.float64)[:, :2]
    lm68 = pts[LM68_FROM_LM478]
    owner = np.full(68, -1)
    for k, idx in enumerate(REGIONS68.values()):
        owner[idx] = k
    d = np.linalg.norm(pts[:, None] - lm68[None], axis=-1)
    out = owner[d.argmin(1)]
    out[d.min(1) > REGION_RADIUS * iod] = -1
    return out


def blend_field(query: np.ndarray, points: np.ndarray, displacement: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth displacement ``[M, 2]`` at ``query [M, 2]`` from landmark ``points [N, 2]`` moving by ``displacement [N, 2]``.

    A normalised Gaussian blend (``sigma`` pixels) of the landmark displacements that fades to
    zero beyond about three ``sigma`` from every landmark.
    """
    out = np.empty((len(query), 2), np.float32)
    centre = points.mean(0)  # centred coordinates keep the expanded squares exact enough in float32
    p = (points - centre).astype(np.float32)
    p2 = (p * p).sum(1)
    disp = displacement.astype(np.float32)
    scale = np.float32(-1.0 / (2 * sigma * sigma))
    for i in range(0, len(query), 8192):
        q = (query[i : i + 8192] - centre).astype(np.float32)
        # |q - p|^2 = |q|^2 + |p|^2 - 2 q.p, as one matrix product: ten times faster than the broadcast difference
        d2 = q @ (-2.0 * p.T)
        d2 += (q * q).sum(1)[:, None]
        d2 += p2
        np.maximum(d2, 0.0, out=d2)
        w = np.exp(d2 * scale, out=d2)
        out[i : i + 8192] = w @ disp / (w.sum(1, keepdims=True) + np.exp(-4.5))
    return out


def warp_by_landmarks(image: np.ndarray, points: np.ndarray, displacement: np.ndarray, sigma: float) -> np.ndarray:
    """Warp ``image`` so that each landmark moves by its displacement (pixels), smoothly in between.

    The dense displacement is :func:`blend_field`; the image is resampled backwards
    (``out(x) = image(x - d(x))``, exact to first order for smooth small motion).

    Args:
        image: ``[H, W, 3]`` uint8. points: ``[N, 2]`` pixels. displacement: ``[N, 2]`` pixels.
    """
    h, w = image.shape[:2]
    map_x = np.tile(np.arange(w, dtype=np.float32), (h, 1))
    map_y = np.tile(np.arange(h, dtype=np.float32)[:, None], (1, w))
    moving = np.abs(displacement).sum(1) > 1e-3
    if not moving.any():
        return image.copy()
    x0, y0 = np.floor(points[moving].min(0) - 4 * sigma).astype(int)
    x1, y1 = np.ceil(points[moving].max(0) + 4 * sigma).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return image.copy()
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    field = blend_field(np.stack([xs.ravel(), ys.ravel()], 1), points, displacement, sigma)
    map_x[y0:y1, x0:x1] -= field[:, 0].reshape(y1 - y0, x1 - x0)
    map_y[y0:y1, x0:x1] -= field[:, 1].reshape(y1 - y0, x1 - x0)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def measure_tracker_gain(
    images: np.ndarray,
    landmarks: np.ndarray,
    poses: np.ndarray,
    region: np.ndarray,
    patterns: np.ndarray,
    iod: float,
    detect: Callable[[np.ndarray], np.ndarray | None],
    progress: Callable[..., None] | None = None,
) -> TrackerGain:
    """Measure MediaPipe's gain per region and axis for the motion ``patterns`` on real frames.

    For every frame and pattern the frame's landmarks are moved by the pattern (turned from
    the canonical head into the image by the frame's pose) with :func:`warp_by_landmarks`, the
    warped frame is tracked again, and the motion the tracker reports is regressed on the
    motion applied, per region and axis (least squares over frames, patterns and the region's
    points; the unwarped frame's tracking is the reference, so the tracker's bias cancels).

    Args:
        images: ``[N, H, W, 3]`` uint8 RGB frames of the identity (a few suffice; 6-8).
        landmarks: ``[N, 478, 3]`` their tracked landmarks, pixels.
        poses: ``[N, 4, 4]`` camera-from-head poses of those frames (head units to pixels).
        region: ``[478]`` region per point (:func:`region_of_landmarks`).
        patterns: ``[N, P, 478, 3]`` displacements in inter-ocular units of the canonical head,
            e.g. each emotion's lifted displacement for that frame's motion.
        iod: inter-ocular distance of the mean shape (head units).
        detect: ``rgb -> [478, 3] pixels`` or None (no face), e.g. a MediaPipe tracker.
        progress: ``progress(label, done, total)``.

    Returns:
        :class:`TrackerGain`; a region the patterns hardly move (under ``MIN_MOTION_PX`` RMS)
        or whose warps were never tracked keeps gain 1; gains are clipped to ``GAIN_RANGE``.

    Raises:
        NoFaceError: no frame where the unwarped face is tracked.
    """
    names = list(REGIONS68)
    num = np.zeros((len(names), 2))
    den = np.zeros((len(names), 2))
    count = np.zeros(len(names))
    used = 0
    total = len(images) * patterns.shape[1]
    done = 0
    for img, lm, pose, pats in zip(images, landmarks, poses, patterns):
        ref = detect(img)
        if ref is None:
            done += len(pats)
            continue
        used += 1
        pts = lm[:, :2].astype(np.float64)
        sigma = WARP_SIGMA * float(np.linalg.norm(pts[33] - pts[263]))
        for pat in pats:
            disp = ((pat * iod) @ np.asarray(pose)[:3, :3].T)[:, :2]
            applied = blend_field(pts, pts, disp, sigma)
            found = detect(warp_by_landmarks(img, pts, disp, sigma))
            done += 1
            if progress:
                progress("tracker gain", done, total)
            if found is None:
                continue
            measured = found[:, :2] - ref[:, :2]
            for k in range(len(names)):
                sel = region == k
                num[k] += (measured[sel] * applied[sel]).sum(0)
                den[k] += (applied[sel] ** 2).sum(0)
                count[k] += sel.sum()
    if used == 0:
        raise NoFaceError("no face tracked in the calibration frames")
    gains = np.ones((len(names), 2))
    rms = np.sqrt(den / np.maximum(count, 1)[:, None])
    ok = rms >= MIN_MOTION_PX
    gains[ok] = np.clip(num[ok] / den[ok], *GAIN_RANGE)
    per = np.ones((len(region), 3), np.float32)
    inside = region >= 0
    per[inside, :2] = gains[region[inside]]
    return TrackerGain(regions={n: (float(gains[k, 0]), float(gains[k, 1])) for k, n in enumerate(names)},
                       per_landmark=per, frames=used)


def apply_gain(displacement: np.ndarray, gain: np.ndarray | None) -> np.ndarray:
    """Tracked displacement ``[T, 478, 3]`` -> the pixel displacement that tracks as it (``/ gain [478, 3]``)."""
    if gain is None:
        return displacement
    return displacement / np.asarray(gain, np.float32)[None]


# --------------------------------------------------------------------------------------
# the identity's calibration (stored next to its renderer)


def calibration_inputs(data, ldm, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The frames an identity is calibrated on and each emotion's displacement on them.

    Args:
        data: the identity's :class:`~emogene_cli.dataset.IdentityData`.
        ldm: the landmark deformation model.
        frames: how many; evenly spread over the training frames where a face was tracked.

    Returns:
        ``(pick [N], displacement [E, N, 68, 3])``: frame indices and, per emotion of
        :data:`~emogene_cli.emotions.EMOTIONS`, the LDM's displacement for those frames' motion
        (inter-ocular units; zeros for neutral).

    Raises:
        NoFaceError: no training frame had a face.
    """
    import torch

    train_idx, _ = split_frames(len(data.motion))
    train_idx = train_idx[data.face_found[train_idx]]
    if len(train_idx) == 0:
        raise NoFaceError("no face tracked in the identity's training frames")
    pick = train_idx[np.linspace(0, len(train_idx) - 1, num=min(frames, len(train_idx))).astype(int)]
    neutral = EMOTIONS.index("neutral")
    dev = next(ldm.parameters()).device
    with torch.inference_mode():
        motion = torch.from_numpy(data.motion[pick]).float().to(dev)
        disp = np.stack([np.zeros(motion.shape, np.float32) if e == neutral else
                         ldm(motion, torch.full((len(pick),), e, device=dev)).cpu().numpy() for e in range(len(EMOTIONS))])
    return pick, disp


def tracker_gain_path(store, name: str) -> Path:
    """``identities/NAME/tracker_gain.safetensors``."""
    return store.identity_dir(name) / "tracker_gain.safetensors"


def _ldm_stamp(ldm) -> str:
    """Content hash of the LDM's weights and lift: a calibration is valid for one LDM."""
    h = hashlib.sha1(VERSION.encode())
    for k, v in sorted(ldm.state_dict().items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v.detach().cpu().numpy()).tobytes())
    return h.hexdigest()[:16]


def calibration_stamp(store, name: str, ldm, size: int) -> str:
    """What a calibration depends on: the LDM's content, the identity's dataset (its frames) and the size."""

    return f"{_ldm_stamp(ldm)}:{source_stamp(store.dataset_path(name))}:{size}"


def load_tracker_gain(store, name: str, ldm, *, size: int = 256) -> np.ndarray | None:
    """The identity's per-landmark gain ``[478, 3]`` for ``ldm`` at ``size`` pixels, or None when not
    measured for them (or measured on a dataset that was preprocessed again since)."""
    path = tracker_gain_path(store, name)
    if not path.is_file():
        return None
    art = load_artifact(path, what="tracker gain")
    if art.metadata.get("calibrated_for") != calibration_stamp(store, name, ldm, size):
        return None
    return np.asarray(art.tensors["per_landmark"], np.float32)


def identity_tracker_gain(store, name: str, ldm, *, size: int = 256, progress: Callable[..., None] | None = None,
                          on_measure: Callable[[], None] | None = None) -> np.ndarray | None:
    """The identity's gain ``[478, 3]`` for ``ldm``: the stored calibration, else measured once and saved.

    ``on_measure()`` is called before a measurement (e.g. to tell the user, ~30 s). None when
    the measurement finds no face in the chosen frames: the emotion is then rendered as tracked.

    Raises:
        NotFoundError: the identity was not preprocessed.
    """
    gain = load_tracker_gain(store, name, ldm, size=size)
    if gain is not None:
        return gain
    if on_measure is not None:
        on_measure()
    try:
        return calibrate_identity(store, name, ldm, size=size, progress=progress).per_landmark
    except NoFaceError:
        return None


def calibrate_identity(store, name: str, ldm, *, frames: int = 8, size: int = 256,
                       progress: Callable[..., None] | None = None) -> TrackerGain:
    """Measure an identity's tracker gain for the emotions of ``ldm`` and save it.

    Uses ``frames`` of the identity's training frames at ``size`` pixels; the patterns are
    each non-neutral emotion's displacement from ``ldm`` for that frame's motion, lifted to the
    478 points with ``ldm.lift``. Written to ``identities/NAME/tracker_gain.safetensors`` with
    the LDM's content hash, the dataset's stamp and the size (:func:`load_tracker_gain` ignores
    it when any of them changed). About 10 s on 2 CPU cores (obama_20s: 9.8 s, 4.7 of it in :func:`blend_field`).

    Raises:
        NotFoundError: the identity was not preprocessed.
        NoFaceError: no face tracked in the chosen frames.
    """
    data = load_identity(store, name, size=size)
    pick, all_disp = calibration_inputs(data, ldm, frames)
    emotions = [i for i, e in enumerate(EMOTIONS) if e != "neutral"]
    disp = all_disp[emotions].transpose(1, 0, 2, 3)  # [N, P, 68, 3]
    lift = ldm.lift.cpu().numpy()
    patterns = apply_lift(disp.reshape(-1, 68, 3), lift).reshape(len(pick), len(emotions), -1, 3)
    region = region_of_landmarks(data.mean_shape, data.iod)
    with FaceTracker(store=store) as tracker:
        clock = [0]

        def detect(rgb: np.ndarray) -> np.ndarray | None:
            clock[0] += 1000  # far apart in time: each call is tracked afresh
            r = tracker.detect(rgb, clock[0])
            return None if r is None else r.landmarks

        gain = measure_tracker_gain(data.images[pick], data.landmarks[pick], data.poses[pick], region, patterns,
                                    float(data.iod), detect, progress)
    params = {"identity": name, "frames": int(gain.frames), "size": size,
              "regions": {k: [round(x, 4), round(y, 4)] for k, (x, y) in gain.regions.items()}}
    save_artifact(tracker_gain_path(store, name), {"per_landmark": gain.per_landmark}, producer="tracker-gain",
                  params=params, extra={"calibrated_for": calibration_stamp(store, name, ldm, size)})
    return gain
