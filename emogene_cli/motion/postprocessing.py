"""Post-processing of predicted landmark motion (EmoGene landmark mixture, GeneFace++).

All functions take and return motion ``[T, 68, 3]`` float32 in inter-ocular units at
25 fps (see :mod:`emogene_cli.geometry`) and are pure numpy/scipy.

Order used by ``speak`` (:func:`postprocess`): the audio-driven *neutral* motion goes
through :func:`lle_project` (onto the identity's own landmark manifold) ->
:func:`one_euro_filter` run forwards and backwards (zero-phase temporal smoothing: a whole clip
is known, so nothing needs the causal filter's lag) -> :func:`amplify_mouth` (the identity's
mouth gain) -> :func:`deepen_closures` -> :func:`clamp_to_range` -> :func:`add_blinks`;
the emotional *displacement* is only low-passed in time (:func:`smooth_displacement`) and
added on top afterwards, so that neither the manifold of a mostly neutral video nor its
observed range pulls the emotion back (EmoGene's landmark mixture). The lip-sync dynamics
come from the neutral motion; the displacement carries the emotion's slow mouth shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial import cKDTree

from ..geometry import LM68_JAW, LM68_LOWER_LID, LM68_MOUTH, LM68_UPPER_LID, lip_gap
from .corpus import mouth_open

#: 68-point landmarks that the mouth gain scales: the lower jaw line (which the chin carries) and the lips.
LM68_MOUTH_GAIN = np.concatenate([LM68_JAW[4:13], LM68_MOUTH])
#: the range a measured mouth gain is clipped to (:func:`measure_mouth_gain`)
MOUTH_GAIN_RANGE = (0.8, 1.6)


@dataclass
class PostConfig:
    """Parameters of :func:`postprocess` (defaults follow GeneFace++/EmoGene's choices where they exist)."""

    lle_k: int = 10
    lle_blend: float = 0.3
    emotion_sigma: float = 3.0  # frames: Gaussian low-pass of the emotional displacement
    # zero-phase One-Euro on the neutral motion, mild: the VAE's output is already smoother than
    # tracked motion. The earlier causal 1.5 Hz filter lagged the mouth by 1-2 frames and filled
    # in the short closures of p/b/m (12 unseen-voice drives: mouth r at lag 0 0.58 -> 0.67)
    euro_min_cutoff: float = 8.0
    euro_beta: float = 0.5
    clamp_margin: float = 0.5
    # closures (:func:`deepen_closures`): below the identity's own lower-quartile inner-lip gap the
    # gap's distance under it is scaled by closure_slope (1 = off). 1.5 brings the driving mouth's
    # 5th percentile to the identity's own over 18 speakers (docs/results.md)
    closure_quantile: float = 0.25
    closure_slope: float = 1.5
    blinks: bool = True
    blink_period: float = 4.0
    seed: int = 0


def lle_weights(x: np.ndarray, neighbours: np.ndarray, reg: float = 1e-3) -> np.ndarray:
    """Locally linear embedding weights (Roweis & Saul, 2000): ``x ≈ Σ w_k n_k`` with ``Σ w_k = 1``.

    Args:
        x: ``[T, D]`` points; neighbours: ``[T, K, D]`` their K nearest neighbours.
        reg: Tikhonov regularisation relative to the trace of the local Gram matrix.

    Returns:
        ``[T, K]`` weights, each row summing to 1.
    """
    diff = neighbours - x[:, None, :]
    gram = diff @ np.swapaxes(diff, 1, 2)  # [T, K, K]
    k = gram.shape[-1]
    trace = np.trace(gram, axis1=1, axis2=2)
    gram = gram + np.eye(k)[None] * (reg * np.where(trace > 0, trace, 1.0))[:, None, None]
    w = np.linalg.solve(gram, np.ones((len(x), k, 1)))[..., 0]
    return w / w.sum(1, keepdims=True)


def lle_project(motion: np.ndarray, bank: np.ndarray, k: int = 10, blend: float = 0.5) -> np.ndarray:
    """Blend each frame toward its LLE reconstruction from the identity's own training frames.

    Args:
        motion: ``[T, 68, 3]`` predicted motion.
        bank: ``[N, 68, 3]`` the identity's observed motion (its landmark manifold).
        k: neighbours; blend: fraction of the projection in the output (0 = unchanged, 1 = fully projected).

    Returns:
        ``[T, 68, 3]``.
    """
    T = len(motion)
    x = motion.reshape(T, -1).astype(np.float64)
    b = bank.reshape(len(bank), -1).astype(np.float64)
    k = min(k, len(b))
    # exact Euclidean k nearest neighbours; scipy's k-d tree, which the renderer imports anyway
    # (scikit-learn's NearestNeighbors gives the same rows but costs `speak` 1.2 s of import)
    idx = cKDTree(b).query(x, k=[*range(1, k + 1)])[1]  # [T, k], nearest first
    w = lle_weights(x, b[idx])
    proj = np.einsum("tk,tkd->td", w, b[idx])
    return ((1 - blend) * x + blend * proj).reshape(motion.shape).astype(np.float32)


def smooth_displacement(displacement: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Emotional displacement low-passed in time (Gaussian, ``sigma`` frames at 25 fps).

    An emotion changes the face's shape slowly (a smile, a frown); the frame-to-frame mouth
    dynamics belong to the lip-accurate neutral motion, so the displacement keeps only its
    slow part. ``[T, ...]`` -> same shape, float32.
    """
    out = np.asarray(displacement, dtype=np.float32)
    if len(out) > 1 and sigma > 0:
        out = gaussian_filter1d(out, sigma=sigma, axis=0, mode="nearest")
    return out.astype(np.float32)


def one_euro_filter(x: np.ndarray, fps: float = 25.0, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0,
                    *, zero_phase: bool = False) -> np.ndarray:
    """One-Euro filter (Casiez, Roussel & Vogel, CHI 2012) along axis 0, per element.

    An exponential smoother whose cutoff rises with speed: ``fc = min_cutoff + beta * |dx/dt|``
    (Hz), so still signals are smoothed hard and fast moves lag little.

    Args:
        x: ``[T, ...]`` signal sampled at ``fps``.
        zero_phase: run it forwards, then backwards over the result, so that the output does
            not lag the input (offline use: the whole signal is known).

    Returns:
        Filtered signal, same shape and dtype.
    """
    x = np.asarray(x)
    if len(x) < 2:
        return x.copy()
    if zero_phase:
        forward = one_euro_filter(x, fps, min_cutoff, beta, d_cutoff)
        return one_euro_filter(forward[::-1], fps, min_cutoff, beta, d_cutoff)[::-1].copy()

    def alpha(cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        te = 1.0 / fps
        return 1.0 / (1.0 + tau / te)

    out = np.empty_like(x, dtype=np.float64)
    out[0] = x[0]
    dx_prev = np.zeros_like(x[0], dtype=np.float64)
    a_d = alpha(d_cutoff)
    for t in range(1, len(x)):
        dx = (x[t] - out[t - 1]) * fps
        dx_hat = a_d * dx + (1 - a_d) * dx_prev
        a = alpha(min_cutoff + beta * np.abs(dx_hat))
        out[t] = a * x[t] + (1 - a) * out[t - 1]
        dx_prev = dx_hat
    return out.astype(x.dtype)


def clamp_to_range(motion: np.ndarray, bank: np.ndarray, margin: float = 0.5) -> np.ndarray:
    """Clip each coordinate to the identity's observed range widened by ``margin`` × that range."""
    lo, hi = bank.min(0), bank.max(0)
    span = hi - lo
    return np.clip(motion, lo - margin * span, hi + margin * span).astype(np.float32)


def add_blinks(motion: np.ndarray, *, fps: float = 25.0, period: float = 4.0, seed: int = 0, depth: float = 0.8) -> np.ndarray:
    """Insert periodic eye blinks: the upper lids move ``depth`` of the way to the lower lids.

    Blinks start every ``period`` seconds on average (jittered ±30%, seeded) and last 7 frames
    (about 0.28 s) with a triangular closing profile.
    """
    out = motion.copy()
    T = len(motion)
    rng = np.random.default_rng(seed)
    profile = np.array([0.3, 0.7, 1.0, 1.0, 0.7, 0.4, 0.15])
    t = int(rng.uniform(0.5, 1.0) * period * fps)
    while t + len(profile) <= T:
        gap = out[t : t + len(profile), LM68_LOWER_LID] - out[t : t + len(profile), LM68_UPPER_LID]
        out[t : t + len(profile), LM68_UPPER_LID] += depth * profile[:, None, None] * gap
        t += int(period * fps * rng.uniform(0.7, 1.3))
    return out


def mouth_rest(bank: np.ndarray, mean68: np.ndarray, iod: float, quantile: float = 0.1) -> np.ndarray:
    """The identity's closed-mouth posture: ``[68, 3]`` mean motion of its most closed frames.

    Args:
        bank: ``[N, 68, 3]`` the identity's motion (inter-ocular units); mean68: ``[68, 3]`` its
            mean shape in pixels and iod its inter-ocular distance in pixels.
        quantile: the share of frames, by inner-lip opening, that count as closed.

    Returns:
        ``[68, 3]`` float32, inter-ocular units.
    """
    opening = mouth_open(bank, mean68, iod)
    closed = np.argsort(opening, kind="stable")[: max(1, int(len(bank) * quantile))]
    return bank[closed].mean(0).astype(np.float32)


def amplify_mouth(motion: np.ndarray, pivot: np.ndarray, gain: float | np.ndarray, *,
                  closed: np.ndarray | None = None) -> np.ndarray:
    """Scale the mouth's motion about a posture: ``pivot + gain * (motion - pivot)``.

    Only the lips and the lower jaw line (:data:`LM68_MOUTH_GAIN`) move. About the closed
    posture (:func:`mouth_rest`) a frame at rest (a "p", "b" or "m") stays closed and an open
    one opens ``gain`` times as far; this is how the renderer's pose calibration, a ratio of
    gaps, is applied. About the identity's mean posture the mouth's spread widens and its
    typical opening stays: variance matching, for a VAE decoded near its mean that
    under-articulates as any regression to the mean does (the factor that
    :func:`measure_mouth_gain` measures).

    ``closed`` (``[68, 3]``, :func:`mouth_rest`) is a floor: where scaling would bring the lips
    closer than in that posture (the vertical gap of the inner lips' midpoints, points 62 and
    66), the frame moves only as far as that gap, or stays as it was if it was closer already,
    so the lips' midpoints never press past the identity's own closure nor cross.

    Args:
        motion: ``[T, 68, 3]``; pivot: ``[68, 3]``; gain: one factor, or ``[T]`` one per frame (the
            renderer's pose calibration, :mod:`emogene_cli.render.pose_gain`); 1 leaves the mouth
            unchanged; closed: ``[68, 3]`` or None (no floor). All in inter-ocular units.

    Returns:
        ``[T, 68, 3]``: a new array, or ``motion`` itself when every gain is 1.

    Raises:
        ValueError: per-frame gains for another number of frames.
    """
    g = np.asarray(gain, dtype=np.float32)
    if g.ndim == 1 and len(g) != len(motion):
        raise ValueError(f"{len(g)} per-frame mouth gains for {len(motion)} frames")
    if np.all(g == 1.0):
        return motion
    if g.ndim == 1:
        g = g[:, None, None]
    out = motion.copy()
    pts = LM68_MOUTH_GAIN
    out[:, pts] = pivot[pts] + g * (motion[:, pts] - pivot[pts])
    if closed is not None:
        before, after = lip_gap(motion), lip_gap(out)
        target = np.minimum(lip_gap(closed), before)
        over = after < target  # closer than the floor: move only part of the way (the gap is linear in the points)
        if over.any():
            t = (before[over] - target[over]) / (before[over] - after[over])  # after < target <= before: positive
            idx = np.ix_(over, pts)
            out[idx] = motion[idx] + t[:, None, None] * (out[idx] - motion[idx])
    return out


def deepen_closures(motion: np.ndarray, bank: np.ndarray, closed: np.ndarray, *, quantile: float = 0.25,
                    slope: float = 1.5) -> np.ndarray:
    """Close the mouth further where it is nearly closed: the low tail of the inner-lip gap stretched.

    A frame whose vertical inner-lip gap (:func:`~emogene_cli.geometry.lip_gap`, points 62 and 66)
    lies below the identity's own ``quantile`` of it (over ``bank``) at a distance ``d`` is moved
    to ``slope * d`` below it, toward the closed posture ``closed`` and never past it: its lips and
    lower jaw line (:data:`LM68_MOUTH_GAIN`) are scaled about ``closed`` by the factor that gives
    that gap (a frame stretched down to the floor takes the closed posture's lips and jaw). Frames
    above the quantile, and frames at or past the closed gap, stay as they were, so the opening's
    order in time is kept (a monotone map of the gap).

    Why: the audio-to-motion model regresses toward its mean most where the mouth closes briefly
    (a "p", "b" or "m" lasts 2-4 frames), and :func:`amplify_mouth`'s variance matching widens the
    whole spread without reshaping that tail: driven by 18 other people's voices, the mouth's 5th
    percentile in speech stayed at about 1.6 times the identity's own (ng_clip1_25s, obama_20s).

    Args:
        motion: ``[T, 68, 3]``; bank: ``[N, 68, 3]`` the identity's training motion; closed:
            ``[68, 3]`` its closed posture (:func:`mouth_rest`). Inter-ocular units.
        quantile: where the stretch starts, a share of the bank's frames by gap (0-1).
        slope: the stretch below it (1 leaves ``motion`` unchanged).

    Returns:
        ``[T, 68, 3]``: a new array, or ``motion`` itself when nothing moves.
    """
    if slope == 1.0 or len(bank) == 0:
        return motion
    gap, g_closed = lip_gap(motion), float(lip_gap(closed))
    start = float(np.quantile(lip_gap(bank), quantile))
    low = (gap < start) & (gap > g_closed)  # empty when start <= g_closed
    if not low.any():
        return motion
    target = np.maximum(start - slope * (start - gap[low]), g_closed)
    scale = (target - g_closed) / (gap[low] - g_closed)  # the gap is linear in the points: closed + s (m - closed)
    out = motion.copy()
    idx = np.ix_(low, LM68_MOUTH_GAIN)
    out[idx] = closed[LM68_MOUTH_GAIN] + scale[:, None, None] * (motion[idx] - closed[LM68_MOUTH_GAIN])
    return out


def postprocess_neutral(neutral: np.ndarray, bank: np.ndarray, config: PostConfig | None = None, *,
                        mouth_gain: float = 1.0, mouth_rest: np.ndarray | None = None) -> np.ndarray:
    """The audio-driven neutral motion's chain: LLE projection, One-Euro smoothing, mouth gain, closures, clamping, blinks.

    Args:
        neutral: ``[T, 68, 3]`` A2M output; bank: ``[N, 68, 3]`` the identity's training motion.
        mouth_gain, mouth_rest: :func:`amplify_mouth` after the smoothing (the identity's gain,
            :func:`measure_mouth_gain`) with its closed posture ``mouth_rest`` (:func:`mouth_rest`)
            as the floor: a gain above 1 about the identity's mean posture (``bank``'s mean), so
            the typical opening stays; one below 1 about the closed posture, so that narrowing
            the mouth does not open its closures. With ``mouth_rest``, :func:`deepen_closures`
            follows (``config.closure_quantile``, ``config.closure_slope``).

    Raises:
        ValueError: a ``mouth_gain`` other than 1 without ``mouth_rest``.

    Returns:
        ``[T, 68, 3]`` float32.
    """
    c = config or PostConfig()
    m = lle_project(neutral, bank, k=c.lle_k, blend=c.lle_blend)
    m = one_euro_filter(m, min_cutoff=c.euro_min_cutoff, beta=c.euro_beta, zero_phase=True)
    if mouth_gain != 1.0:
        if mouth_rest is None:
            raise ValueError("a mouth gain needs the closed-mouth posture that bounds it (mouth_rest)")
        m = amplify_mouth(m, bank.mean(0) if mouth_gain > 1.0 else mouth_rest, mouth_gain, closed=mouth_rest)
    if mouth_rest is not None:
        m = deepen_closures(m, bank, mouth_rest, quantile=c.closure_quantile, slope=c.closure_slope)
    m = clamp_to_range(m, bank, margin=c.clamp_margin)
    if c.blinks:
        m = add_blinks(m, period=c.blink_period, seed=c.seed)
    return m.astype(np.float32)


def postprocess(
    neutral: np.ndarray, displacement: np.ndarray, bank: np.ndarray, config: PostConfig | None = None, *,
    mouth_gain: float = 1.0, mouth_rest: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The full chain: :func:`postprocess_neutral` of the neutral motion, :func:`smooth_displacement` of the emotion.

    Args:
        neutral: ``[T, 68, 3]`` A2M output; displacement: ``[T, 68, 3]`` LDM output (× intensity);
        bank: ``[N, 68, 3]`` the identity's training motion; mouth_gain, mouth_rest: see
        :func:`postprocess_neutral`.

    Returns:
        ``(base, displacement)``, both ``[T, 68, 3]`` float32; the driving motion is their sum.
        The displacement is added after the projection and clamp, so it keeps its full size.
    """
    c = config or PostConfig()
    base = postprocess_neutral(neutral, bank, c, mouth_gain=mouth_gain, mouth_rest=mouth_rest)
    return base, smooth_displacement(displacement, c.emotion_sigma)


def measure_mouth_gain(pred: np.ndarray, real: np.ndarray, bank: np.ndarray, mean68: np.ndarray, iod: float) -> float:
    """How much wider the real mouth moves than the post-processed prediction, on held-out frames.

    The ratio of standard deviations of the inner-lip opening, real over predicted after
    :func:`postprocess_neutral` (no blinks, no gain), clipped to :data:`MOUTH_GAIN_RANGE`; 1.0
    when either does not move. ``fit-identity`` measures it on the identity's held-out stretch
    (audio the person's model never trained on) and ``speak`` applies it (:func:`amplify_mouth`).

    Args:
        pred: ``[T, 68, 3]`` the model's motion for the held-out audio; real: ``[T, 68, 3]`` the
            tracked motion of the same frames; bank: ``[N, 68, 3]`` the identity's training
            motion; mean68 (pixels), iod (pixels): its mean shape and inter-ocular distance.

    Returns:
        The gain, a float within :data:`MOUTH_GAIN_RANGE`.
    """
    post = postprocess_neutral(pred, bank, PostConfig(blinks=False))
    p_sd = mouth_open(post, mean68, iod).std()
    r_sd = mouth_open(real, mean68, iod).std()
    if not (p_sd > 1e-8 and r_sd > 1e-8):
        return 1.0
    lo, hi = MOUTH_GAIN_RANGE
    return min(max(float(r_sd / p_sd), lo), hi)
