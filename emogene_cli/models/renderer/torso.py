"""RAD-NeRF's 2-D torso model: colour and opacity of the torso at image positions, given the head pose.

    torso = TorsoField(RendererConfig.preset("tiny"))
    rgb, alpha = torso(torch.rand(10, 2) * 2 - 1, torch.zeros(10, 7))   # [10, 3], [10]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import RendererConfig


class TorsoField(nn.Module):
    """RAD-NeRF's 2-D torso: colour and opacity of the torso at image positions, given the pose.

    A small MLP of the pixel position (Fourier features) and the normalised pose vector gives
    an offset; a learned multi-resolution 2-D feature grid is read at the offset position;
    a second MLP of those features and the pose gives colour and opacity.

        torso = TorsoField(RendererConfig.preset("tiny"))
        rgb, alpha = torso(torch.rand(10, 2) * 2 - 1, torch.zeros(10, 7))   # [10, 3], [10]
    """

    POSE_DIM = 7

    def __init__(self, config: RendererConfig) -> None:
        super().__init__()
        self.frequencies = config.torso_frequencies
        self.max_offset = config.torso_max_offset * 2.0  # normalised coordinates span 2
        pe_dim = 2 + 4 * self.frequencies
        self.deform = nn.Sequential(
            nn.Linear(pe_dim + self.POSE_DIM, config.torso_hidden), nn.ReLU(inplace=True),
            nn.Linear(config.torso_hidden, 2),
        )
        nn.init.zeros_(self.deform[-1].weight)
        nn.init.zeros_(self.deform[-1].bias)
        self.grids = nn.ParameterList(
            [nn.Parameter(torch.randn(1, config.torso_features, r, r) * 0.1) for r in config.torso_resolutions]
        )
        d = len(config.torso_resolutions) * config.torso_features
        self.net = nn.Sequential(
            nn.Linear(d + self.POSE_DIM, config.torso_hidden), nn.ReLU(inplace=True),
            nn.Linear(config.torso_hidden, config.torso_hidden), nn.ReLU(inplace=True),
            nn.Linear(config.torso_hidden, 4),
        )

    def encode_position(self, uv: Tensor) -> Tensor:
        """``uv [R, 2]`` -> ``[R, 2 + 4 F]`` Fourier features."""
        freqs = (2.0 ** torch.arange(self.frequencies, device=uv.device, dtype=uv.dtype)) * math.pi
        ang = uv[:, :, None] * freqs  # [R, 2, F]
        return torch.cat([uv, ang.sin().flatten(1), ang.cos().flatten(1)], -1)

    def forward(self, uv: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        """Args: ``uv [R, 2]`` image position in ``[-1, 1]`` (x, y), ``pose [R|1, 7]`` normalised.

        Returns: ``rgb [R, 3]`` in 0..1 and ``alpha [R]`` in 0..1.
        """
        pose = pose.expand(uv.shape[0], -1)
        offset = torch.tanh(self.deform(torch.cat([self.encode_position(uv), pose], -1))) * self.max_offset
        grid = (uv + offset)[None, None]  # [1, 1, R, 2]
        feats = [F.grid_sample(g, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T
                 for g in self.grids]
        out = self.net(torch.cat(feats + [pose], -1))
        return torch.sigmoid(out[:, :3]), torch.sigmoid(out[:, 3])
