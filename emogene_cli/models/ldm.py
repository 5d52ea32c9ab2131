"""The landmark deformation model (LDM) of EmoGene: neutral motion + emotion -> displacement.

EmoGene (Wang & Fu, FG 2025), motion-to-emotion stage: the neutral 68-point landmarks
(204 values) are concatenated with a learned 16-d emotion embedding (220 values) and an
MLP 220 -> 256 -> 256 -> 204 predicts a displacement that is added to the neutral landmarks;
trained with MSE on MEAD pairs (same actor, same sentence, neutral vs emotional).

Usage::

    ldm = LandmarkDeformationModel(LDMConfig())
    emotional = ldm.deform(neutral [T, 68, 3], emotion_index, intensity=1.0)  # [T, 68, 3]

Motion is in inter-ocular units (see :mod:`emogene_cli.geometry`), so the displacement
learned on MEAD actors transfers to a new identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..emotions import EMOTIONS

MOTION_DIM = 68 * 3


@dataclass
class LDMConfig:
    """Sizes of :class:`LandmarkDeformationModel` (EmoGene: embedding 16, hidden 256)."""

    embedding: int = 16
    hidden: int = 256
    num_emotions: int = len(EMOTIONS)


class LandmarkDeformationModel(nn.Module):
    """MLP ``[neutral motion (204), emotion embedding (16)] -> displacement (204)``."""

    def __init__(self, config: LDMConfig) -> None:
        super().__init__()
        self.config = config
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
