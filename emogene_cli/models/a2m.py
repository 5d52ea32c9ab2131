"""Audio-to-motion (A2M): a conditional VAE from audio features (+ pitch) to landmark motion.

Follows GeneFace++'s audio-to-motion VAE (1-D convolution stacks over time; latent 16,
hidden 256 in ``full``; sampling at low temperature, 0.2, at inference) with one change:
the prior is a learned audio-conditioned Gaussian ``p(z | audio)`` instead of GeneFace++'s
normalising-flow prior, which keeps the model small enough to train on a 2-core CPU.

Usage::

    model = AudioToMotionVAE(A2MConfig(audio_dim=80))
    out = model(audio [B, 2T, 80], f0 [B, T], motion [B, T, 68, 3])   # training: recon + KL
    motion = model.sample(audio [B, 2T, 80], f0 [B, T], temperature=0.2)  # [B, T, 68, 3]

Audio features run at 50 Hz (2 per video frame); motion at 25 fps in inter-ocular units.

Speaker normalisation (``input_norm``): models made by ``train-a2m`` and ``fit-identity``
(``"utterance"``) expect their inputs normalised per utterance by
:func:`emogene_cli.motion.training.speaker_normalise`:
features with cepstral mean and variance normalisation over the utterance, and f0 divided by
the utterance's median voiced f0 (the model turns that into octaves, so a pitch-shifted
voice gives the same input). Older models (``"none"``, the default when a saved config does
not name it) take raw features and f0 in Hz, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

MOTION_DIM = 68 * 3


@dataclass
class A2MConfig:
    """Sizes of :class:`AudioToMotionVAE`. ``audio_dim`` is D of the features (80 mel, 1024 HuBERT)."""

    audio_dim: int = 80
    hidden: int = 256
    latent: int = 16
    blocks: int = 3
    kernel: int = 5
    pitch: bool = True
    input_norm: str = "none"  # "utterance": speaker-normalised inputs (see module docstring)
    dropout: float = 0.0  # dropout on the audio condition while training

    @classmethod
    def preset(cls, name: str, audio_dim: int) -> "A2MConfig":
        """``tiny`` (tests), ``quick`` (CPU) or ``full`` (GeneFace++ sizes); speaker-normalised inputs."""
        sizes = {"tiny": dict(hidden=32, latent=8, blocks=1), "quick": dict(hidden=128, latent=16, blocks=2), "full": dict(hidden=256, latent=16, blocks=4)}
        return cls(audio_dim=audio_dim, input_norm="utterance", dropout=0.1, **sizes[name])


def mouth_sync_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One minus the concordance correlation of the inner-lip opening, pooled over a batch of windows.

    ``pred``, ``target``: ``[B, T, 68, 3]`` motion in the canonical head frame (y down the
    face). The opening is the vertical gap between the inner lips (points 66 and 62): up to a
    constant per face, about the gap :func:`emogene_cli.geometry.mouth_opening` measures (exactly
    so while the gap is vertical). Each window is centred on its own mean and the products are
    pooled over the batch, so a window where the mouth hardly moves weighs little. This is Lin's
    concordance correlation ``2 cov / (var_pred + var_target)`` without its location term: the
    Pearson r times a penalty for a spread unlike the target's. A differentiable stand-in for the
    lip-sync figure the model is judged by (the role SyncNet's loss plays in GeneFace++ and
    Wav2Lip) that does not let the mouth shrink. Returns a scalar in [0, 2]: 0 for the target
    itself, 2 for its mirror image.
    """
    p = pred[:, :, 66, 1] - pred[:, :, 62, 1]
    t = target[:, :, 66, 1] - target[:, :, 62, 1]
    p = p - p.mean(1, keepdim=True)
    t = t - t.mean(1, keepdim=True)
    return 1.0 - 2.0 * (p * t).sum() / ((p * p).sum() + (t * t).sum() + 1e-12)


class ResBlock1d(nn.Module):
    """Residual 1-D convolution block over time: ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.norm = nn.GroupNorm(1, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(self.norm(x), 0.2)), 0.2))


def conv_stack(in_ch: int, hidden: int, out_ch: int, blocks: int, kernel: int) -> nn.Sequential:
    """``Conv1d(in->hidden)``, ``blocks`` residual blocks, ``Conv1d(hidden->out)``; time length kept."""
    return nn.Sequential(
        nn.Conv1d(in_ch, hidden, kernel, padding=kernel // 2),
        *[ResBlock1d(hidden, kernel) for _ in range(blocks)],
        nn.LeakyReLU(0.2),
        nn.Conv1d(hidden, out_ch, 1),
    )


class AudioToMotionVAE(nn.Module):
    """Conditional VAE: audio features [+ f0] -> per-frame 68-point landmark motion.

    Buffers ``audio_mean/std [D]`` and ``motion_mean/std [204]`` normalise inputs and outputs;
    set them with :meth:`set_statistics` before training.
    """

    def __init__(self, config: A2MConfig) -> None:
        super().__init__()
        self.config = config
        c, h = config, config.hidden
        in_audio = c.audio_dim + (2 if c.pitch else 0)
        # 50 Hz -> 25 Hz: a strided convolution halves the time axis.
        self.audio_in = nn.Sequential(nn.Conv1d(in_audio, h, 4, stride=2, padding=1), nn.LeakyReLU(0.2))
        self.audio_net = conv_stack(h, h, h, c.blocks, c.kernel)
        self.posterior = conv_stack(h + MOTION_DIM, h, 2 * c.latent, c.blocks, c.kernel)
        self.prior = conv_stack(h, h, 2 * c.latent, 1, c.kernel)
        self.decoder = conv_stack(h + c.latent, h, MOTION_DIM, c.blocks, c.kernel)
        self.drop = nn.Dropout(c.dropout)
        if c.input_norm not in ("none", "utterance"):
            raise ValueError(f"unknown input_norm {c.input_norm!r}")
        self.register_buffer("audio_mean", torch.zeros(c.audio_dim))
        self.register_buffer("audio_std", torch.ones(c.audio_dim))
        self.register_buffer("motion_mean", torch.zeros(MOTION_DIM))
        self.register_buffer("motion_std", torch.ones(MOTION_DIM))

    def set_statistics(self, audio: torch.Tensor, motion: torch.Tensor) -> None:
        """Per-dimension mean/std from training data: ``audio [N, D]``, ``motion [M, 68, 3]``."""
        self.audio_mean.copy_(audio.mean(0))
        self.audio_std.copy_(audio.std(0).clamp_min(1e-4))
        flat = motion.reshape(len(motion), -1)
        self.motion_mean.copy_(flat.mean(0))
        self.motion_std.copy_(flat.std(0).clamp_min(1e-4))

    def encode_audio(self, audio: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """``audio [B, 2T, D]``, ``f0 [B, T]`` -> condition ``[B, H, T]``.

        ``f0`` is in Hz for ``input_norm="none"``, relative to the utterance's median voiced f0
        for ``"utterance"`` (0 = unvoiced in both).
        """
        x = (audio - self.audio_mean) / self.audio_std
        if self.config.pitch:
            voiced = (f0 > 0).float()
            if self.config.input_norm == "utterance":  # octaves above / below the speaker's median
                logf0 = torch.where(f0 > 0, torch.log2(f0.clamp_min(1e-3)), torch.zeros_like(f0))
            else:
                logf0 = torch.where(f0 > 0, torch.log(f0.clamp_min(1.0)) - 5.0, torch.zeros_like(f0))
            extra = torch.stack([logf0, voiced], -1).repeat_interleave(2, dim=1)  # [B, 2T, 2]
            x = torch.cat([x, extra], -1)
        cond = self.audio_in(x.transpose(1, 2))  # [B, H, T]
        return self.drop(self.audio_net(cond))

    def _decode(self, cond: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = self.decoder(torch.cat([cond, z], 1)).transpose(1, 2)  # [B, T, 204] normalised
        out = out * self.motion_std + self.motion_mean
        return out.reshape(out.shape[0], out.shape[1], 68, 3)

    def forward(self, audio: torch.Tensor, f0: torch.Tensor, motion: torch.Tensor, sync: bool = False) -> dict[str, torch.Tensor]:
        """Training pass.

        Args:
            audio: ``[B, 2T, D]`` features; f0: ``[B, T]`` Hz; motion: ``[B, T, 68, 3]`` target.
            sync: also decode the prior's mean (what inference draws at temperature 0) and
                return its :func:`mouth_sync_loss` against ``motion`` as ``sync``.

        Returns:
            dict with ``motion`` (reconstruction ``[B, T, 68, 3]``), ``recon`` (normalised MSE,
            mouth weighted), ``kl`` (mean KL(q || p) per latent element), ``velocity``, and
            ``sync`` when asked.
        """
        cond = self.encode_audio(audio, f0)
        B, _, T = cond.shape
        target = ((motion.reshape(B, T, -1) - self.motion_mean) / self.motion_std).transpose(1, 2)
        mu_q, logvar_q = self.posterior(torch.cat([cond, target], 1)).chunk(2, 1)
        mu_p, logvar_p = self.prior(cond).chunk(2, 1)
        z = mu_q + torch.randn_like(mu_q) * torch.exp(0.5 * logvar_q)
        pred = self._decode(cond, z)
        diff = ((pred - motion).reshape(B, T, 68, 3) / self.motion_std.reshape(68, 3)) ** 2
        weights = torch.ones(68, device=diff.device)
        weights[48:68] = 3.0  # the mouth carries lip sync
        recon = (diff.mean(-1) * weights).mean() / weights.mean()
        vel = ((pred[:, 1:] - pred[:, :-1]) - (motion[:, 1:] - motion[:, :-1])) / self.motion_std.reshape(68, 3)
        kl = 0.5 * (logvar_p - logvar_q + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) / torch.exp(logvar_p) - 1)
        out = {"motion": pred, "recon": recon, "velocity": (vel ** 2).mean(), "kl": kl.mean()}
        if sync:
            out["sync"] = mouth_sync_loss(self._decode(cond, mu_p), motion)
        return out

    @torch.no_grad()
    def sample(self, audio: torch.Tensor, f0: torch.Tensor, temperature: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
        """Neutral motion for new audio: ``audio [B, 2T, D]``, ``f0 [B, T]`` -> ``[B, T, 68, 3]``.

        ``z ~ p(z | audio)`` with its standard deviation scaled by ``temperature`` (GeneFace++: 0.2).
        """
        cond = self.encode_audio(audio, f0)
        mu_p, logvar_p = self.prior(cond).chunk(2, 1)
        eps = torch.randn(mu_p.shape, generator=generator, device=mu_p.device) if generator is not None else torch.randn_like(mu_p)
        z = mu_p + temperature * eps * torch.exp(0.5 * logvar_p)
        return self._decode(cond, z)
