"""The identity's talking-head renderer: a landmark-deformed head NeRF over a 2-D torso.

After GeneFace++ (Ye et al., 2023), RAD-NeRF (Tang et al., 2022) and ER-NeRF (Li et al.,
ICCV 2023) for the head NeRF, torso and background, and INSTA (Zielon et al., CVPR 2023)
for the deformation that lets expressions the person never made reach the image::

    model = TalkingHeadRenderer(RendererConfig.preset("quick"), mean_shape, iod, feat_mean, feat_std)
    out = model.render_image(pose [4, 4], motion [478, 3], background [H, W, 3])   # rgb [H, W, 3] 0..1
    for frame in model.render_frames(poses, motions, background, "cpu"): ...        # uint8 frames

The parts, one job each (the nerfstudio split), one module each:

* :mod:`.rays`: the orthographic head-pose camera (the head pose ``P = [[s R, t], [0, 1]]``
  maps head-frame points to pixels, so a pixel ray becomes a head-frame line), the head box
  around the identity's mean shape and the stratified sampler;
* :mod:`.deformation`: each sample of the *observed* head is moved into the *canonical*
  (mean-shape) head by the displacement of the dense face-mesh landmarks near it;
* :mod:`.fields`: the canonical head field, tri-planes + MLP, with a small expression code
  (mouth opening, eyelids) for what geometry cannot explain -> density and colour;
* :mod:`.occupancy`: the occupancy grid of the canonical head (which samples skip the field);
* :mod:`.rendering`: NeRF quadrature, distortion loss, compositing head over torso over
  the static background plate;
* :mod:`.torso`: RAD-NeRF's pose-conditioned 2-D torso.
* :mod:`.parallel`: frames of a sequence rendered in parallel on a CPU, in order.

The driving signal is *dense motion* ``[478, 3]`` per frame: canonical landmarks minus the
identity's mean shape, in inter-ocular units (see :mod:`emogene_cli.geometry`).
Units: pixel coordinates are crop pixels at ``config.resolution``; densities are per unit of
the box's normalised length (the box's largest half-extent is 1); colours are 0..1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from ... import geometry
from ...errors import MismatchError
from ...store import load_artifact, save_artifact
from .config import CONFIG_KEY, RendererConfig
from .deformation import (
    EXPRESSION_FEATURES,
    EYELID_FEATURES,
    LandmarkDeformation,
    expression_features,
)
from .fields import HeadField
from .occupancy import OccupancyGrid
from .parallel import frame_workers, in_order
from .rays import generate_rays, head_box, intersect_aabb, sample_stratified
from .rendering import composite, volume_render
from .torso import TorsoField

#: Around each eye (canonical head, inter-ocular units from the eye's centre), the expression
#: code's eyelid features follow the driving motion when :meth:`TalkingHeadRenderer.render_image`
#: is given a separate ``code_motion``: in full within EYE_CODE_RADIUS, fading to none at
#: EYE_CODE_RADIUS + EYE_CODE_FADE. The lids and the eye's whites sit well inside; the brows
#: at about 0.3, the collar beyond 1.5.
EYE_CODE_RADIUS = 0.25
EYE_CODE_FADE = 0.2

#: Head opacity above which :meth:`TalkingHeadRenderer.render_image` does not evaluate the torso
#: behind the head (its ``torso_alpha`` is 0 there): the torso would change the pixel by less
#: than 1 - OPAQUE of the colour range.
OPAQUE = 0.99975


def _float32(value: np.ndarray | Tensor | float) -> Tensor:
    """A float32 CPU tensor copy of a numpy array, tensor or number."""
    if isinstance(value, Tensor):
        return value.detach().to("cpu", torch.float32).clone()
    return torch.tensor(np.asarray(value, dtype=np.float32))


class TalkingHeadRenderer(OccupancyGrid, nn.Module):
    """The identity's renderer: deformed head NeRF + 2-D torso over a background plate.

    Args:
        config: architecture and training settings.
        mean_shape: ``[478, 3]`` the identity's mean shape (head frame; any scale: the poses
            map it to pixels at ``config.resolution``).
        iod: the mean shape's inter-ocular distance (its units); dense motion is in units of it.
        feature_mean, feature_std: ``[8]`` statistics of :func:`.deformation.expression_features`
            of the training motion, used to normalise the expression code.
        feature_min, feature_max: ``[8]`` the training range of those features; the code never
            sees values outside it (an unseen expression is the deformation's job).
        pose_mean, pose_std: ``[7]`` statistics of the training poses as
            :func:`~emogene_cli.geometry.pose_to_vector` (defaults 0 and 1).

    Raises:
        MismatchError: a mean shape that is not ``[478, 3]``.

        model = TalkingHeadRenderer(cfg, mean_shape, iod, feats.mean(0), feats.std(0), pv.mean(0), pv.std(0))
        out = model.render_image(pose, dense_motion[0], background)
    """

    def __init__(
        self,
        config: RendererConfig,
        mean_shape: np.ndarray | Tensor,
        iod: float | np.ndarray | Tensor,
        feature_mean: np.ndarray | Tensor | None = None,
        feature_std: np.ndarray | Tensor | None = None,
        pose_mean: np.ndarray | Tensor | None = None,
        pose_std: np.ndarray | Tensor | None = None,
        feature_min: np.ndarray | Tensor | None = None,
        feature_max: np.ndarray | Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        ms = _float32(mean_shape).numpy()
        if ms.shape != (478, 3):
            raise MismatchError(f"mean shape must be [478, 3], got {list(ms.shape)}")
        iod_value = float(_float32(iod).reshape(-1)[0])
        lo, hi = head_box(ms, config)
        self.register_buffer("mean_shape", torch.from_numpy(ms))
        eyes = ms[geometry.LM68_FROM_LM478[geometry.LM68_EYES]]  # 6 points per eye
        # each eye's centre (head frame), for eye_weight; derived from the mean shape, so not saved
        self.register_buffer("eye_centres", torch.from_numpy(np.stack([eyes[:6].mean(0), eyes[6:].mean(0)])),
                             persistent=False)
        self.register_buffer("iod", torch.tensor([iod_value]))
        self.register_buffer("box_lo", torch.from_numpy(lo))
        self.register_buffer("box_hi", torch.from_numpy(hi))
        n_feat = EXPRESSION_FEATURES
        self.register_buffer("feature_mean", _float32(np.zeros(n_feat) if feature_mean is None else feature_mean).reshape(n_feat))
        f_std = _float32(np.ones(n_feat) if feature_std is None else feature_std).reshape(n_feat)
        self.register_buffer("feature_std", f_std.clamp_min(1e-3))
        self.register_buffer("feature_min", _float32(np.full(n_feat, -np.inf) if feature_min is None else feature_min).reshape(n_feat))
        self.register_buffer("feature_max", _float32(np.full(n_feat, np.inf) if feature_max is None else feature_max).reshape(n_feat))
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
        self.deformation = LandmarkDeformation(ms, lo, hi, iod_value, config)
        self.code = nn.Linear(n_feat, config.code_dim)
        self.head = HeadField(config)
        self.torso = TorsoField(config)

    # ---- conditioning -------------------------------------------------------------------
    def motion_code(self, motion: Tensor) -> Tensor:
        """Dense motion ``[B, 478, 3]`` (inter-ocular units) -> expression code ``[B, K]``.

        The code sees only mouth opening and eyelid features, clipped to their training range
        and normalised by the training statistics, so that it cannot carry a whole expression
        and never extrapolates: an unseen expression is the deformation's job.
        """
        return self.code_from_features(expression_features(motion.to(self.feature_mean.dtype)))

    def code_from_features(self, f: Tensor) -> Tensor:
        """:func:`.expression_features` ``[B, 8]`` -> expression code ``[B, K]`` (clipped, normalised)."""
        f = torch.maximum(torch.minimum(f, self.feature_max), self.feature_min)
        return torch.tanh(self.code((f - self.feature_mean) / self.feature_std))

    def eye_weight(self, q: Tensor) -> Tensor:
        """How much the eye-region code applies at canonical head-frame points ``q [N, 3]`` -> ``[N]`` in 0..1.

        1 within :data:`EYE_CODE_RADIUS` inter-ocular distances of either eye's centre (the
        mean of its six 68-point landmarks in the mean shape), 0 beyond
        ``EYE_CODE_RADIUS + EYE_CODE_FADE``, linear in between.
        """
        d = torch.cdist(q, self.eye_centres.to(q.dtype)).min(-1).values / self.iod.to(q.dtype)
        return ((EYE_CODE_RADIUS + EYE_CODE_FADE - d) / EYE_CODE_FADE).clamp(0.0, 1.0)

    def normalise_pose(self, pose_vec: Tensor) -> Tensor:
        """``[B, 7]`` pose vectors (:func:`geometry.pose_to_vector`) -> normalised ``[B, 7]``."""
        return (pose_vec.to(self.pose_mean.dtype) - self.pose_mean) / self.pose_std

    @staticmethod
    def pose_vectors(poses: Tensor) -> Tensor:
        """``[B, 4, 4]`` poses -> ``[B, 7]`` vectors (:func:`geometry.pose_to_vector`), same device."""
        vec = geometry.pose_to_vector(poses.detach().cpu().double().numpy())
        return torch.as_tensor(vec, dtype=torch.float32, device=poses.device)

    def normalise_points(self, q: Tensor) -> Tensor:
        """Head-frame points ``[..., 3]`` -> box coordinates in ``[-1, 1]`` (not clamped)."""
        centre = (self.box_lo + self.box_hi) / 2
        half = (self.box_hi - self.box_lo) / 2
        return (q - centre) / half

    # ---- rendering ----------------------------------------------------------------------
    def _query(self, q: Tensor, code: Tensor, displacement: Tensor | None, frame: Tensor | None,
               dmap: Tensor | None = None, eye_code: Tensor | None = None,
               grid: Tensor | None = None, slope: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The head field at observed samples: deformation into the canonical head, occupancy test, field.

        Args:
            q: ``[H, S, 3]`` observed samples (head frame); code: ``[H|1, K]``;
            displacement: ``[F, 478, 3]`` landmark displacements (head-frame units);
            frame: ``[H]`` long frame of each ray (None: frame 0 for all);
            dmap: used instead of ``displacement`` when given: one frame's ``[3, m, m]``
                :meth:`.LandmarkDeformation.displacement_map` (rendering) or every frame's
                ``[F, m, m, 3]`` :meth:`.LandmarkDeformation.displacement_maps` (training; each sample
                in its ray's ``frame``).
            eye_code: ``[1, K]`` the code near the eyes (:meth:`eye_weight` blends it with
                ``code``); None: ``code`` everywhere.
            grid: ``[G, G, G]`` bool cells to test (:meth:`is_occupied`; None: ``occupied``, training's).
            slope: ``[H, 2]`` each ray's head-frame ``dx/dz, dy/dz`` for the ``"sight"`` extrusion (the
                deformation is looked up where the ray crosses the mouth's plane,
                :meth:`.LandmarkDeformation.sightline`); None: at the sample's own x, y (``"depth"``).

        Returns:
            ``sigma [H, S]`` and ``rgb [H, S, 3]`` (zero where the canonical cell is empty).
        """
        n_rays, n_s = q.shape[:2]
        flat_frame = None if frame is None else frame.repeat_interleave(n_s)
        flat = q.reshape(-1, 3)
        look = flat if slope is None else self.deformation.sightline(q, slope[:, None]).reshape(-1, 3)
        if dmap is not None and dmap.dim() == 4:
            q_can = self.deformation.apply_maps(look, dmap, flat_frame)
        elif dmap is not None:
            q_can = self.deformation.apply_map(look, dmap)
        else:
            q_can = self.deformation(look, displacement, flat_frame)
        if slope is not None:
            q_can = flat - (look - q_can)  # the displacement found where the line of sight crosses the mouth's plane
        x = self.normalise_points(q_can).clamp(-1, 1)
        keep = self.is_occupied(x, grid).nonzero()[:, 0]  # [N] flat sample indices
        if keep.numel() == 0:
            return q.new_zeros(n_rays, n_s), q.new_zeros(n_rays, n_s, 3)
        code_p = code.expand(keep.shape[0], -1) if code.shape[0] == 1 else code[keep // n_s]
        if eye_code is not None:
            code_p = torch.lerp(code_p, eye_code.expand_as(code_p), self.eye_weight(q_can.index_select(0, keep))[:, None])
        sig, col = self.head(x.index_select(0, keep), code_p)
        sigma = q.new_zeros(n_rays * n_s).index_copy(0, keep, sig).reshape(n_rays, n_s)
        rgb = q.new_zeros(n_rays * n_s, 3).index_copy(0, keep, col).reshape(n_rays, n_s, 3)
        return sigma, rgb

    def _march(
        self, q: Tensor, deltas: Tensor, code: Tensor, displacement: Tensor | None, frame: Tensor | None,
        dmap: Tensor | None = None, group: int = 2, min_transmittance: float = 1e-3, eye_code: Tensor | None = None,
        slope: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Front-to-back volume rendering in groups of samples with early ray termination.

        ``q [H, S, 3]``, ``deltas [H, S]``. The quadrature of :func:`volume_render` over the samples in
        :meth:`inference_grid` cells (not training's dilated grid); rays stop once their transmittance falls
        below ``min_transmittance``. ``group`` samples per ray at a time: with 2, a ray that turns opaque
        wastes at most one (obama_20s: 4 was 5% slower, 1 no faster). ``slope [H, 2]``: as :meth:`_query`.

        Returns: ``rgb [H, 3]`` (premultiplied) and ``alpha [H]``.
        """
        n_rays, n_s = q.shape[:2]
        grid = self.inference_grid()
        trans = q.new_ones(n_rays)
        rgb = q.new_zeros(n_rays, 3)
        alive = torch.arange(n_rays, device=q.device)
        for k in range(0, n_s, group):
            if alive.numel() == 0:
                break
            sig, col = self._query(q[:, k:k + group].index_select(0, alive), code if code.shape[0] == 1 else code[alive],
                                   displacement, None if frame is None else frame[alive], dmap, eye_code, grid,
                                   None if slope is None else slope.index_select(0, alive))
            out = volume_render(sig, col, deltas[:, k:k + group].index_select(0, alive))
            t_alive = trans.index_select(0, alive)
            rgb.index_add_(0, alive, out["rgb"] * t_alive[:, None])
            t_alive = t_alive * (1.0 - out["alpha"])
            trans.index_copy_(0, alive, t_alive)
            alive = alive[t_alive > min_transmittance]
        return rgb, 1.0 - trans

    def render_head(
        self, pixels: Tensor, poses: Tensor, code: Tensor, displacement: Tensor | None, frame: Tensor | None = None, *,
        dmap: Tensor | None = None, perturb: bool = False, generator: torch.Generator | None = None,
        eye_code: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Volume-render the head along pixel rays.

        Samples are deformed into the canonical head as ``config.deform_extrude`` says (``"sight"``:
        along each ray, see :meth:`.LandmarkDeformation.sightline`; ``"depth"``: along the head's z).
        Samples whose canonical position lies in an empty cell are skipped (density 0). With
        autograd off (inference), rays also stop early once nearly opaque and only cells with
        density are sampled (:meth:`_march`).

        Args:
            pixels: ``[R, 2]`` pixel positions; poses: ``[R|1, 4, 4]``; code: ``[R|1, K]``;
            displacement: ``[F, 478, 3]`` landmark displacements (head-frame units);
            frame: ``[R]`` long frame index of each ray into ``displacement`` or a 4-D ``dmap`` (None: frame 0);
            dmap: displacement map(s) used instead of ``displacement`` when given (see :meth:`_query`).
            eye_code: ``[1, K]`` the code around the eyes (see :meth:`_query`).

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
        half = (self.box_hi - self.box_lo) / 2
        # sample lengths in normalised units: head-frame length |d| τ over the largest half-extent
        deltas = deltas * (d.norm(dim=-1, keepdim=True) / half.max())
        code_h = code if code.shape[0] == 1 else code[idx]
        frame_h = None if frame is None else frame[idx]
        slope = None
        if self.config.deform_extrude == "sight":  # each ray's dx/dz, dy/dz in the head frame
            dz = d[:, 2:3]
            dz = torch.where(dz.abs() < 1e-6, torch.full_like(dz, 1e-6), dz)
            slope = (d[:, :2] / dz).clamp(-2.0, 2.0)
        if torch.is_grad_enabled():
            sigma, col = self._query(q, code_h, displacement, frame_h, dmap, eye_code, slope=slope)
            out = volume_render(sigma, col, deltas)
            weights = out["weights"]
        else:
            out = dict(zip(("rgb", "alpha"), self._march(q, deltas, code_h, displacement, frame_h, dmap, eye_code=eye_code,
                                                         slope=slope)))
            weights = q.new_zeros(0, self.config.n_samples)
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
        frame: Tensor | None = None,
        *,
        perturb: bool = False,
        generator: torch.Generator | None = None,
        maps: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Render pixel rays: deformed head NeRF, torso, compositing.

        Args:
            pixels: ``[R, 2]`` pixel positions (x, y) in crop pixels (centres at ``u + 0.5``).
            poses: ``[R, 4, 4]`` per-ray head poses, or ``[1, 4, 4]`` for all rays.
            motion: ``[F, 478, 3]`` dense landmark motion of ``F`` frames (inter-ocular units).
            pose_vec: ``[R|1, 7]`` :func:`geometry.pose_to_vector` of ``poses`` (unnormalised).
            background: ``[R, 3]`` background colour, 0..1.
            frame: ``[R]`` long, the frame of ``motion`` each ray belongs to (None: frame 0).
            perturb: jitter the samples (training).
            generator: CPU generator for the jitter.
            maps: ``[F, m, m, 3]`` :meth:`.LandmarkDeformation.displacement_maps` of ``motion * iod``: the
                samples are deformed as rendering deforms them (bilinear in the map) instead of exactly.

        Returns:
            ``rgb [R, 3]`` composite, ``head_rgb [R, 3]``, ``head_alpha [R]``,
            ``torso_rgb [R, 3]``, ``torso_alpha [R]`` and, with autograd on, the head's
            volume-rendering ``weights [H, S]`` of the rays that hit the head box.
        """
        code = self.motion_code(motion)
        displacement = motion.to(self.iod.dtype) * self.iod
        code_r = code if frame is None else code[frame]
        head = self.render_head(pixels, poses, code_r, displacement, frame, dmap=maps, perturb=perturb, generator=generator)
        uv = pixels / (self.config.resolution / 2.0) - 1.0
        torso_rgb, torso_alpha = self.torso(uv, self.normalise_pose(pose_vec))
        head_rgb = head["rgb"] / head["alpha"].clamp_min(1e-6)[:, None]
        rgb = composite(head_rgb, head["alpha"], torso_rgb, torso_alpha, background)
        return {"rgb": rgb, "head_rgb": head_rgb, "head_alpha": head["alpha"], "torso_rgb": torso_rgb,
                "torso_alpha": torso_alpha, "weights": head["weights"]}

    @torch.no_grad()
    def render_image(self, pose: Tensor, motion: Tensor, background: Tensor, *, chunk: int = 16384,
                     code_motion: Tensor | None = None) -> dict[str, Tensor]:
        """Render one frame.

        Only rays that hit the head box go through the NeRF; the torso only where the head is
        not opaque.

        Args:
            pose: ``[4, 4]`` camera-from-head pose.
            motion: ``[478, 3]`` dense landmark motion (inter-ocular units): the deformation.
            code_motion: ``[478, 3]`` motion whose mouth and eyelid features set the expression
                code (default ``motion``). Around the eyes (:meth:`eye_weight`) the eyelid
                features still come from ``motion``: ``speak`` keeps an emotion's lids out of
                the code elsewhere (pushed to the edge of its range, it changed the whole head
                and tore the collar on obama_20s), while the eyes themselves open or narrow
                in appearance (the whites, the iris showing), not only by geometry.
            background: ``[H, W, 3]`` float background plate in 0..1 (``H = W = resolution``
                for the poses and mean shape to line up).
            chunk: rays per NeRF evaluation (memory bound).

        Returns:
            ``rgb [H, W, 3]`` in 0..1, ``head_alpha [H, W]``, ``torso_alpha [H, W]`` (0 where
            the head is opaque, :data:`OPAQUE`: the torso is not evaluated behind it).

        Raises:
            MismatchError: a background of another size, or motion that is not ``[478, 3]``.
        """
        dev = self.box_lo.device
        h, w = background.shape[:2]
        if (h, w) != (self.config.resolution, self.config.resolution):
            raise MismatchError(
                f"background is {w}x{h} but the renderer was fitted at "
                f"{self.config.resolution}x{self.config.resolution}"
            )
        if tuple(motion.shape) != (478, 3):
            raise MismatchError(f"the renderer is driven by dense motion [478, 3], got {list(motion.shape)}")
        bg = background.to(dev, torch.float32).reshape(-1, 3)
        pose = pose.to(dev, torch.float32)[None]
        motion = motion.to(dev, torch.float32)[None]
        eye_code = None
        if code_motion is None:
            code = self.motion_code(motion)
        else:
            f = expression_features(code_motion.to(dev, torch.float32)[None])
            code = self.code_from_features(f)
            f_eye = f.clone()
            f_eye[:, EYELID_FEATURES] = expression_features(motion)[:, EYELID_FEATURES]
            if not torch.equal(f_eye, f):
                eye_code = self.code_from_features(f_eye)
        dmap = self.deformation.displacement_map(motion * self.iod)  # the frame's deformation, once
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
            out = self.render_head(pixels[sel], pose, code, None, dmap=dmap, eye_code=eye_code)
            head_rgb[sel] = out["rgb"]
            head_alpha[sel] = out["alpha"]
        # the torso only where it can show: under an opaque head it changes a pixel by < 1/4000
        seen = (head_alpha < OPAQUE).nonzero()[:, 0]
        uv = pixels[seen] / (self.config.resolution / 2.0) - 1.0
        torso_rgb = bg.new_zeros(h * w, 3)
        torso_alpha = bg.new_zeros(h * w)
        for i in range(0, seen.numel(), chunk * 2):
            torso_rgb[seen[i:i + chunk * 2]], torso_alpha[seen[i:i + chunk * 2]] = self.torso(uv[i:i + chunk * 2], pv)
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
        code_motion: np.ndarray | Tensor | None = None,
    ) -> Iterator[np.ndarray]:
        """Render a sequence, yielding frames one by one (stream them to a video writer).

        Args:
            poses: ``[T, 4, 4]`` head poses; motion: ``[T, 478, 3]`` dense landmark motion.
            code_motion: ``[T, 478, 3]`` motion for the expression code (see :meth:`render_image`).
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
        code_t = None if code_motion is None else torch.as_tensor(np.asarray(code_motion), dtype=torch.float32)
        bg = torch.as_tensor(np.asarray(background))
        bg = (bg.float() / 255.0 if bg.dtype == torch.uint8 else bg.float()).to(device)
        total = len(poses_t)

        def frame(i: int) -> np.ndarray:
            with torch.inference_mode():  # thread-local: entered in the thread that renders
                out = self.render_image(poses_t[i], motion_t[i], bg, code_motion=None if code_t is None else code_t[i])
                return (out["rgb"] * 255.0 + 0.5).to(torch.uint8).cpu().numpy()

        try:
            yield from in_order(frame, total, frame_workers(device, total), progress)
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
            model = cls(config, t["mean_shape"], t["iod"], t["feature_mean"], t["feature_std"], t["pose_mean"], t["pose_std"],
                        t["feature_min"], t["feature_max"])
            model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in t.items()}, strict=True)
        except (KeyError, RuntimeError) as exc:
            raise MismatchError(f"renderer weights do not fit its config ({exc}); a renderer from an older "
                                "version must be fitted again (emogene fit-identity NAME)", path=path) from exc
        return model.to(device).eval()
