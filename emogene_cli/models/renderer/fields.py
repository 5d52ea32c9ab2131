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
        """``x [N, 3]`` in ``[-1, 1]`` -> features ``[N, out_dim]`` (level-major, then plane, then channel)."""
        return torch.cat([f.T for f in self.sample_levels(x)], -1)

    def sample_levels(self, x: Tensor) -> list[Tensor]:
        """``x [N, 3]`` -> one ``[3 C, N]`` block per resolution, feature-major (no copies).

        Row ``p C + c`` of a block is channel ``c`` of plane ``p`` (xy, xz, yz): the same order
        as :meth:`forward`'s columns, so ``W @ block`` with the matching columns of a weight
        ``W`` equals that part of ``forward(x) @ W.T``.
        """
        grid = torch.stack([x[:, 0:2], x[:, 0::2], x[:, 1:3]])[:, None]  # [3, 1, N, 2]: PAIRS, as slices (no gather)
        return [
            F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=True)
            .reshape(3 * plane.shape[1], x.shape[0])  # [3, C, 1, N] -> [3C, N]
            for plane in self.planes
        ]

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
        if torch.is_grad_enabled():  # training: per-point rows, whose backward is the faster one
            enc = self.encoding(x)  # [N, D]
            gated = torch.sigmoid(self.attention(enc)) * code  # [N, K]
            h = self.trunk(self.input_features(enc) + self.input_code(gated))
            sigma = F.softplus(self.density(h)[:, 0] + self.density_bias)
            return sigma, torch.sigmoid(self.color(h)) if with_color else None
        return self._infer(x, code, with_color)

    def _infer(self, x: Tensor, code: Tensor, with_color: bool) -> tuple[Tensor, Tensor | None]:
        """:meth:`forward` without autograd, feature-major: the same numbers, about 1.6x faster on a CPU.

        The MLP runs on ``[D, N]`` columns (weights times columns): the tri-plane samples come
        out of ``grid_sample`` as ``[3C, N]`` blocks, so no per-point concatenation or
        transpose copies are made, the attention and the first layer share one product, and
        the activations are updated in place.
        """
        w = torch.cat([self.attention.weight, self.input_features.weight], 0)  # [K + H, D]
        bias = torch.cat([self.attention.bias, self.input_features.bias], 0)[:, None]
        out, col = None, 0
        for block in self.encoding.sample_levels(x):
            part = w[:, col:col + block.shape[0]]
            out = torch.addmm(bias, part, block) if out is None else out.addmm_(part, block)  # [K + H, N]
            col += block.shape[0]
        k = self.attention.out_features
        gated = torch.sigmoid(out[:k]) * code.T  # [K, N]
        h = out[k:].addmm_(self.input_code.weight, gated).relu_()  # [H, N]
        h = torch.addmm(self.trunk[1].bias[:, None], self.trunk[1].weight, h).relu_()
        sigma = F.softplus(torch.addmm(self.density.bias[:, None], self.density.weight, h)[0] + self.density_bias)
        if not with_color:
            return sigma, None
        c = torch.addmm(self.color[0].bias[:, None], self.color[0].weight, h).relu_()
        return sigma, torch.sigmoid(torch.addmm(self.color[2].bias[:, None], self.color[2].weight, c)).T
