"""Training the person-specific audio-to-motion VAE on the identity's own clip.

Windows of ``window`` frames (25 fps) are cut at random from the training part of the clip
(the first 90%; the last 10% is held out, as for the renderer), with the matching
``2 * window`` audio feature frames (50 Hz) and f0. Loss: mouth-weighted reconstruction +
velocity matching + a KL term warmed up over the first third of training (GeneFace++'s
recipe, minus its flow prior; see :mod:`emogene_cli.models.a2m`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .geometry import LM68_MOUTH
from .models.a2m import A2MConfig, AudioToMotionVAE


@dataclass
class A2MTraining:
    """Optimisation settings of :func:`train_a2m`."""

    steps: int = 1500
    window: int = 48
    batch: int = 16
    lr: float = 1e-3
    kl_weight: float = 0.02
    velocity_weight: float = 0.5


def train_a2m(
    features: np.ndarray,
    f0: np.ndarray,
    motion: np.ndarray,
    n_train: int,
    config: A2MConfig,
    training: A2MTraining,
    *,
    device: str = "cpu",
    seed: int = 0,
    progress: Callable[..., None] | None = None,
) -> AudioToMotionVAE:
    """Fit :class:`AudioToMotionVAE` on frames ``[0, n_train)``.

    Args:
        features: ``[2T, D]`` audio features (50 Hz); f0: ``[T]`` Hz; motion: ``[T, 68, 3]``.
        n_train: number of leading frames to train on (the rest is never seen).

    Returns:
        The trained model (eval mode, on ``device``).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AudioToMotionVAE(config).to(device)
    feats = torch.from_numpy(np.ascontiguousarray(features[: 2 * n_train])).float().to(device)
    pitch = torch.from_numpy(np.ascontiguousarray(f0[:n_train])).float().to(device)
    mot = torch.from_numpy(np.ascontiguousarray(motion[:n_train])).float().to(device)
    model.set_statistics(feats, mot)
    window = min(training.window, n_train)
    opt = torch.optim.Adam(model.parameters(), lr=training.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=training.steps, eta_min=training.lr * 0.05)
    model.train()
    for step in range(training.steps):
        starts = rng.integers(0, n_train - window + 1, size=training.batch)
        a = torch.stack([feats[2 * s : 2 * (s + window)] for s in starts])
        p = torch.stack([pitch[s : s + window] for s in starts])
        m = torch.stack([mot[s : s + window] for s in starts])
        out = model(a, p, m)
        kl_w = training.kl_weight * min(1.0, step / max(1, training.steps // 3))
        loss = out["recon"] + training.velocity_weight * out["velocity"] + kl_w * out["kl"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if progress and (step % 10 == 0 or step == training.steps - 1):
            progress("audio-to-motion", step + 1, training.steps, loss=loss.item(), kl=out["kl"].item())
    return model.eval()


def predict_motion(model: AudioToMotionVAE, features: np.ndarray, f0: np.ndarray, *, temperature: float = 0.2, seed: int = 0, device: str = "cpu") -> np.ndarray:
    """Neutral motion ``[T, 68, 3]`` for ``features [2T, D]`` and ``f0 [T]`` (one utterance)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.inference_mode():
        a = torch.from_numpy(np.ascontiguousarray(features)).float()[None].to(device)
        p = torch.from_numpy(np.ascontiguousarray(f0)).float()[None].to(device)
        out = model.sample(a, p, temperature=temperature, generator=gen)
    return out[0].cpu().numpy().astype(np.float32)


def motion_errors(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """RMS landmark error (inter-ocular units) over all 68 points and over the mouth; mouth-opening correlation."""
    err = np.linalg.norm(pred - target, axis=-1)
    open_p = pred[:, 66, 1] - pred[:, 62, 1]
    open_t = target[:, 66, 1] - target[:, 62, 1]
    corr = float(np.corrcoef(open_p, open_t)[0, 1]) if open_p.std() > 1e-8 and open_t.std() > 1e-8 else float("nan")
    return {
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "mouth_rmse": float(np.sqrt(np.mean(err[:, LM68_MOUTH] ** 2))),
        "mouth_open_corr": corr,
    }
