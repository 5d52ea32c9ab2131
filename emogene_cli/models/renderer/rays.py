"""Rays of the orthographic head-pose camera, the head box and the stratified sampler.

    lo, hi = head_box(mean_shape, config)                          # head-frame box corners [3]
    origins, directions = generate_rays(pixels [R, 2], poses [R|1, 4, 4])
    t_near, t_far, hit = intersect_aabb(origins, directions, torch.as_tensor(lo), torch.as_tensor(hi))
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .config import RendererConfig


def head_box(mean_shape: np.ndarray, config: RendererConfig) -> tuple[np.ndarray, np.ndarray]:
    """The head NeRF's axis-aligned box in the head frame.

    The landmarks' bounding box, grown by ``config.box_*`` times its extent along each
    axis: sideways for the ears, upwards for the hair (the face mesh stops at the hairline),
    below the chin, in front of the nose and behind the face.

    Args:
        mean_shape: ``[478, 3]`` the identity's mean shape (head frame, crop pixels).

    Returns:
        ``lo [3]``, ``hi [3]`` float32 corners (head-frame pixels; y down, z away from camera).
    """
    ms = np.asarray(mean_shape, dtype=np.float64)
    lo, hi = ms.min(0), ms.max(0)
    ext = hi - lo
    lo = lo - ext * np.array([config.box_x, config.box_top, config.box_front])
    hi = hi + ext * np.array([config.box_x, config.box_bottom, config.box_back])
    return lo.astype(np.float32), hi.astype(np.float32)


def generate_rays(pixels: Tensor, poses: Tensor) -> tuple[Tensor, Tensor]:
    """Head-frame rays of the orthographic camera.

    The ray through pixel position ``(x, y)`` is ``p(τ) = (x, y, τ)`` in camera/pixel
    coordinates; with ``P = [[s R, t], [0, 1]]`` its head-frame points are
    ``q(τ) = R^T (p(τ) - t) / s = o + τ d``.

    Args:
        pixels: ``[R, 2]`` pixel positions (x, y), pixel centres are ``u + 0.5``.
        poses: ``[R, 4, 4]`` or ``[1, 4, 4]`` camera-from-head similarity matrices.

    Returns:
        ``origins [R, 3]`` (head frame at τ = 0) and ``directions [R, 3]`` (head-frame
        displacement per unit τ, length ``1 / s``).
    """
    inv = torch.linalg.inv(poses.to(pixels.dtype))  # [R|1, 4, 4]
    a, b = inv[:, :3, :3], inv[:, :3, 3]
    origins = a[..., :2] @ pixels[..., None]  # [R, 3, 1]
    origins = origins[..., 0] + b
    directions = a[:, :, 2].expand(pixels.shape[0], 3)
    return origins, directions


def intersect_aabb(origins: Tensor, directions: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Slab test of rays ``o + τ d`` against the box ``[lo, hi]``.

    Args:
        origins: ``[R, 3]``; directions: ``[R, 3]``; lo, hi: ``[3]``.

    Returns:
        ``t_near [R]``, ``t_far [R]`` (in τ units; ``t_near`` may be negative: the camera's
        z = 0 plane has no special meaning for an orthographic camera) and ``hit [R]`` bool.
    """
    eps = 1e-9
    safe = torch.where(directions.abs() < eps, torch.full_like(directions, eps), directions)
    inv = 1.0 / safe
    t0 = (lo - origins) * inv
    t1 = (hi - origins) * inv
    t_near = torch.minimum(t0, t1).amax(-1)
    t_far = torch.maximum(t0, t1).amin(-1)
    hit = t_far > t_near
    return t_near, t_far, hit


def sample_stratified(
    t_near: Tensor, t_far: Tensor, n_samples: int, *, perturb: bool = False, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Stratified samples between ``t_near`` and ``t_far``.

    ``[near, far]`` is cut into ``n_samples`` equal bins; each sample lies at its bin's
    centre, or uniformly inside it when ``perturb`` (training).

    Args:
        t_near, t_far: ``[R]``.
        generator: a CPU generator for the jitter (reproducible across devices).

    Returns:
        ``t [R, S]`` sample positions and ``deltas [R, S]`` bin lengths (τ units).
    """
    r = t_near.shape[0]
    if perturb:
        u = torch.rand((r, n_samples), generator=generator).to(t_near.device, t_near.dtype)
    else:
        u = torch.full((r, n_samples), 0.5, device=t_near.device, dtype=t_near.dtype)
    steps = torch.arange(n_samples, device=t_near.device, dtype=t_near.dtype)
    width = ((t_far - t_near) / n_samples)[:, None]  # [R, 1]
    t = t_near[:, None] + (steps + u) * width
    return t, width.expand(r, n_samples)
