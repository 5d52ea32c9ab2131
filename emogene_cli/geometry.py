"""Landmark geometry: similarity alignment, head pose, canonical landmarks, motion.

Conventions (DESIGN.md, "Data contracts"):

* Landmarks are MediaPipe Face Landmarker's 478 points in **crop pixels**: ``x = nx * W``,
  ``y = ny * H``, ``z = nz * W`` (MediaPipe's z has roughly the scale of x). Shape ``[T, 478, 3]``.
* The camera is orthographic along +z in those pixel coordinates. A head pose is the
  similarity transform camera-from-head, ``L = s R M + t``, stored as a ``[4, 4]`` matrix
  ``[[s R, t], [0, 1]]``; ``M`` is the identity's mean shape (head frame, pixel scale).
* Canonical landmarks are ``R^T (L - t) / s``; motion is ``(canonical - mean) / iod`` where
  ``iod`` is the mean shape's inter-ocular distance (outer eye corners), so a displacement
  learned on one face transfers to another.
* The models exchange motion on the 68-point (iBUG / dlib) subset, ``[T, 68, 3]``, as in
  GeneFace++ and EmoGene; :data:`LM68_FROM_LM478` picks it out of the 478 points.

All functions are pure numpy and accept a leading time axis where noted.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

# The iBUG 68-point layout picked from MediaPipe's 478-point mesh (jaw 0-16, brows 17-26,
# nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67).
LM68_FROM_LM478 = np.array(
    [127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
     70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
     168, 197, 5, 4, 75, 97, 2, 326, 305,
     33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
     61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
     78, 81, 13, 311, 308, 402, 14, 178],
    dtype=np.int64,
)

# Regions of the 68-point layout.
LM68_JAW = np.arange(0, 17)
LM68_BROWS = np.arange(17, 27)
LM68_NOSE = np.arange(27, 36)
LM68_EYES = np.arange(36, 48)
LM68_MOUTH = np.arange(48, 68)
LM68_MOUTH_CORNERS = np.array([48, 54])
LM68_UPPER_LID = np.array([37, 38, 43, 44])
LM68_LOWER_LID = np.array([41, 40, 47, 46])

# Points of the 478 mesh that move little with expression (forehead, nose bridge, eye
# corners, temples): the similarity alignment that defines head pose uses only these.
RIGID_LM478 = np.array(
    [10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1,
     33, 133, 362, 263, 234, 454, 127, 356, 21, 251, 54, 284, 103, 332, 109, 338],
    dtype=np.int64,
)
# Outer eye corners (subject's right, left) in the 478 mesh.
EYE_OUTER_LM478 = (33, 263)


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity transform with ``dst ≈ s R src + t`` (Umeyama, 1991).

    Args:
        src: ``[..., N, 3]`` source points.
        dst: ``[..., N, 3]`` destination points (same leading shape).
        with_scale: estimate ``s``; else ``s = 1``.

    Returns:
        ``s [...]``, ``R [..., 3, 3]`` (proper rotation), ``t [..., 3]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s = src.mean(-2, keepdims=True)
    mu_d = dst.mean(-2, keepdims=True)
    xs, xd = src - mu_s, dst - mu_d
    n = src.shape[-2]
    cov = np.swapaxes(xd, -1, -2) @ xs / n  # [..., 3, 3]
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    diag = np.ones(sig.shape)
    diag[..., -1] = d
    rot = u @ (diag[..., :, None] * vt)
    if with_scale:
        var_s = (xs ** 2).sum((-1, -2)) / n
        scale = (sig * diag).sum(-1) / np.maximum(var_s, 1e-12)
    else:
        scale = np.ones(sig.shape[:-1])
    t = mu_d[..., 0, :] - scale[..., None] * (rot @ mu_s[..., 0, :, None])[..., 0]
    return scale, rot, t


def compose_pose(scale: np.ndarray, rot: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``[..., 4, 4]`` camera-from-head matrices ``[[s R, t], [0, 1]]``."""
    scale = np.asarray(scale)
    out = np.zeros(scale.shape + (4, 4), dtype=np.float64)
    out[..., :3, :3] = scale[..., None, None] * rot
    out[..., :3, 3] = t
    out[..., 3, 3] = 1.0
    return out


def decompose_pose(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``[..., 4, 4]`` similarity poses into ``s [...]``, ``R [..., 3, 3]``, ``t [..., 3]``."""
    pose = np.asarray(pose, dtype=np.float64)
    a = pose[..., :3, :3]
    scale = np.cbrt(np.linalg.det(a))
    return scale, a / scale[..., None, None], pose[..., :3, 3]


def pose_to_vector(pose: np.ndarray) -> np.ndarray:
    """``[..., 4, 4]`` poses to ``[..., 7]``: axis-angle (radians, 3), translation (px, 3), log scale."""
    scale, rot, t = decompose_pose(pose)
    flat = rot.reshape(-1, 3, 3)
    rv = Rotation.from_matrix(flat).as_rotvec().reshape(rot.shape[:-2] + (3,))
    return np.concatenate([rv, t, np.log(scale)[..., None]], -1)


def vector_to_pose(vec: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pose_to_vector`: ``[..., 7]`` to ``[..., 4, 4]``."""
    vec = np.asarray(vec, dtype=np.float64)
    rot = Rotation.from_rotvec(vec.reshape(-1, 7)[:, :3]).as_matrix().reshape(vec.shape[:-1] + (3, 3))
    return compose_pose(np.exp(vec[..., 6]), rot, vec[..., 3:6])


def transform_points(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``[..., 4, 4]`` poses to ``[..., N, 3]`` points (head frame -> camera pixels)."""
    pose = np.asarray(pose)
    return points @ np.swapaxes(pose[..., :3, :3], -1, -2) + pose[..., None, :3, 3]


def estimate_poses(landmarks: np.ndarray, mean_shape: np.ndarray) -> np.ndarray:
    """Head poses from landmarks by similarity alignment of the rigid points.

    Args:
        landmarks: ``[T, 478, 3]`` crop-pixel landmarks.
        mean_shape: ``[478, 3]`` the identity's mean shape (head frame).

    Returns:
        ``[T, 4, 4]`` camera-from-head poses (float64).
    """
    s, r, t = umeyama(mean_shape[None, RIGID_LM478], landmarks[:, RIGID_LM478])
    return compose_pose(s, r, t)


def to_canonical(landmarks: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Undo the head pose: ``R^T (L - t) / s``. ``[T, N, 3]`` and ``[T, 4, 4]`` -> ``[T, N, 3]``."""
    inv = np.linalg.inv(poses)
    return transform_points(inv, landmarks)


def mean_shape(landmarks: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Generalised Procrustes mean of ``[T, 478, 3]`` landmarks on the rigid points.

    The result is centred at the origin with the scale of the median frame, so that its
    coordinates stay in crop pixels. Returns ``[478, 3]`` float64.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    ref = landmarks[len(landmarks) // 2] - landmarks[len(landmarks) // 2].mean(0)
    for _ in range(iterations):
        canon = to_canonical(landmarks, estimate_poses(landmarks, ref))
        ref = canon.mean(0)
        ref = ref - ref[RIGID_LM478].mean(0)
    return ref


def interocular_distance(shape: np.ndarray) -> float:
    """Distance between the outer eye corners of a ``[478, 3]`` shape (its units)."""
    a, b = EYE_OUTER_LM478
    return float(np.linalg.norm(shape[a] - shape[b]))


def motion68(canonical: np.ndarray, mean: np.ndarray, iod: float) -> np.ndarray:
    """Landmark motion on the 68-point subset: ``(canonical - mean) / iod``.

    Args:
        canonical: ``[T, 478, 3]`` canonical landmarks.
        mean: ``[478, 3]`` mean shape.
        iod: inter-ocular distance of ``mean``.

    Returns:
        ``[T, 68, 3]`` float32 motion in inter-ocular units.
    """
    return ((canonical[:, LM68_FROM_LM478] - mean[LM68_FROM_LM478]) / iod).astype(np.float32)


def dense_motion(canonical: np.ndarray, mean: np.ndarray, iod: float) -> np.ndarray:
    """Motion of all 478 landmarks, ``(canonical - mean) / iod``: what drives the renderer.

    Args:
        canonical: ``[T, 478, 3]`` canonical landmarks; mean: ``[478, 3]``; iod: of ``mean``.

    Returns:
        ``[T, 478, 3]`` float32 in inter-ocular units (its 68-point subset is :func:`motion68`).
    """
    return ((np.asarray(canonical) - np.asarray(mean)) / iod).astype(np.float32)


def motion_to_landmarks68(motion: np.ndarray, mean: np.ndarray, iod: float, poses: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`motion68`, optionally posed into the camera: ``[T, 68, 3]`` pixels."""
    canon = mean[LM68_FROM_LM478] + motion * iod
    return canon if poses is None else transform_points(poses, canon)


def mouth_opening(landmarks68: np.ndarray) -> np.ndarray:
    """Inner-lip gap (upper 62 to lower 66) per frame, ``[T]``, in the landmarks' units."""
    return np.linalg.norm(landmarks68[:, 62] - landmarks68[:, 66], axis=-1)


def lip_gap(motion68: np.ndarray) -> np.ndarray:
    """Signed vertical inner-lip gap: lower (66) minus upper (62) lip's y (down), ``[..., 68, 3]`` -> ``[...]``.

    Of motion (inter-ocular units) it is the gap's change from the mean shape's, linear in the
    points, and negative where the lips close further than in the mean shape (on landmarks, where
    they cross); :func:`mouth_opening` is the unsigned 3-D distance.
    """
    return motion68[..., 66, 1] - motion68[..., 62, 1]


def mouth_opening_iod(landmarks68: np.ndarray) -> np.ndarray:
    """Inner-lip gap over the inter-ocular distance per frame, ``[T]``, for image landmarks.

    For landmarks tracked in a video (``[T, 68, 2 or 3]`` pixels) whose face size changes with
    the distance to the camera; the gap is :func:`mouth_opening`, the inter-ocular distance
    that of the outer eye corners (points 36 and 45 of the 68).
    """
    iod = np.linalg.norm(landmarks68[:, 36, :2] - landmarks68[:, 45, :2], axis=-1)
    return np.linalg.norm(landmarks68[:, 62, :2] - landmarks68[:, 66, :2], axis=-1) / np.maximum(iod, 1e-6)


def mouth_opening_pose_free(landmarks: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Inner-lip gap with the head pose removed, over the inter-ocular distance, ``[T]``.

    Tracked landmarks (``[T, 478, 3]`` pixels, a rendered or a real video) are brought into
    the head frame the way preprocessing makes canonical landmarks (:func:`estimate_poses`
    on the rigid points, then :func:`to_canonical`), so the gap is measured in the same
    frame as the driving landmarks. :func:`mouth_opening_iod` measures it in the image
    instead, where a head that nods or turns foreshortens the lips: the same mouth reads
    smaller at one head pose than at another.

    Both the gap and the inter-ocular distance (outer eye corners) are 3-D distances in the
    head frame, so any pixel scale works (a crop, a whole frame): the alignment removes it.

    Args:
        landmarks: ``[T, 478, 3]`` landmarks (pixels, MediaPipe's z).
        mean: ``[478, 3]`` the face's mean shape (head frame); default the Procrustes mean
            of ``landmarks`` (:func:`mean_shape`), for a face whose mean shape is unknown.

    Returns:
        ``[T]`` float64 gap (points 62 to 66 of the 68) in inter-ocular distances of ``mean``;
        NaN in frames whose rigid points collapse to one point (e.g. the zeros a tracker
        leaves where it found no face in the whole clip).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    spread = np.ptp(landmarks[:, RIGID_LM478], axis=1).max(-1)
    ok = spread > 1e-9
    out = np.full(len(landmarks), np.nan)
    if not ok.any():
        return out
    mean = mean_shape(landmarks[ok]) if mean is None else np.asarray(mean, dtype=np.float64)
    canonical = to_canonical(landmarks[ok], estimate_poses(landmarks[ok], mean))
    out[ok] = mouth_opening(canonical[:, LM68_FROM_LM478]) / interocular_distance(mean)
    return out


def fit_lift(sparse: np.ndarray, dense: np.ndarray, ridge: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression from 68-point motion to 478-point motion: ``dense ≈ W sparse + b``.

    Args:
        sparse: ``[N, 68, 3]`` motion; dense: ``[N, 478, 3]`` motion of the same frames.
        ridge: Tikhonov weight relative to the mean eigenvalue of the input covariance.

    Returns:
        ``W [1434, 204]`` and ``b [1434]`` (float64), applied by :func:`apply_lift`.
    """
    x = np.asarray(sparse, np.float64).reshape(len(sparse), -1)
    y = np.asarray(dense, np.float64).reshape(len(dense), -1)
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    gram = xc.T @ xc
    lam = ridge * max(np.trace(gram) / gram.shape[0], 1e-12)
    w = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), xc.T @ yc).T  # [1434, 204]
    return w, my - w @ mx


def apply_lift(sparse: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``[T, 68, 3]`` motion -> ``[T, 478, 3]`` float32 by a :func:`fit_lift` map; the 68 points are kept exactly."""
    sparse = np.asarray(sparse, np.float32)
    t = len(sparse)
    dense = sparse.reshape(t, -1) @ np.asarray(w, np.float32).T
    if b is not None:
        dense = dense + np.asarray(b, np.float32)
    dense = dense.reshape(t, 478, 3)
    dense[:, LM68_FROM_LM478] = sparse
    return dense
