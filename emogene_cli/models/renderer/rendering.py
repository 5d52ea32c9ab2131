"""Volume rendering (NeRF quadrature), the distortion regulariser and compositing.

    out = volume_render(sigma [R, S], rgb [R, S, 3], deltas [R, S])    # out["rgb"], out["alpha"], out["weights"]
    image = composite(head_rgb, head_alpha, torso_rgb, torso_alpha, background)
"""

from __future__ import annotations

import torch
from torch import Tensor


def volume_render(sigma: Tensor, rgb: Tensor, deltas: Tensor) -> dict[str, Tensor]:
    """NeRF quadrature (Mildenhall et al., 2020).

    ``alpha_i = 1 - exp(-σ_i δ_i)``, ``T_i = exp(-Σ_{j<i} σ_j δ_j)``, ``w_i = T_i alpha_i``.

    Args:
        sigma: ``[R, S]`` densities; rgb: ``[R, S, 3]``; deltas: ``[R, S]`` sample lengths
            (the units that ``sigma`` is per).

    Returns:
        ``rgb [R, 3]`` accumulated colour without background (premultiplied by opacity),
        ``alpha [R]`` accumulated opacity ``Σ w_i = 1 - T_S ≤ 1``, ``weights [R, S]``.
    """
    tau = sigma * deltas
    alpha = 1.0 - torch.exp(-tau)
    trans = torch.exp(-torch.cumsum(torch.cat([torch.zeros_like(tau[:, :1]), tau[:, :-1]], 1), 1))
    weights = alpha * trans
    if rgb.shape[1] <= 4:  # rendering's small groups of samples: a few multiply-adds beat a batched product
        acc, opacity = weights[:, 0, None] * rgb[:, 0], weights[:, 0]
        for i in range(1, rgb.shape[1]):
            acc, opacity = acc + weights[:, i, None] * rgb[:, i], opacity + weights[:, i]
    else:
        acc, opacity = torch.bmm(weights[:, None], rgb)[:, 0], weights.sum(1)
    return {"rgb": acc, "alpha": opacity, "weights": weights}


def distortion_loss(weights: Tensor) -> Tensor:
    """Mip-NeRF 360's distortion loss for equal bins on ``[0, 1]``: compact weights, sharp surfaces.

    ``Σ_ij w_i w_j |m_i - m_j| + Σ_i w_i² / (3 S)`` with bin midpoints ``m_i``, in O(S).

    Args:
        weights: ``[R, S]`` volume-rendering weights.

    Returns:
        ``[R]``.
    """
    n = weights.shape[-1]
    mid = (torch.arange(n, device=weights.device, dtype=weights.dtype) + 0.5) / n
    w_before = torch.cumsum(weights, -1) - weights
    wm_before = torch.cumsum(weights * mid, -1) - weights * mid
    cross = 2.0 * (weights * (mid * w_before - wm_before)).sum(-1)
    return cross + weights.pow(2).sum(-1) / (3.0 * n)


def composite(
    head_rgb: Tensor, head_alpha: Tensor, torso_rgb: Tensor, torso_alpha: Tensor, background: Tensor
) -> Tensor:
    """Head over torso over background: ``c_h a_h + (1 - a_h) (c_t a_t + (1 - a_t) bg)``.

    Args:
        head_rgb, torso_rgb, background: ``[..., 3]`` colours (not premultiplied);
        head_alpha, torso_alpha: ``[...]``.

    Returns:
        ``[..., 3]``.
    """
    a_h, a_t = head_alpha[..., None], torso_alpha[..., None]
    under = torso_rgb * a_t + (1.0 - a_t) * background
    return head_rgb * a_h + (1.0 - a_h) * under
