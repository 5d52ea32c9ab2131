"""The occupancy grid of the head (instant-NGP's density grid, as in RAD-NeRF): which cells of the canonical
head box may hold density, so that samples in empty space skip the head field.

:class:`OccupancyGrid` is a mixin of :class:`~.model.TalkingHeadRenderer`: the grid's buffers (``occupancy``
``[G, G, G]`` float, the running maximum of the density per cell, and ``occupied`` ``[G, G, G]`` bool) live
on the renderer, so that its saved files keep their layout. ``G`` is ``config.occupancy_resolution``.

    model.update_occupancy(model.motion_code(motion[pick]))   # training, every config.occupancy_every steps
    keep = model.is_occupied(x, model.inference_grid())       # rendering: cells with density only
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class OccupancyGrid:
    """Occupancy-grid methods of the renderer (a mixin; the renderer owns the buffers, ``config``,
    ``head`` and ``sigma_threshold``, the density per normalised length above which a cell counts)."""

    def is_occupied(self, x: Tensor, grid: Tensor | None = None) -> Tensor:
        """``x [..., 3]`` canonical box coordinates -> ``[...]`` bool: the cell of ``grid`` (``[G, G, G]``
        bool, default ``occupied``, the training grid) may hold density."""
        g = self.config.occupancy_resolution
        cell = ((x + 1.0) * (g / 2.0)).long().clamp_(0, g - 1)
        flat = (cell[..., 0] * g + cell[..., 1]) * g + cell[..., 2]
        return (self.occupied if grid is None else grid).reshape(-1).index_select(0, flat.reshape(-1)).reshape(flat.shape)

    def inference_grid(self) -> Tensor:
        """Cells rendering samples, ``[G, G, G]`` bool (G = ``occupancy_resolution``): in ``occupied`` and above
        the threshold, without the one-cell dilation that lets training grow into a neighbour between updates
        (obama_20s quick, one thread: a third less time a frame, frames within 67 dB PSNR). ``occupied`` when
        no cell is above the threshold (e.g. an untrained renderer: all cells occupied, no density recorded)."""
        tight = self.occupancy > self.sigma_threshold
        return tight & self.occupied if bool(tight.any()) else self.occupied

    @torch.no_grad()
    def update_occupancy(self, codes: Tensor, *, decay: float = 0.95, samples: int = 1,
                         generator: torch.Generator | None = None, chunk: int = 1 << 16) -> float:
        """Refresh the occupancy grid (instant-NGP's density grid, as in RAD-NeRF), in the canonical head.

        Each cell's density is evaluated at ``samples`` random points inside it, each with a
        random code from ``codes``; the grid keeps ``max(decay * old, new)``. Cells above the
        threshold, dilated by one cell, stay occupied.

        Args:
            codes: ``[B, K]`` expression codes (:meth:`motion_code` of training frames).

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
