"""The person-specific talking-head renderer: a motion-conditioned head NeRF over a 2-D torso.

After GeneFace++ (Ye et al., 2023) and its renderers RAD-NeRF (Tang et al., 2022) and
ER-NeRF (Li et al., ICCV 2023), sized so that a 20 s clip trains on a laptop CPU::

    model = TalkingHeadRenderer(RendererConfig.preset("quick"), mean_shape, motion_mean, motion_std)
    out = model.render_image(pose, motion, background)          # rgb [H, W, 3] in 0..1
    for frame in model.render_frames(poses, motions, background, "cpu"): ...   # uint8 frames

The parts, one job each (the nerfstudio split):

* ray generation (:func:`generate_rays`): the camera is orthographic along +z in crop pixels;
  the head pose ``P = [[s R, t], [0, 1]]`` maps head-frame points to pixels, so a pixel's
  ray ``p(τ) = (u + .5, v + .5, τ)`` becomes the head-frame line ``q(τ) = o + τ d``;
* the head box (:func:`head_box`, :func:`intersect_aabb`): an axis-aligned box around the
  identity's mean shape, enlarged for hair, ears and chin;
* the sampler (:func:`sample_stratified`): ``n_samples`` stratified points inside the box;
* the head field (:class:`HeadField`): a multi-resolution tri-plane encoding (EG3D-style
  planes as in ER-NeRF's tri-plane hash encoder, here dense learned planes) and a small MLP
  conditioned on the landmark-motion code through ER-NeRF's region attention -> density and
  colour;
* the volume renderer (:func:`volume_render`): NeRF quadrature -> head colour and opacity;
* the torso (:class:`TorsoField`): RAD-NeRF's 2-D torso, a learned image-space feature grid
  sampled at the pixel plus a pose-conditioned offset -> torso colour and opacity;
* compositing (:func:`composite`): head over torso over the static background plate.

Units: pixel coordinates are crop pixels at ``config.resolution``; densities are per unit of
the box's normalised length (the box's largest half-extent is 1); colours are 0..1.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import geometry
from ..errors import MismatchError
from ..store import load_artifact, save_artifact

__all__ = [
    "RendererConfig",
    "TalkingHeadRenderer",
    "HeadField",
    "TorsoField",
    "TriPlaneEncoding",
    "composite",
    "distortion_loss",
    "generate_rays",
    "head_box",
    "intersect_aabb",
    "sample_stratified",
    "volume_render",
]

CONFIG_KEY = "renderer_config"


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------


@dataclass
class RendererConfig:
    """Everything that fixes the renderer's architecture and its training.

    Use :meth:`preset` (``"tiny"``, ``"quick"``, ``"full"``) and :func:`dataclasses.replace`
    for variations. Training fields are kept here too, so that a checkpoint records them and
    resuming with other values is refused.
    """

    # data
    resolution: int = 256  # square crop side, pixels
    # head box, in units of the mean shape's landmark extent along each axis
    box_x: float = 0.15  # added left and right (ears)
    box_top: float = 0.40  # added above the forehead landmarks (hair)
    box_bottom: float = 0.20  # added below the chin (the head label reaches down the neck)
    box_front: float = 0.15  # added in front of the nose tip (towards the camera, -z)
    box_back: float = 0.30  # added behind the deepest landmark (+z)
    # sampler
    n_samples: int = 16  # points per ray inside the head box
    # occupancy grid (instant-NGP / RAD-NeRF): samples in cells known to be empty are skipped
    occupancy_resolution: int = 48  # cells per axis of the head box
    occupancy_threshold: float = 0.01  # a cell is empty below this opacity per nominal sample
    occupancy_every: int = 16  # training steps between grid updates
    occupancy_warmup: int = 256  # steps before the first update (all cells occupied until then)
    # head field
    plane_resolutions: tuple[int, ...] = (32, 64, 128)
    plane_features: int = 8  # channels per plane and level
    code_dim: int = 32  # projected motion code
    hidden: int = 64  # head MLP width
    # torso field
    torso_resolutions: tuple[int, ...] = (32, 64, 128)
    torso_features: int = 8
    torso_hidden: int = 32
    torso_frequencies: int = 4  # positional-encoding octaves of the pixel position
    torso_max_offset: float = 0.05  # largest pose-driven offset, fraction of the image (normalised coords/2)
    # training
    steps: int = 9000
    rays_per_batch: int = 4096
    person_fraction: float = 0.7  # rays drawn from person pixels and a band around the head
    head_band: float = 0.04  # band around the head, fraction of the image side
    lr_grid: float = 2e-2  # planes and torso grid
    lr_mlp: float = 5e-3
    lr_final_ratio: float = 0.1  # exponential decay to lr * ratio at the last step
    alpha_weight: float = 0.1  # weight of the head/torso opacity losses
    tv_weight: float = 1e-4  # total variation of the head planes
    distortion_weight: float = 1e-3  # Mip-NeRF 360 distortion of the head weights (sharp surfaces)
    checkpoint_every: int = 500
    progress_every: int = 10

    @classmethod
    def preset(cls, name: str) -> "RendererConfig":
        """The named preset.

        * ``tiny``: unit tests and smoke runs, 64x64, trains in well under a minute on a CPU.
        * ``quick``: a 20 s clip at 256x256 in about 20-25 minutes on a 2-core CPU.
        * ``full``: 512x512 on a GPU, for a 3-5 minute video.

        Raises:
            ValueError: unknown preset name.
        """
        if name == "tiny":
            return cls(
                resolution=64, n_samples=16, occupancy_resolution=16, occupancy_warmup=100,
                plane_resolutions=(16, 32), plane_features=4, code_dim=8, hidden=32,
                torso_resolutions=(16, 32), torso_features=4, torso_hidden=16, torso_frequencies=2,
                steps=300, rays_per_batch=1024, lr_grid=3e-2, lr_mlp=1e-2, checkpoint_every=100,
            )
        if name == "quick":
            return cls()
        if name == "full":
            return cls(
                resolution=512, n_samples=32, occupancy_resolution=96,
                plane_resolutions=(64, 128, 256, 512), plane_features=16, code_dim=64, hidden=128,
                torso_resolutions=(64, 128, 256, 512), torso_features=8, torso_hidden=64, torso_frequencies=6,
                steps=60000, rays_per_batch=8192, lr_grid=1e-2, lr_mlp=2e-3, checkpoint_every=2000,
                progress_every=50,
            )
        raise ValueError(f"unknown renderer preset {name!r} (tiny, quick, full)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RendererConfig":
        """Inverse of :meth:`to_dict`, tolerant across versions.

        Fields missing from ``data`` (added since) take their defaults; fields this version
        does not know (training settings of another version) are ignored. Weights that do not
        fit the resulting architecture are caught by :meth:`TalkingHeadRenderer.load`.

        Raises:
            MismatchError: ``data`` is not a mapping or holds values of the wrong kind.
        """
        if not isinstance(data, dict):
            raise MismatchError("renderer config is not a JSON object")
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise MismatchError(f"renderer config unreadable ({exc})") from exc


# --------------------------------------------------------------------------------------
# rays, box, sampler
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# fields
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------


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
    return {"rgb": (weights[..., None] * rgb).sum(1), "alpha": weights.sum(1), "weights": weights}


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


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


def _float32(value: np.ndarray | Tensor) -> Tensor:
    """A float32 CPU tensor copy of a numpy array or tensor."""
    if isinstance(value, Tensor):
        return value.detach().to("cpu", torch.float32).clone()
    return torch.tensor(np.asarray(value, dtype=np.float32))


class TalkingHeadRenderer(nn.Module):
    """The identity's renderer: head NeRF + 2-D torso over a background plate.

    Args:
        config: architecture and training settings.
        mean_shape: ``[478, 3]`` the identity's mean shape (head frame; any scale: the poses
            map it to pixels at ``config.resolution``).
        motion_mean, motion_std: ``[204]`` statistics of the training motion ``[T, 68, 3]``
            (flattened), used to normalise the conditioning.
        pose_mean, pose_std: ``[7]`` statistics of the training poses as
            :func:`~emogene_cli.geometry.pose_to_vector` (defaults 0 and 1).

        model = TalkingHeadRenderer(cfg, mean_shape, motion.reshape(len(motion), -1).mean(0), ...)
        out = model.render_image(pose, motion[0], background)
    """

    def __init__(
        self,
        config: RendererConfig,
        mean_shape: np.ndarray | Tensor,
        motion_mean: np.ndarray | Tensor,
        motion_std: np.ndarray | Tensor,
        pose_mean: np.ndarray | Tensor | None = None,
        pose_std: np.ndarray | Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        ms = _float32(mean_shape).numpy()
        if ms.shape != (478, 3):
            raise MismatchError(f"mean shape must be [478, 3], got {list(ms.shape)}")
        lo, hi = head_box(ms, config)
        self.register_buffer("mean_shape", torch.from_numpy(ms))
        self.register_buffer("box_lo", torch.from_numpy(lo))
        self.register_buffer("box_hi", torch.from_numpy(hi))
        self.register_buffer("motion_mean", _float32(motion_mean).reshape(204))
        self.register_buffer("motion_std", _float32(motion_std).reshape(204).clamp_min(1e-4))
        self.register_buffer("pose_mean", _float32(np.zeros(7) if pose_mean is None else pose_mean).reshape(7))
        pose_std = _float32(np.ones(7) if pose_std is None else pose_std).reshape(7)
        self.register_buffer("pose_std", pose_std.clamp_min(1e-4))
        g = config.occupancy_resolution
        self.register_buffer("occupancy", torch.zeros(g, g, g))  # running max of the density per cell
        self.register_buffer("occupied", torch.ones(g, g, g, dtype=torch.bool))
        half = (hi - lo) / 2
        # nominal sample length (normalised units) of a ray crossing the box along z
        nominal = float(half[2] / half.max()) * 2.0 / config.n_samples
        self.sigma_threshold = -math.log(1.0 - config.occupancy_threshold) / nominal
        self.code = nn.Linear(204, config.code_dim)
        self.head = HeadField(config)
        self.torso = TorsoField(config)

    # ---- conditioning -------------------------------------------------------------------
    def motion_code(self, motion: Tensor) -> Tensor:
        """``motion [B, 68, 3]`` (or ``[B, 204]``) -> code ``[B, K]``."""
        m = motion.reshape(motion.shape[0], 204).to(self.motion_mean.dtype)
        return torch.tanh(self.code((m - self.motion_mean) / self.motion_std))

    def normalise_pose(self, pose_vec: Tensor) -> Tensor:
        """``[B, 7]`` pose vectors (:func:`geometry.pose_to_vector`) -> normalised ``[B, 7]``."""
        return (pose_vec.to(self.pose_mean.dtype) - self.pose_mean) / self.pose_std

    @staticmethod
    def pose_vectors(poses: Tensor) -> Tensor:
        """``[B, 4, 4]`` poses -> ``[B, 7]`` vectors (:func:`geometry.pose_to_vector`), same device."""
        vec = geometry.pose_to_vector(poses.detach().cpu().double().numpy())
        return torch.as_tensor(vec, dtype=torch.float32, device=poses.device)

    # ---- occupancy grid -----------------------------------------------------------------
    def is_occupied(self, x: Tensor) -> Tensor:
        """``x [..., 3]`` normalised box coordinates -> ``[...]`` bool: the cell may hold density."""
        g = self.config.occupancy_resolution
        cell = ((x + 1.0) * (g / 2.0)).long().clamp(0, g - 1)
        return self.occupied[cell[..., 0], cell[..., 1], cell[..., 2]]

    @torch.no_grad()
    def update_occupancy(self, codes: Tensor, *, decay: float = 0.95, samples: int = 1,
                         generator: torch.Generator | None = None, chunk: int = 1 << 16) -> float:
        """Refresh the occupancy grid (instant-NGP's density grid, as in RAD-NeRF).

        Each cell's density is evaluated at ``samples`` random points inside it, each with a
        random code from ``codes``; the grid keeps ``max(decay * old, new)``. Cells above the
        threshold, dilated by one cell (codes unseen in training may open the mouth wider),
        stay occupied.

        Args:
            codes: ``[B, K]`` motion codes (:meth:`motion_code` of training frames).

        Returns:
            The occupied fraction of the cells.
        """
        g = self.config.occupancy_resolution
        dev = self.occupancy.device
        ar = torch.arange(g, dtype=torch.float32)
        base = torch.stack(torch.meshgrid(ar, ar, ar, indexing="ij"), -1).reshape(-1, 3)  # [G^3, 3]
        value = torch.zeros(g ** 3, device=dev)
        for _ in range(samples):
            x = (-1.0 + (base + torch.rand(base.shape, generator=generator)) * (2.0 / g)).to(dev)
            which = torch.randint(0, codes.shape[0], (g ** 3,), generator=generator).to(dev)
            for i in range(0, g ** 3, chunk):
                sig, _ = self.head(x[i:i + chunk], codes[which[i:i + chunk]], with_color=False)
                value[i:i + chunk] = torch.maximum(value[i:i + chunk], sig)
        self.occupancy.copy_(torch.maximum(self.occupancy * decay, value.reshape(g, g, g)))
        occ = (self.occupancy > self.sigma_threshold).float()[None, None]
        self.occupied.copy_(F.max_pool3d(occ, 3, stride=1, padding=1)[0, 0] > 0)
        return float(self.occupied.float().mean())

    # ---- rendering ----------------------------------------------------------------------
    def _query(self, x: Tensor, code: Tensor) -> tuple[Tensor, Tensor]:
        """The head field at the occupied samples only.

        Args: ``x [H, S, 3]`` normalised samples, ``code [H|1, K]``.
        Returns: ``sigma [H, S]`` and ``rgb [H, S, 3]`` (zero where the grid says empty).
        """
        n_rays, n_s = x.shape[:2]
        keep = self.is_occupied(x).reshape(-1).nonzero()[:, 0]  # flat sample indices [N]
        if keep.numel() == 0:
            return x.new_zeros(n_rays, n_s), x.new_zeros(n_rays, n_s, 3)
        code_p = code.expand(keep.shape[0], -1) if code.shape[0] == 1 else code[keep // n_s]
        sig, col = self.head(x.reshape(-1, 3)[keep], code_p)
        sigma = x.new_zeros(n_rays * n_s).index_copy(0, keep, sig).reshape(n_rays, n_s)
        rgb = x.new_zeros(n_rays * n_s, 3).index_copy(0, keep, col).reshape(n_rays, n_s, 3)
        return sigma, rgb

    def _march(
        self, x: Tensor, deltas: Tensor, code: Tensor, group: int = 8, min_transmittance: float = 1e-3
    ) -> tuple[Tensor, Tensor]:
        """Front-to-back volume rendering in groups of samples with early ray termination.

        The same quadrature as :func:`volume_render`; rays stop once their transmittance
        falls below ``min_transmittance`` (so the result differs by less than that).

        Returns: ``rgb [H, 3]`` (premultiplied) and ``alpha [H]``.
        """
        n_rays, n_s = x.shape[:2]
        trans = x.new_ones(n_rays)
        rgb = x.new_zeros(n_rays, 3)
        alive = torch.arange(n_rays, device=x.device)
        for k in range(0, n_s, group):
            if alive.numel() == 0:
                break
            sig, col = self._query(x[alive, k:k + group], code if code.shape[0] == 1 else code[alive])
            out = volume_render(sig, col, deltas[alive, k:k + group])
            rgb[alive] += trans[alive, None] * out["rgb"]
            trans[alive] *= 1.0 - out["alpha"]
            alive = alive[trans[alive] > min_transmittance]
        return rgb, 1.0 - trans

    def render_head(
        self, pixels: Tensor, poses: Tensor, code: Tensor, *, perturb: bool = False,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Volume-render the head along pixel rays.

        Samples in cells that the occupancy grid marks empty are skipped (density 0). With
        autograd off (inference), rays also stop early once nearly opaque (:meth:`_march`).

        Args:
            pixels: ``[R, 2]`` pixel positions; poses: ``[R|1, 4, 4]``; code: ``[R|1, K]``.

        Returns:
            ``rgb [R, 3]`` (premultiplied), ``alpha [R]`` (rays that miss the box give 0);
            with autograd on also ``weights [H, S]`` of the ``H`` rays that hit the box.
        """
        r = pixels.shape[0]
        origins, directions = generate_rays(pixels, poses)
        t_near, t_far, hit = intersect_aabb(origins, directions, self.box_lo, self.box_hi)
        rgb = pixels.new_zeros(r, 3)
        alpha = pixels.new_zeros(r)
        idx = hit.nonzero()[:, 0]
        if idx.numel() == 0:
            return {"rgb": rgb, "alpha": alpha, "weights": pixels.new_zeros(0, self.config.n_samples)}
        o, d = origins[idx], directions[idx]
        t, deltas = sample_stratified(
            t_near[idx], t_far[idx], self.config.n_samples, perturb=perturb, generator=generator
        )
        q = o[:, None] + t[..., None] * d[:, None]  # [H, S, 3] head frame
        centre = (self.box_lo + self.box_hi) / 2
        half = (self.box_hi - self.box_lo) / 2
        x = ((q - centre) / half).clamp(-1, 1)
        # sample lengths in normalised units: head-frame length |d| τ over the largest half-extent
        deltas = deltas * (d.norm(dim=-1, keepdim=True) / half.max())
        code_h = code if code.shape[0] == 1 else code[idx]
        if torch.is_grad_enabled():
            sigma, col = self._query(x, code_h)
            out = volume_render(sigma, col, deltas)
            weights = out["weights"]
        else:
            out = dict(zip(("rgb", "alpha"), self._march(x, deltas, code_h)))
            weights = x.new_zeros(0, self.config.n_samples)
        rgb = rgb.index_copy(0, idx, out["rgb"])
        alpha = alpha.index_copy(0, idx, out["alpha"])
        return {"rgb": rgb, "alpha": alpha, "weights": weights}

    def render_rays(
        self,
        pixels: Tensor,
        poses: Tensor,
        motion: Tensor,
        pose_vec: Tensor,
        background: Tensor,
        *,
        perturb: bool = False,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Render pixel rays: head NeRF, torso, compositing.

        Args:
            pixels: ``[R, 2]`` pixel positions (x, y) in crop pixels (centres at ``u + 0.5``).
            poses: ``[R, 4, 4]`` per-ray head poses, or ``[1, 4, 4]`` for all rays.
            motion: ``[R|1, 68, 3]`` landmark motion (inter-ocular units).
            pose_vec: ``[R|1, 7]`` :func:`geometry.pose_to_vector` of ``poses`` (unnormalised).
            background: ``[R, 3]`` background colour, 0..1.
            perturb: jitter the samples (training).
            generator: CPU generator for the jitter.

        Returns:
            ``rgb [R, 3]`` composite, ``head_rgb [R, 3]``, ``head_alpha [R]``,
            ``torso_rgb [R, 3]``, ``torso_alpha [R]`` and, with autograd on, the head's
            volume-rendering ``weights [H, S]`` of the rays that hit the head box.
        """
        code = self.motion_code(motion)
        head = self.render_head(pixels, poses, code, perturb=perturb, generator=generator)
        uv = pixels / (self.config.resolution / 2.0) - 1.0
        torso_rgb, torso_alpha = self.torso(uv, self.normalise_pose(pose_vec))
        head_rgb = head["rgb"] / head["alpha"].clamp_min(1e-6)[:, None]
        rgb = composite(head_rgb, head["alpha"], torso_rgb, torso_alpha, background)
        return {"rgb": rgb, "head_rgb": head_rgb, "head_alpha": head["alpha"], "torso_rgb": torso_rgb,
                "torso_alpha": torso_alpha, "weights": head["weights"]}

    @torch.no_grad()
    def render_image(self, pose: Tensor, motion: Tensor, background: Tensor, *, chunk: int = 8192) -> dict[str, Tensor]:
        """Render one frame.

        Only rays that hit the head box go through the NeRF; the torso is evaluated everywhere.

        Args:
            pose: ``[4, 4]`` camera-from-head pose.
            motion: ``[68, 3]`` landmark motion.
            background: ``[H, W, 3]`` float background plate in 0..1 (``H = W = resolution``
                for the poses and mean shape to line up).
            chunk: rays per NeRF evaluation (memory bound).

        Returns:
            ``rgb [H, W, 3]`` in 0..1, ``head_alpha [H, W]``, ``torso_alpha [H, W]``.
        """
        dev = self.box_lo.device
        h, w = background.shape[:2]
        if (h, w) != (self.config.resolution, self.config.resolution):
            raise MismatchError(
                f"background is {w}x{h} but the renderer was fitted at "
                f"{self.config.resolution}x{self.config.resolution}"
            )
        bg = background.to(dev, torch.float32).reshape(-1, 3)
        pose = pose.to(dev, torch.float32)[None]
        code = self.motion_code(motion.to(dev)[None])
        pv = self.normalise_pose(self.pose_vectors(pose))
        ys, xs = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
        pixels = torch.stack([xs, ys], -1).reshape(-1, 2).to(torch.float32) + 0.5
        # cull to rays through the box's image footprint before chunking
        origins, directions = generate_rays(pixels, pose)
        _, _, hit = intersect_aabb(origins, directions, self.box_lo, self.box_hi)
        idx = hit.nonzero()[:, 0]
        head_rgb = bg.new_zeros(h * w, 3)
        head_alpha = bg.new_zeros(h * w)
        for i in range(0, idx.numel(), chunk):
            sel = idx[i:i + chunk]
            out = self.render_head(pixels[sel], pose, code)
            head_rgb[sel] = out["rgb"]
            head_alpha[sel] = out["alpha"]
        uv = pixels / (self.config.resolution / 2.0) - 1.0
        torso_rgb = bg.new_zeros(h * w, 3)
        torso_alpha = bg.new_zeros(h * w)
        for i in range(0, h * w, chunk * 4):
            torso_rgb[i:i + chunk * 4], torso_alpha[i:i + chunk * 4] = self.torso(uv[i:i + chunk * 4], pv)
        rgb = composite(head_rgb / head_alpha.clamp_min(1e-6)[:, None], head_alpha, torso_rgb, torso_alpha, bg)
        return {"rgb": rgb.clamp(0, 1).reshape(h, w, 3), "head_alpha": head_alpha.reshape(h, w),
                "torso_alpha": torso_alpha.reshape(h, w)}

    def render_frames(
        self,
        poses: np.ndarray | Tensor,
        motion: np.ndarray | Tensor,
        background: np.ndarray | Tensor,
        device: str | torch.device = "cpu",
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[np.ndarray]:
        """Render a sequence, yielding frames one by one (stream them to a video writer).

        Args:
            poses: ``[T, 4, 4]`` head poses; motion: ``[T, 68, 3]``.
            background: ``[H, W, 3]`` uint8 plate (or float 0..1).
            device: where to render; the model is moved there.
            progress: called as ``progress(done, total)`` after each frame.

        Yields:
            ``[H, W, 3]`` uint8 RGB frames.
        """
        self.to(device)
        was_training = self.training
        self.eval()
        poses_t = torch.as_tensor(np.asarray(poses), dtype=torch.float32)
        motion_t = torch.as_tensor(np.asarray(motion), dtype=torch.float32)
        bg = torch.as_tensor(np.asarray(background))
        bg = (bg.float() / 255.0 if bg.dtype == torch.uint8 else bg.float()).to(device)
        total = len(poses_t)
        try:
            with torch.inference_mode():
                for i in range(total):
                    out = self.render_image(poses_t[i], motion_t[i], bg)
                    frame = (out["rgb"] * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
                    if progress is not None:
                        progress(i + 1, total)
                    yield frame
        finally:
            self.train(was_training)

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | Path, *, producer: str, params: dict[str, Any] | None = None,
             feature_kind: str | None = None) -> Path:
        """Write weights and buffers as safetensors (atomic), config as JSON metadata."""
        return save_artifact(
            Path(path), dict(self.state_dict()), producer=producer, params=params, feature_kind=feature_kind,
            extra={CONFIG_KEY: json.dumps(self.config.to_dict(), sort_keys=True)},
        )

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "TalkingHeadRenderer":
        """Load a renderer written by :meth:`save`.

        Raises:
            NotFoundError: no such file.
            MismatchError: not a renderer, another config layout, or weights that do not fit.
        """
        art = load_artifact(Path(path), what="renderer")
        raw = art.metadata.get(CONFIG_KEY)
        if raw is None:
            raise MismatchError("not a renderer (no renderer_config in its metadata)", path=path)
        try:
            config = RendererConfig.from_dict(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise MismatchError(f"renderer config is not JSON ({exc})", path=path) from exc
        except MismatchError as exc:
            raise MismatchError(exc.message, path=path) from exc
        t = art.tensors
        try:
            model = cls(config, t["mean_shape"], t["motion_mean"], t["motion_std"], t["pose_mean"], t["pose_std"])
            model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in t.items()}, strict=True)
        except (KeyError, RuntimeError) as exc:
            raise MismatchError(f"renderer weights do not fit its config ({exc})", path=path) from exc
        return model.to(device).eval()
