"""Evaluation metrics of talking-head videos: pure numpy functions with known answers.

Usage::

    psnr(real, fake)                                   # dB over [H, W, 3] uint8 frames, inf if identical
    ssim(real, fake)                                   # 0..1 (skimage, RGB)
    box = padded_box(real_lm[:, :2], real.shape)       # face region of the real frame
    psnr(crop(real, box), crop(fake, box))             # face-region PSNR
    landmark_distance(fake68, real68, LM68_MOUTH)      # M-LMD in pixels
    lipsync_correlation(mouth_open, envelope)          # (best Pearson r, lag in frames)
    pose_velocity_acceleration(poses, silent)          # EmoGene's idle-pose table

The figures follow the talking-head literature: PSNR/SSIM of the reconstruction (Wang et al.,
2004, as in GeneFace++, ER-NeRF and EmoGene), landmark distances LMD after Chen et al. (ECCV
2018, "Lip movements generation at a glance") split into the mouth (M-LMD) and the whole
face (F-LMD) as in EAMM/EAT/EmoGene, and head-pose velocity and acceleration during silence
as in EmoGene's idle-pose comparison.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..geometry import LM68_MOUTH, pose_to_vector

__all__ = [
    "EMOTION_BLENDSHAPES",
    "LMD_ALIGNMENTS",
    "blendshape_deltas",
    "largest_changes",
    "crop",
    "landmark_distance",
    "landmark_distance_per_frame",
    "lipsync_correlation",
    "m_lmd",
    "f_lmd",
    "padded_box",
    "pose_velocity_acceleration",
    "psnr",
    "psnr_from_mse",
    "ssim",
]

#: Frame alignments :func:`landmark_distance` knows (see there).
LMD_ALIGNMENTS = ("none", "mean")

#: MediaPipe blendshapes (:data:`emogene_cli.face.BLENDSHAPE_NAMES`) that show each emotion,
#: after the Facial Action Coding System's prototypes (Ekman & Friesen): AU12 lip-corner
#: puller + AU6 cheek raiser (happy), AU4 brow lowerer (angry), AU1 inner brow raiser + AU15
#: lip-corner depressor (sad), AU1+2 brow raisers + AU5 upper-lid raiser + AU26 jaw drop
#: (surprised), AU1 + AU5 + AU20 lip stretcher (fear), AU9 nose wrinkler + AU10 upper-lip
#: raiser (disgusted), unilateral AU12/AU14 dimpler (contempt).
EMOTION_BLENDSHAPES: dict[str, tuple[str, ...]] = {
    "happy": ("mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft", "cheekSquintRight"),
    "angry": ("browDownLeft", "browDownRight"),
    "sad": ("mouthFrownLeft", "mouthFrownRight", "browInnerUp"),
    "surprised": ("browInnerUp", "browOuterUpLeft", "browOuterUpRight", "eyeWideLeft", "eyeWideRight", "jawOpen"),
    "fear": ("browInnerUp", "eyeWideLeft", "eyeWideRight", "mouthStretchLeft", "mouthStretchRight"),
    "disgusted": ("noseSneerLeft", "noseSneerRight", "mouthUpperUpLeft", "mouthUpperUpRight"),
    "contempt": ("mouthDimpleLeft", "mouthDimpleRight", "mouthSmileLeft", "mouthSmileRight"),
}


# --------------------------------------------------------------------------------------
# images


def psnr_from_mse(mse: float, max_val: float = 255.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(max_val^2 / mse)`` in dB.

    Returns ``inf`` for ``mse == 0`` and ``nan`` for a non-finite ``mse``.
    """
    mse = float(mse)
    if not np.isfinite(mse):
        return float("nan")
    if mse <= 0.0:
        return float("inf")
    return float(10.0 * np.log10(max_val * max_val / mse))


def psnr(a: np.ndarray, b: np.ndarray, max_val: float = 255.0, mask: np.ndarray | None = None) -> float:
    """PSNR of two images in dB (``inf`` when identical).

    Args:
        a, b: ``[H, W]`` or ``[H, W, C]`` images on a ``0..max_val`` scale (uint8 by default).
        max_val: the peak value (255 for uint8, 1 for float images in 0..1).
        mask: optional ``[H, W]`` bool; the mean squared error is taken over those pixels only.

    Raises:
        ValueError: shapes differ, or the mask selects no pixel.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ, {a.shape} vs {b.shape}")
    err = (a - b) ** 2
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            raise ValueError("psnr: the mask selects no pixel")
        err = err[mask]
    return psnr_from_mse(err.mean(), max_val)


def ssim(a: np.ndarray, b: np.ndarray, max_val: float = 255.0) -> float:
    """Structural similarity (Wang et al., 2004) of two RGB or grey images, 1 when identical.

    :func:`skimage.metrics.structural_similarity` with a 7x7 uniform window, over the colour
    channels (``channel_axis=-1``) for ``[H, W, 3]`` images; ``data_range = max_val``.
    Images smaller than the window are compared with the largest odd window that fits.

    Raises:
        ValueError: shapes differ or an image is smaller than 3x3.
    """
    from skimage.metrics import structural_similarity

    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ, {a.shape} vs {b.shape}")
    side = min(a.shape[0], a.shape[1])
    if side < 3:
        raise ValueError(f"ssim: image {a.shape} is too small (at least 3x3)")
    win = min(7, side if side % 2 else side - 1)
    channel_axis = -1 if a.ndim == 3 else None
    return float(structural_similarity(a, b, win_size=win, channel_axis=channel_axis, data_range=max_val))


def padded_box(points: np.ndarray, shape: Sequence[int], pad: float = 0.15) -> tuple[int, int, int, int]:
    """The face region: the bounding box of ``points`` grown by ``pad`` x its size on each side.

    Args:
        points: ``[N, 2|3]`` landmarks in pixels (x, y first).
        shape: the image shape ``(H, W, ...)``; the box is clipped to it.
        pad: fraction of the box's width (height) added left and right (top and bottom).

    Returns:
        ``(x0, y0, x1, y1)`` integer pixel bounds, ``x1``/``y1`` exclusive, non-empty.
    """
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    h, w = int(shape[0]), int(shape[1])
    lo, hi = xy.min(0), xy.max(0)
    grow = (hi - lo) * pad
    x0, y0 = np.floor(lo - grow).astype(int)
    x1, y1 = np.ceil(hi + grow).astype(int)
    x0, y0 = int(np.clip(x0, 0, w - 1)), int(np.clip(y0, 0, h - 1))
    x1, y1 = int(np.clip(x1, x0 + 1, w)), int(np.clip(y1, y0 + 1, h))
    return x0, y0, x1, y1


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` for a :func:`padded_box` ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    return np.asarray(image)[y0:y1, x0:x1]


# --------------------------------------------------------------------------------------
# landmarks


def landmark_distance_per_frame(
    pred: np.ndarray, real: np.ndarray, points: Iterable[int] | np.ndarray | None = None, *, align: str = "mean"
) -> np.ndarray:
    """Mean Euclidean distance between corresponding landmarks, per frame, in their units (pixels).

    Only x and y are compared (image-plane distance; MediaPipe's z is a relative depth that
    no 2-D landmark detector of the LMD literature has).

    Alignment (``align``):

    * ``"none"``: raw image positions;
    * ``"mean"``: each frame's evaluated points are centred on their own mean before the
      distance, in both sets (Chen et al., 2018, and the M-LMD/F-LMD implementations that
      follow them): a head that sits a few pixels off does not count, the shape does.

    Args:
        pred, real: ``[T, N, 2|3]`` landmarks (e.g. the 68-point subset, pixels).
        points: indices into N to evaluate (None: all).

    Returns:
        ``[T]`` float64 distances.

    Raises:
        ValueError: shapes differ, or an unknown alignment.
    """
    pred = np.asarray(pred, dtype=np.float64)
    real = np.asarray(real, dtype=np.float64)
    if pred.shape != real.shape or pred.ndim != 3:
        raise ValueError(f"landmark_distance: expected two [T, N, 2|3] arrays of one shape, got {pred.shape} and {real.shape}")
    if align not in LMD_ALIGNMENTS:
        raise ValueError(f"landmark_distance: unknown alignment {align!r} (one of {', '.join(LMD_ALIGNMENTS)})")
    idx = np.arange(pred.shape[1]) if points is None else np.asarray(list(points), dtype=np.int64)
    p, r = pred[:, idx, :2], real[:, idx, :2]
    if align == "mean":
        p = p - p.mean(1, keepdims=True)
        r = r - r.mean(1, keepdims=True)
    return np.linalg.norm(p - r, axis=-1).mean(1)


def landmark_distance(
    pred: np.ndarray, real: np.ndarray, points: Iterable[int] | np.ndarray | None = None, *, align: str = "mean",
    valid: np.ndarray | None = None,
) -> float:
    """Landmark distance (LMD): :func:`landmark_distance_per_frame` averaged over the frames.

    Args:
        valid: optional ``[T]`` bool, frames to average over (e.g. where a face was found in
            both videos); ``nan`` when none is valid.
    """
    d = landmark_distance_per_frame(pred, real, points, align=align)
    if valid is not None:
        d = d[np.asarray(valid, dtype=bool)]
    return float(d.mean()) if d.size else float("nan")


def m_lmd(pred68: np.ndarray, real68: np.ndarray, *, align: str = "mean", valid: np.ndarray | None = None) -> float:
    """Mouth landmark distance: :func:`landmark_distance` over the 68-point mouth, points 48-67."""
    return landmark_distance(pred68, real68, LM68_MOUTH, align=align, valid=valid)


def f_lmd(pred68: np.ndarray, real68: np.ndarray, *, align: str = "mean", valid: np.ndarray | None = None) -> float:
    """Face landmark distance: :func:`landmark_distance` over all 68 points."""
    return landmark_distance(pred68, real68, None, align=align, valid=valid)


# --------------------------------------------------------------------------------------
# lip sync


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3:
        return float("nan")
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 1e-12 else float("nan")


def lipsync_correlation(mouth_open: np.ndarray, envelope: np.ndarray, max_lag: int = 5) -> tuple[float, int]:
    """How well the mouth follows the audio: the best Pearson correlation over lags.

    For each lag ``k`` in ``[-max_lag, max_lag]`` the correlation of ``mouth_open[t]`` with
    ``envelope[t - k]`` over the frames where both exist; a positive lag means the mouth
    moves ``k`` frames *after* the sound (video late). A talking mouth opens with the
    loudness of the speech, so a well-synced video peaks near lag 0; in real speech the
    mouth tends to lead the sound by 100-300 ms (Chandrasekaran et al., 2009), i.e. lags of
    -2 to -7 frames, and the correlation of mouth opening with the raw loudness envelope is
    moderate (often 0.2-0.5): compare with the same figure on the real video.

    Args:
        mouth_open: ``[T]`` mouth opening per video frame (any unit; e.g.
            :func:`emogene_cli.geometry.mouth_opening`).
        envelope: ``[T]`` audio loudness per video frame (e.g.
            :func:`emogene_cli.audio.loudness_envelope`).
        max_lag: largest lag in frames (25 fps: 5 frames = 0.2 s).

    Returns:
        ``(best correlation, its lag in frames)``; ``(nan, 0)`` when no lag gives a defined
        correlation (constant signals or fewer than 3 overlapping frames).
    """
    m = np.asarray(mouth_open, dtype=np.float64).reshape(-1)
    e = np.asarray(envelope, dtype=np.float64).reshape(-1)
    if m.shape != e.shape:
        raise ValueError(f"lipsync_correlation: lengths differ, {m.shape} vs {e.shape}")
    T = len(m)
    best, best_lag = float("nan"), 0
    for k in sorted(range(-max_lag, max_lag + 1), key=abs):  # ties go to the smaller |lag|
        if abs(k) >= T:
            continue
        r = _pearson(m[k:], e[: T - k]) if k >= 0 else _pearson(m[: T + k], e[-k:])
        if np.isfinite(r) and not (r <= best):  # first finite value, then strictly better
            best, best_lag = r, k
    return best, best_lag


# --------------------------------------------------------------------------------------
# head pose


def mouth_agreement(
    mouth: np.ndarray, reference: np.ndarray, *, valid: np.ndarray | None = None, max_lag: int = 3
) -> dict[str, float]:
    """How well one mouth-opening series follows another (e.g. a rendered mouth and a real speaker's).

    Args:
        mouth, reference: ``[T]`` mouth opening per video frame (25 fps), the same units
            (e.g. inter-ocular distances, :func:`emogene_cli.geometry.mouth_opening_iod`).
        valid: ``[T]`` bool, frames where both were measured (a face found); default all.
        max_lag: lags searched for the best correlation, in frames (3 = 120 ms).

    Returns:
        ``r_lag0`` (Pearson r at lag 0), ``r_best`` and ``best_lag`` (the best within ±``max_lag``;
        positive: ``mouth`` moves after ``reference``, see :func:`lipsync_correlation`),
        ``std_ratio`` (``std(mouth) / std(reference)``: below 1 the mouth moves less) and
        ``frames`` used. NaN where a series is constant or fewer than 3 frames remain.
    """
    m = np.asarray(mouth, dtype=np.float64).reshape(-1)
    r = np.asarray(reference, dtype=np.float64).reshape(-1)
    if m.shape != r.shape:
        raise ValueError(f"mouth_agreement: lengths differ, {m.shape} vs {r.shape}")
    keep = np.ones(len(m), bool) if valid is None else np.asarray(valid, bool)
    # frames without a measurement are filled from the neighbours so that lags stay aligned
    if not keep.all() and keep.sum() >= 3:
        idx = np.arange(len(m))
        m, r = np.interp(idx, idx[keep], m[keep]), np.interp(idx, idx[keep], r[keep])
    if keep.sum() < 3:
        nan = float("nan")
        return {"r_lag0": nan, "r_best": nan, "best_lag": 0, "std_ratio": nan, "frames": int(keep.sum())}
    best, lag = lipsync_correlation(m, r, max_lag=max_lag)
    sd = r[keep].std()
    return {
        "r_lag0": _pearson(m[keep], r[keep]), "r_best": best, "best_lag": int(lag),
        "std_ratio": float(m[keep].std() / sd) if sd > 1e-12 else float("nan"), "frames": int(keep.sum()),
    }


def pose_velocity_acceleration(
    poses: np.ndarray, mask: np.ndarray | None = None, *, face_size: float = 1.0
) -> dict[str, float]:
    """Head-pose velocity and acceleration, as in EmoGene's idle-pose table.

    Each ``[4, 4]`` camera-from-head similarity pose becomes the 7-vector
    ``p = (axis-angle rotation in radians (3), translation / face_size (3), log scale)``
    (:func:`emogene_cli.geometry.pose_to_vector`; translation in face heights, so the
    figure does not depend on the frame size). Per frame (25 fps)::

        velocity     v_t = | p_{t+1} - p_t |
        acceleration a_t = | p_{t+1} - 2 p_t + p_{t-1} |

    and their mean and standard deviation over the frames whose differences lie entirely
    inside ``mask`` (e.g. the silent frames), per frame, not per second.

    Args:
        poses: ``[T, 4, 4]`` head poses (pixels).
        mask: ``[T]`` bool, the frames to measure (None: all).
        face_size: pixels per face height.

    Returns:
        ``velocity_mean``, ``velocity_std``, ``acceleration_mean``, ``acceleration_std``
        (``nan`` where fewer than 2 / 3 consecutive masked frames exist) and ``frames``
        (the number of masked frames).
    """
    poses = np.asarray(poses, dtype=np.float64)
    T = len(poses)
    mask = np.ones(T, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != (T,):
        raise ValueError(f"pose_velocity_acceleration: mask has shape {mask.shape}, expected ({T},)")
    if T == 0:
        vec = np.zeros((0, 7))
    else:
        vec = pose_to_vector(poses)
        vec[:, 3:6] /= float(face_size)
    vel = np.linalg.norm(np.diff(vec, axis=0), axis=1) if T >= 2 else np.zeros(0)
    acc = np.linalg.norm(vec[2:] - 2 * vec[1:-1] + vec[:-2], axis=1) if T >= 3 else np.zeros(0)
    v_ok = mask[1:] & mask[:-1] if T >= 2 else np.zeros(0, bool)
    a_ok = mask[2:] & mask[1:-1] & mask[:-2] if T >= 3 else np.zeros(0, bool)

    def stats(x: np.ndarray) -> tuple[float, float]:
        return (float(x.mean()), float(x.std())) if x.size else (float("nan"), float("nan"))

    vm, vs = stats(vel[v_ok])
    am, as_ = stats(acc[a_ok])
    return {"velocity_mean": vm, "velocity_std": vs, "acceleration_mean": am, "acceleration_std": as_,
            "frames": int(mask.sum())}


# --------------------------------------------------------------------------------------
# emotion


def blendshape_deltas(
    emotional: np.ndarray, neutral: np.ndarray, names: Sequence[str], emotion: str,
    relevant: Mapping[str, Sequence[str]] = EMOTION_BLENDSHAPES,
) -> dict[str, object]:
    """How much an emotion shows: mean blendshape change against the neutral rendering.

    Args:
        emotional, neutral: ``[T, 52]`` MediaPipe blendshape scores (0..1) re-detected on the
            emotional and on the neutral video (same audio, poses and seed), or ``[52]`` means.
        names: the blendshape names in column order (:data:`emogene_cli.face.BLENDSHAPE_NAMES`).
        emotion: a key of ``relevant`` (others give an empty result).

    Returns:
        ``deltas``: ``{name: mean(emotional) - mean(neutral)}`` for the emotion's relevant
        blendshapes, and ``score``: the mean of those deltas (positive: the emotion shows;
        ``nan`` when the emotion has no relevant blendshape, e.g. neutral).
    """
    e = np.asarray(emotional, dtype=np.float64)
    n = np.asarray(neutral, dtype=np.float64)
    e = e.mean(0) if e.ndim == 2 else e
    n = n.mean(0) if n.ndim == 2 else n
    index = {name: i for i, name in enumerate(names)}
    deltas = {k: float(e[index[k]] - n[index[k]]) for k in relevant.get(emotion, ()) if k in index}
    score = float(np.mean(list(deltas.values()))) if deltas else float("nan")
    return {"deltas": deltas, "score": score}


def emotion_strength(change: np.ndarray, real_change: np.ndarray) -> float:
    """How strongly a rendered emotion shows, relative to real actors: a scalar projection.

    ``strength = <Δ, Δ_real> / |Δ_real|²`` where ``Δ`` is the rendered clip's mean blendshape
    change against the neutral render (same audio, poses and seed) and ``Δ_real`` the real
    actors' change between their emotional and neutral clips (MEAD). 1.0 = as strong as a
    real actor, 0 = nothing of it shows, negative = the opposite.

    Args:
        change, real_change: ``[52]`` MediaPipe blendshape changes (0..1 scores).

    Returns:
        The strength (``nan`` when ``real_change`` is zero).
    """
    d = np.asarray(change, dtype=np.float64).reshape(-1)
    r = np.asarray(real_change, dtype=np.float64).reshape(-1)
    norm2 = float(r @ r)
    return float(d @ r / norm2) if norm2 > 0 else float("nan")


def largest_changes(change: np.ndarray, reference: np.ndarray, names: Sequence[str], k: int = 3) -> list[dict[str, Any]]:
    """The blendshapes that moved most in a render and in the reference, side by side.

    Args:
        change: ``[52]`` the rendered change against the neutral render.
        reference: ``[52]`` the reference actors' change for the same emotion.
        names: the 52 blendshape names.
        k: how many of each side's largest changes (by absolute value) to take.

    Returns:
        ``[{"name", "rendered", "reference"}]``: the union of the render's ``k`` largest and the
        reference's ``k`` largest, the render's first, each with both values, so that a reader
        sees what moved and what should have (e.g. ``mouthSmileLeft`` rising in an anger whose
        reference lowers the brows).
    """
    d = np.asarray(change, dtype=np.float64).reshape(-1)
    r = np.asarray(reference, dtype=np.float64).reshape(-1)
    order = list(np.argsort(-np.abs(d))[:k]) + [i for i in np.argsort(-np.abs(r))[:k]]
    picked = list(dict.fromkeys(int(i) for i in order))
    return [{"name": names[i], "rendered": float(d[i]), "reference": float(r[i])} for i in picked]


def nearest_emotion(change: np.ndarray, real_changes: Mapping[str, np.ndarray]) -> str | None:
    """The emotion whose real-actor blendshape change points most nearly the same way (cosine).

    Args:
        change: ``[52]`` rendered change against the neutral render.
        real_changes: ``{emotion: [52]}`` real actors' changes (see :func:`emotion_strength`).

    Returns:
        The name with the highest cosine similarity, or None when ``change`` is zero.
    """
    d = np.asarray(change, dtype=np.float64).reshape(-1)
    if not np.any(d):
        return None
    best, best_cos = None, -np.inf
    for name, real in real_changes.items():
        r = np.asarray(real, dtype=np.float64).reshape(-1)
        denom = np.linalg.norm(d) * np.linalg.norm(r)
        cos = float(d @ r / denom) if denom > 0 else -np.inf
        if cos > best_cos:
            best, best_cos = name, cos
    return best
