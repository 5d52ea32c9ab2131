"""The canonical head field: multi-resolution tri-planes and a small MLP -> density and colour.

    field = HeadField(RendererConfig.preset("tiny"))
    sigma, rgb = field(torch.rand(64, 3) * 2 - 1, torch.zeros(64, 8))   # [64], [64, 3]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import RendererConfig


class TriPlaneEncoding(nn.Module):
    """Multi-resolution tri-plane features of points in ``[-1, 1]^3``.

    One learned ``[C, r, r]`` plane per axis pair (xy, xz, yz) and resolution ``r``, read with
    bilinear :func:`torch.nn.functional.grid_sample`; all planes' features are concatenated.

        enc = TriPlaneEncoding((32, 64), 8)
        feats = enc(torch.rand(1000, 3) * 2 - 1)   # [1000, 2 * 3 * 8]
    """

    PAIRS = ((0, 1), (0, 2), (1, 2))

    def __init__(self, resolutions: tuple[int, ...], features: int, init_std: float = 0.1) -> None:
        super().__init__()
        self.planes = nn.ParameterList(
            [nn.Parameter(torch.randn(3, features, r, r) * init_std) for r in resolutions]
        )
        self.out_dim = len(resolutions) * 3 * features

    def forward(self, x: Tensor) -> Tensor:
        """``x [N, 3]`` in ``[-1, 1]`` -> features ``[N, out_dim]``."""
        grid = torch.stack([x[:, list(p)] for p in self.PAIRS])[:, None]  # [3, 1, N, 2]
        feats = []
        for plane in self.planes:
            f = F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=True)
            feats.append(f[:, :, 0].permute(2, 0, 1).reshape(x.shape[0], 3 * plane.shape[1]))  # [N, 3C]
        return torch.cat(feats, -1)

    def total_variation(self) -> Tensor:
        """Mean squared difference of neighbouring plane cells (smoothness regulariser)."""
        tv = 0.0
        for plane in self.planes:
            tv = tv + (plane[..., 1:, :] - plane[..., :-1, :]).pow(2).mean()
            tv = tv + (plane[..., 1:] - plane[..., :-1]).pow(2).mean()
        return tv


class HeadField(nn.Module):
    """Density and colour of the head at head-box points, given the motion code.

    Tri-plane features ``e(x)``; ER-NeRF's region attention ``a(x) = sigmoid(W e(x))`` gates
    the motion code per point, so that the mouth region listens to the mouth landmarks;
    an MLP of ``[e(x), a(x) * code]`` gives density (softplus) and colour (sigmoid). No view
    direction: the camera is fixed and the head pose moves the head, not the view.

        field = HeadField(RendererConfig.preset("tiny"))
        sigma, rgb = field(torch.rand(64, 3) * 2 - 1, torch.zeros(64, 8))   # [64], [64, 3]
    """

    def __init__(self, config: RendererConfig) -> None:
        super().__init__()
        self.encoding = TriPlaneEncoding(config.plane_resolutions, config.plane_features)
        d = self.encoding.out_dim
        self.attention = nn.Linear(d, config.code_dim)
        # first layer split in two (features, gated code): the same as one Linear on their concatenation
        self.input_features = nn.Linear(d, config.hidden)
        self.input_code = nn.Linear(config.code_dim, config.hidden, bias=False)
        self.trunk = nn.Sequential(
            nn.ReLU(inplace=True), nn.Linear(config.hidden, config.hidden), nn.ReLU(inplace=True)
        )
        self.density = nn.Linear(config.hidden, 1)
        self.color = nn.Sequential(
            nn.Linear(config.hidden, config.hidden // 2), nn.ReLU(inplace=True), nn.Linear(config.hidden // 2, 3)
        )
        self.density_bias = -1.0  # start semi-transparent

    def forward(self, x: Tensor, code: Tensor, *, with_color: bool = True) -> tuple[Tensor, Tensor | None]:
        """Args: ``x [N, 3]`` normalised box coordinates in ``[-1, 1]``, ``code [N, K]``.

        Returns: ``sigma [N]`` (per normalised length, ≥ 0) and ``rgb [N, 3]`` in 0..1
        (None unless ``with_color``).
        """
        enc = self.encoding(x)  # [N, D]
        gated = torch.sigmoid(self.attention(enc)) * code  # [N, K]
        h = self.trunk(self.input_features(enc) + self.input_code(gated))
        sigma = F.softplus(self.density(h)[:, 0] + self.density_bias)
        return sigma, torch.sigmoid(self.color(h)) if with_color else None
