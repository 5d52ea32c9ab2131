"""Landmark-driven deformation: points of the observed head -> the canonical (neutral) head.

The head NeRF lives in a canonical head frame shaped like the identity's mean shape. A
frame's expression is given by its dense landmarks (MediaPipe's 478-point face mesh,
canonical, i.e. with the head pose removed); each of the 468 face-mesh points ``i`` (the ten
iris points are left out: gaze is not modelled) has moved by ``d_i = c_i - m_i`` from its
mean-shape position ``m_i`` to its observed position ``c_i``. A sample point ``q`` of the
observed head is mapped back into the canonical head by the blended displacement of the
landmarks near it, fading away from the face::

    q_canonical = q - f(q) Σ_i w_i(q) d_i,
    w_i(q) = softmax_i(-|P(q - c_i)|² / 2σ²),       f(q) = exp(-max(0, min_i |P(q - c_i)| - ρ)² / 2ρ²)

where ``P`` keeps the head frame's x and y (the face's plane) and drops its depth: the
deformation is extruded in depth. Talking-head video sees the face from the front, which
fixes a colour along each line of sight but hardly its depth, so the NeRF may put the lips'
colour a little in front of or behind the tracked mesh; an extruded deformation moves the
whole line of sight with the landmark, wherever the density sits. The extrusion follows each
ray (``config.deform_extrude = "sight"``): a sample is displaced as its line of sight is where
it crosses the plane of the mean shape's mouth (:meth:`LandmarkDeformation.sightline`), so that
every sample seen through the parted lips moves with them when the head is pitched or turned.
It is exact at the mouth's depth; a feature well in front of or behind it (the nose tip, the
brows) is looked up a little off its own landmark on a turned view (about 0.03 inter-ocular
distances for the brows at 5° from the mean pose). Extruded along
the head frame's z instead (``"depth"``, renderers fitted by earlier versions), a pitched view's
ray crosses the face plane at other heights at other depths, and samples behind the lips took
the displacement of the chin or the upper lip: on obama_20s, whose training frames open the
mouth only at low pitch, the rendered mouth then narrowed at the pitched poses (rendered vs
driving r 0.66 -> 0.79 for sad on a 4 s voice, 0.82 -> 0.90 neutral, with the ray's extrusion).

This follows INSTA (Zielon et al., CVPR 2023), which moves each ray sample into a canonical
space through the nearest triangle of the tracked FLAME mesh; here the mesh is MediaPipe's
and the nearest-triangle frame is replaced by a soft nearest-landmark blend (σ), with a
fall-off (full displacement within ρ of the mesh, Gaussian beyond) so that hair, ears and the
back of the head stay rigid. Because the weights are
computed at the *observed* landmark positions, an expression never seen in training (a broad
smile, raised brows) still moves the rendered geometry where the landmarks say.

For speed only the ``k`` landmarks nearest to the point's cell in the mean shape are
candidates (a table over a ``g x g`` grid of the head box's face plane, built once with a k-d
tree), so the cost per point is ``O(k)``, not ``O(468)``. Because the deformation does not
depend on depth, rendering a frame evaluates it once on a ``m x m`` grid of the face plane
(:meth:`LandmarkDeformation.displacement_map`) and samples that map bilinearly at every ray
sample (:meth:`LandmarkDeformation.apply_map`); training tabulates every training frame's map
once (:meth:`LandmarkDeformation.displacement_maps`) and looks each sample up in its own frame's
(:meth:`LandmarkDeformation.apply_maps`), or evaluates the deformation exactly per sample when
the maps would not fit in memory.

    deform = LandmarkDeformation(mean_shape, lo, hi, iod, RendererConfig.preset("quick"))
    q_canonical = deform(q [N, 3], displacement [F, 478, 3], frame [N])   # head-frame units
    dmap = deform.displacement_map(displacement[0])                       # [3, m, m], one frame
    q_canonical = deform.apply_map(q [N, 3], dmap)
    maps = deform.displacement_maps(displacement)                         # [F, m, m, 3], every frame
    q_canonical = deform.apply_maps(q [N, 3], maps, frame [N])
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import Tensor, nn

from ... import geometry
from .config import RendererConfig

FACE_MESH_POINTS = 468  # MediaPipe's face mesh without the 10 iris points

# Expression features that condition the head field beside the geometry: what moving the
# surface cannot show (the mouth's interior and teeth as the lips part, the eyelids closing
# over the eye). 68-point indices (iBUG): inner-lip gaps and width, eyelid gaps.
_GAPS = ((61, 67), (62, 66), (63, 65), (37, 41), (38, 40), (43, 47), (44, 46))
_WIDTHS = ((60, 64),)
EXPRESSION_FEATURES = len(_GAPS) + len(_WIDTHS)
_EYELID_GAPS = [i for i, (a, b) in enumerate(_GAPS) if 36 <= a < 48]
#: the four eyelid gaps among :func:`expression_features` (contiguous in ``_GAPS``)
EYELID_FEATURES = slice(_EYELID_GAPS[0], _EYELID_GAPS[-1] + 1)
assert _EYELID_GAPS == list(range(EYELID_FEATURES.start, EYELID_FEATURES.stop)) and len(_EYELID_GAPS) == 4


def expression_features(motion: Tensor) -> Tensor:
    """Mouth-opening and eyelid features of dense motion.

    Args:
        motion: ``[B, 478, 3]`` dense landmark motion (canonical minus mean shape) in any unit.

    Returns:
        ``[B, 8]``: vertical gaps (y) of three inner-lip pairs and four eyelid pairs, and the
        inner-lip width (x), as motion differences in the input's unit (0 = as in the mean shape).
    """
    lm = motion[:, torch.as_tensor(geometry.LM68_FROM_LM478, device=motion.device)]
    gaps = [lm[:, b, 1] - lm[:, a, 1] for a, b in _GAPS]
    widths = [lm[:, b, 0] - lm[:, a, 0] for a, b in _WIDTHS]
    return torch.stack(gaps + widths, -1)


class LandmarkDeformation(nn.Module):
    """Backward deformation of head-frame points by dense landmark displacements (module docstring).

    Args:
        mean_shape: ``[478, 3]`` the identity's mean shape (head frame).
        box_lo, box_hi: ``[3]`` the head box (head frame); the candidate table covers it.
        iod: the mean shape's inter-ocular distance (head-frame units); σ, ρ and the reach are
            given in inter-ocular units by ``config``.
        config: ``deform_sigma``, ``deform_falloff``, ``deform_neighbours``, ``deform_grid``.

    No learned parameters: the buffers are derived from the mean shape and rebuilt on load.
    """

    def __init__(self, mean_shape: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray, iod: float,
                 config: RendererConfig) -> None:
        super().__init__()
        ms = np.asarray(mean_shape, dtype=np.float64)[:FACE_MESH_POINTS]
        lo, hi = np.asarray(box_lo, np.float64), np.asarray(box_hi, np.float64)
        g, k = config.deform_grid, min(config.deform_neighbours, FACE_MESH_POINTS)
        axes = [lo[a] + (np.arange(g) + 0.5) * (hi[a] - lo[a]) / g for a in range(2)]
        centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)  # cell (ix, iy) at ix * g + iy
        dist, idx = cKDTree(ms[:, :2]).query(centres, k=k)
        # cells whose points are all too far from the face for any displacement to reach them
        cell_radius = 0.5 * float(np.linalg.norm((hi - lo)[:2] / g))
        reach = (4.0 * config.deform_falloff + config.deform_reach) * iod + cell_radius
        self.grid = g
        self.inv_two_sigma2 = 1.0 / (2.0 * (config.deform_sigma * iod) ** 2)
        self.rho = config.deform_falloff * iod
        self.inv_two_rho2 = 1.0 / (2.0 * self.rho ** 2)
        self.register_buffer("control", torch.tensor(ms, dtype=torch.float32), persistent=False)
        self.register_buffer("candidates", torch.as_tensor(idx.reshape(-1, k), dtype=torch.long), persistent=False)
        self.register_buffer("near", torch.as_tensor(dist.reshape(-1, k)[:, 0] < reach), persistent=False)
        self.register_buffer("lo", torch.tensor(lo[:2], dtype=torch.float32), persistent=False)
        self.register_buffer("hi", torch.tensor(hi[:2], dtype=torch.float32), persistent=False)
        self.register_buffer("cell", torch.tensor((hi - lo)[:2] / g, dtype=torch.float32), persistent=False)
        self.map_size = config.deform_map
        mouth = np.asarray(mean_shape, dtype=np.float64)[geometry.LM68_FROM_LM478[48:68]]
        self.mouth_depth = float(mouth[:, 2].mean())  # head-frame z of the mouth's plane

    def sightline(self, q: Tensor, slope: Tensor) -> Tensor:
        """Where each point's line of sight crosses the mouth's plane (head-frame z of the mean shape's lips).

        Args:
            q: ``[..., 3]`` observed points (head frame); slope: their rays' ``dx/dz, dy/dz`` (head
                frame; zero for a frontal view, where this returns ``q``), ``[..., 2]`` or
                broadcastable to it (``[H, 1, 2]`` for ``[H, S, 3]`` samples of ``H`` rays).

        Returns:
            ``[..., 3]``: x and y moved along the ray to the mouth's plane (kept inside the head
            box's face plane), z unchanged; the deformation looked up there is the one applied
            to ``q`` (``"sight"`` extrusion).
        """
        shift = (q[..., 2:3] - self.mouth_depth) * slope
        # inside the face plane's box, where the map and the exact blend agree (both hold the border beyond)
        xy = torch.maximum(torch.minimum(q[..., :2] - shift, self.hi), self.lo)
        return torch.cat([xy, q[..., 2:]], -1)

    def _candidates(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """``q [N, 3]`` -> candidate landmark indices ``[N, k]`` of its cell and whether the cell is near the face ``[N]``."""
        g = self.grid
        cell = ((q[:, :2] - self.lo) / self.cell).long().clamp(0, g - 1)
        flat = cell[:, 0] * g + cell[:, 1]
        return self.candidates.index_select(0, flat), self.near.index_select(0, flat)

    def _blend(self, q: Tensor, cand: Tensor, disp: Tensor, frame: Tensor | None, *, fade: bool = True) -> Tensor:
        """Blended (and faded) displacement ``[M, 3]`` at ``q [M, 3]`` from candidates ``[M, k]``."""
        # gathers as index_select on flattened rows: the same values, several times faster than advanced indexing on a CPU
        rows = cand if frame is None else frame[:, None] * disp.shape[1] + cand
        d = disp.reshape(-1, 3).index_select(0, rows.reshape(-1)).reshape(*cand.shape, 3)  # [M, k, 3]
        control = self.control.index_select(0, cand.reshape(-1)).reshape(*cand.shape, 3)
        dist2 = (q[:, None, :2] - control[..., :2] - d[..., :2]).pow(2).sum(-1)  # [M, k], in the face plane
        # softmax over the k candidates, written out: faster than torch.softmax on so short a last axis
        nearest = dist2.amin(-1, keepdim=True)  # [M, 1]
        w = (dist2 - nearest).mul_(-self.inv_two_sigma2).exp_()
        w = w / w.sum(-1, keepdim=True)
        blended = torch.bmm(w[:, None], d)[:, 0]
        if not fade:
            return blended
        beyond = (nearest[:, 0].sqrt() - self.rho).clamp_min(0.0)
        return blended * torch.exp(-beyond * beyond * self.inv_two_rho2)[:, None]

    def forward(self, q: Tensor, displacement: Tensor, frame: Tensor | None = None) -> Tensor:
        """Map observed head-frame points into the canonical head.

        Two passes: the first blends the displacements of the candidate landmarks of the
        observed point's cell (no fall-off: they may all be a large displacement away); the
        second takes its candidates from the cell of that first estimate of the canonical
        point, where the point's own landmarks are, so that large displacements (an open jaw)
        are exact too, and applies the fall-off.

        Args:
            q: ``[N, 3]`` observed points (head frame).
            displacement: ``[F, 478, 3]`` (or ``[F, 468, 3]``) landmark displacements ``c - m``
                (head-frame units) of ``F`` frames.
            frame: ``[N]`` long, which frame each point belongs to (None: all frame 0).

        Returns:
            ``[N, 3]`` canonical points. No gradient flows into ``displacement``.
        """
        with torch.no_grad():
            cand, near = self._candidates(q)
            sel = near.nonzero()[:, 0]  # points near enough to the face to move
            if sel.numel() == 0:
                return q.clone()
            qs, cand = q.index_select(0, sel), cand.index_select(0, sel)
            disp = displacement  # the candidates are face-mesh points (the first 468 rows): no slice, no copy
            fs = None if frame is None else frame.index_select(0, sel)
            first = qs - self._blend(qs, cand, disp, fs, fade=False)
            moved = qs - self._blend(qs, self._candidates(first)[0], disp, fs)
            return q.index_copy(0, sel, moved)

    def displacement_map(self, displacement: Tensor) -> Tensor:
        """The deformation of one frame sampled on an ``m x m`` grid of the face plane.

        Args:
            displacement: ``[478, 3]`` (or ``[1, 478, 3]``) landmark displacements (head-frame units).

        Returns:
            ``[3, m, m]``: the displacement ``q - q_canonical`` at the grid's vertices, which
            span the head box in x (last axis) and y (middle axis), corners included.
        """
        m = self.map_size
        ys = torch.linspace(float(self.lo[1]), float(self.hi[1]), m, device=self.lo.device)
        xs = torch.linspace(float(self.lo[0]), float(self.hi[0]), m, device=self.lo.device)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        q = torch.stack([gx, gy, torch.zeros_like(gx)], -1).reshape(-1, 3)
        disp = displacement.reshape(1, -1, 3)
        return (q - self(q, disp)).T.reshape(3, m, m)

    def apply_map(self, q: Tensor, dmap: Tensor) -> Tensor:
        """Map observed points into the canonical head with a :meth:`displacement_map` (bilinear).

        Args:
            q: ``[N, 3]`` observed points (head frame); dmap: ``[3, m, m]``.

        Returns:
            ``[N, 3]`` canonical points (points outside the box's face plane keep the map's border).
        """
        uv = (q[:, :2] - self.lo) / (self.hi - self.lo) * 2.0 - 1.0  # [-1, 1], x then y as grid_sample wants
        d = F.grid_sample(dmap[None], uv[None, None], mode="bilinear", padding_mode="border", align_corners=True)
        return q - d[0, :, 0].T

    def displacement_maps(self, displacement: Tensor) -> Tensor:
        """:meth:`displacement_map` of every frame, channels last, for :meth:`apply_maps`.

        Args:
            displacement: ``[F, 478, 3]`` landmark displacements (head-frame units) of ``F`` frames.

        Returns:
            ``[F, m, m, 3]`` on ``displacement``'s device (``m = config.deform_map``; 3 F m² float32, 12 F m²
            bytes: 138 MB for 450 frames at m = 160), filled in place (no second copy). About 8 ms a frame on
            a 2-core CPU.
        """
        m = self.map_size
        out = torch.empty(displacement.shape[0], m, m, 3, device=displacement.device)
        with torch.no_grad():
            for i, d in enumerate(displacement):
                out[i] = self.displacement_map(d).permute(1, 2, 0)
        return out

    def apply_maps(self, q: Tensor, maps: Tensor, frame: Tensor | None) -> Tensor:
        """:meth:`apply_map` with a map per point: bilinear in the frame's map (border-clamped, as ``grid_sample``
        with ``align_corners=True``), written as four row gathers so that points of many frames cost one pass.

        Training looks its samples up here instead of running :meth:`forward` on each of them (obama_20s quick:
        a third of a training step), so that it deforms exactly as rendering does.

        Args:
            q: ``[N, 3]`` observed points (head frame); maps: ``[F, m, m, 3]`` (:meth:`displacement_maps`),
                on ``q``'s device; frame: ``[N]`` long, each point's frame (None: frame 0).

        Returns:
            ``[N, 3]`` canonical points (points outside the box's face plane keep the map's border).
        """
        m = maps.shape[1]
        uv = ((q[:, :2] - self.lo) / (self.hi - self.lo) * (m - 1)).clamp(0.0, m - 1.0)  # x: last map axis, y: middle
        corner = uv.floor().clamp_(max=m - 2.0)
        fx, fy = (uv - corner).unbind(-1)
        corner = corner.long()
        row = corner[:, 1] * m + corner[:, 0]
        if frame is not None:
            row = row + frame * (m * m)
        table = maps.reshape(-1, 3)
        top = torch.lerp(table.index_select(0, row), table.index_select(0, row + 1), fx[:, None])
        bottom = torch.lerp(table.index_select(0, row + m), table.index_select(0, row + m + 1), fx[:, None])
        return q - torch.lerp(top, bottom, fy[:, None])
