"""The landmark deformation model (LDM) of EmoGene: neutral motion + emotion -> displacement.

EmoGene (Wang & Fu, FG 2025), motion-to-emotion stage: the neutral 68-point landmarks
(204 values) are concatenated with a learned 16-d emotion embedding (220 values) and an
MLP 220 -> 256 -> 256 -> 204 predicts a displacement that is added to the neutral landmarks;
trained with MSE on MEAD pairs (same actor, same sentence, neutral vs emotional).

Usage::

    ldm = LandmarkDeformationModel(LDMConfig())
    emotional = ldm.deform(neutral [T, 68, 3], emotion_index, intensity=1.0)  # [T, 68, 3]
    emotional = neutral + ldm.mixed_displacement(neutral, weights [T, 8])   # blends, tracks

Motion is in inter-ocular units (see :mod:`emogene_cli.geometry`), so the displacement
learned on MEAD actors transfers to a new identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..emotions import EMOTIONS

MOTION_DIM = 68 * 3
DENSE_DIM = 478 * 3
BLENDSHAPES = 52
NEUTRAL = EMOTIONS.index("neutral")


@dataclass
class LDMConfig:
    """Sizes of :class:`LandmarkDeformationModel` (EmoGene: embedding 16, hidden 256)."""

    embedding: int = 16
    hidden: int = 256
    num_emotions: int = len(EMOTIONS)


class LandmarkDeformationModel(nn.Module):
    """MLP ``[neutral motion (204), emotion embedding (16)] -> displacement (204)``.

    Beside the MLP, two buffers measured on the same MEAD data by ``train-ldm``:

    * ``lift [1434, 204]``: a ridge-regression map from a 68-point displacement to all 478
      MediaPipe points fitted on the actors' emotional and
      neutral frames (:func:`~emogene_cli.geometry.fit_lift`; apply it with
      :func:`~emogene_cli.geometry.apply_lift`), so that the renderer, which is driven by the
      dense face mesh, sees the whole face move (cheeks, eyelids, the lips between the 68 points);
    * ``real_blendshape_change [8, 52]``: per emotion, the real actors' mean MediaPipe
      blendshapes on their emotional clips minus those on their neutral clips, the yardstick
      of ``evaluate``'s emotion strength (1.0 = as strong as a real actor).
    """

    def __init__(self, config: LDMConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("lift", torch.zeros(DENSE_DIM, MOTION_DIM))
        self.register_buffer("real_blendshape_change", torch.zeros(config.num_emotions, BLENDSHAPES))
        self.embedding = nn.Embedding(config.num_emotions, config.embedding)
        self.mlp = nn.Sequential(
            nn.Linear(MOTION_DIM + config.embedding, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, MOTION_DIM),
        )

    def forward(self, neutral: torch.Tensor, emotion: torch.Tensor) -> torch.Tensor:
        """Displacement for ``neutral [B, 68, 3]`` and emotion indices ``[B]`` -> ``[B, 68, 3]``.

        The ``neutral`` emotion always maps to zero displacement.
        """
        x = torch.cat([neutral.reshape(len(neutral), -1), self.embedding(emotion)], -1)
        disp = self.mlp(x).reshape(-1, 68, 3)
        is_neutral = (emotion == EMOTIONS.index("neutral")).float()[:, None, None]
        return disp * (1 - is_neutral)

    @torch.no_grad()
    def deform(self, neutral: torch.Tensor, emotion: int, intensity: float = 1.0) -> torch.Tensor:
        """Emotional motion ``neutral + intensity * displacement`` for a ``[T, 68, 3]`` sequence."""
        idx = torch.full((len(neutral),), int(emotion), dtype=torch.long, device=neutral.device)
        return neutral + intensity * self(neutral, idx)

    @torch.no_grad()
    def mixed_displacement(self, neutral: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Displacement of a per-frame mixture of emotions: ``Σ_e weights[:, e] × self(neutral, e)``.

        Args:
            neutral: ``[T, 68, 3]`` neutral motion (inter-ocular units).
            weights: ``[T, E]`` per-frame weights over :data:`~emogene_cli.emotions.EMOTIONS`,
                intensity folded in (a blend's weights sum to the intensity; all zero = neutral).

        Returns:
            ``[T, 68, 3]`` displacement to add to ``neutral``.

        Emotions are mixed in displacement space, not in embedding space: the mixture is
        linear in the weights, so weight 1 on one emotion reproduces exactly what the model
        learned for it (and ``w × e`` equals :meth:`deform` at intensity ``w``), and a weight
        that eases from 0 to 1 moves the face monotonically along the learned displacement.
        Interpolating the 16-d embeddings instead would feed the MLP embeddings it never saw
        in training (the points between two learned ones), whose output nothing constrains.
        Columns that are zero on every frame (and ``neutral``) are skipped, so a single
        emotion costs one pass of the MLP.
        """
        if weights.shape != (len(neutral), self.config.num_emotions):
            raise ValueError(f"weights shape {tuple(weights.shape)} != {(len(neutral), self.config.num_emotions)}")
        weights = weights.to(device=neutral.device, dtype=neutral.dtype)
        out = torch.zeros_like(neutral)
        for e in range(self.config.num_emotions):
            w = weights[:, e]
            if e == NEUTRAL or not bool((w != 0).any()):  # neutral's displacement is zero by construction
                continue
            idx = torch.full((len(neutral),), e, dtype=torch.long, device=neutral.device)
            out += w[:, None, None] * self(neutral, idx)
        return out
