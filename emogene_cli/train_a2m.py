"""Training the person-specific audio-to-motion VAE on the identity's own clip.

Windows of ``window`` frames (25 fps) are cut at random from the training part of the clip
(the first 90%; the last 10% is held out, as for the renderer), with the matching
``2 * window`` audio feature frames (50 Hz) and f0. Loss: mouth-weighted reconstruction +
velocity matching + a KL term warmed up over the first third of training (GeneFace++'s
recipe, minus its flow prior; see :mod:`emogene_cli.models.a2m`).

With a ``checkpoint`` path, training stopped by SIGINT or SIGTERM saves its state after the
current step (one safetensors file: weights, optimizer, schedule and random generators), and
``resume=True`` continues from it to the same result as a run that was never stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import MismatchError
from .geometry import LM68_MOUTH
from .interrupt import interruptible, note_kept
from .models.a2m import A2MConfig, AudioToMotionVAE
from .store import load_artifact, save_artifact

CHECKPOINT_KIND = "emogene-a2m-checkpoint"


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
    checkpoint: Path | None = None,
    resume: bool = False,
) -> AudioToMotionVAE:
    """Fit :class:`AudioToMotionVAE` on frames ``[0, n_train)``.

    Args:
        features: ``[2T, D]`` audio features (50 Hz); f0: ``[T]`` Hz; motion: ``[T, 68, 3]``.
        n_train: number of leading frames to train on (the rest is never seen).
        checkpoint: a ``.safetensors`` path for the training state, written when a signal
            stops training and at the end (none when None).
        resume: continue from ``checkpoint`` if it exists.

    Returns:
        The trained model (eval mode, on ``device``).

    Raises:
        MismatchError: resuming a checkpoint made with other settings or data.
        Interrupted: SIGINT or SIGTERM; the current step is finished and checkpointed first.
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
    info = {"config": asdict(config), "training": asdict(training), "n_train": int(n_train), "seed": seed}
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        start = _load_checkpoint(Path(checkpoint), model, opt, sched, rng, info)
    save_now = partial(_save_checkpoint, Path(checkpoint), model, opt, sched, rng, info=info) if checkpoint else None
    for step in interruptible(range(start, training.steps), save_now, what="audio-to-motion"):
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
    if save_now is not None and start < training.steps:
        save_now(training.steps)
    return model.eval()


def _save_checkpoint(
    path: Path, model: AudioToMotionVAE, opt: torch.optim.Optimizer, sched: Any, rng: np.random.Generator,
    step: int, info: dict[str, Any],
) -> None:
    """Write the training state after ``step`` steps to one safetensors file (atomic)."""
    tensors: dict[str, Any] = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for key, value in st.items():
            tensors[f"optim.{i}.{key}"] = torch.as_tensor(value).reshape(-1)
    tensors["rng.torch"] = torch.get_rng_state()
    device = next(model.parameters()).device
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    state = {
        "kind": CHECKPOINT_KIND, "step": step, "info": info, "scheduler": sched.state_dict(),
        "lrs": [g["lr"] for g in opt.param_groups], "numpy_rng": rng.bit_generator.state,
    }
    save_artifact(path, tensors, producer="train_a2m", params={"step": step}, extra={"state": json.dumps(state)})
    note_kept("audio-to-motion", f"audio-to-motion checkpoint at step {step} of {info['training']['steps']}", path)


def _load_checkpoint(
    path: Path, model: AudioToMotionVAE, opt: torch.optim.Optimizer, sched: Any, rng: np.random.Generator,
    info: dict[str, Any],
) -> int:
    """Restore what :func:`_save_checkpoint` wrote; returns the step to continue from."""
    art = load_artifact(path, what="audio-to-motion checkpoint")
    try:
        state = json.loads(art.metadata["state"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise MismatchError("not an audio-to-motion checkpoint", path=path) from exc
    if state.get("kind") != CHECKPOINT_KIND:
        raise MismatchError("not an audio-to-motion checkpoint", path=path)
    saved = state.get("info") or {}
    diff = sorted(k for k in set(saved) | set(info) if saved.get(k) != info.get(k))
    if diff:
        raise MismatchError(f"checkpoint was made with other settings or data (differs in: {', '.join(diff)})", path=path)
    t = art.tensors
    try:
        model.load_state_dict({k[6:]: torch.from_numpy(np.array(v)) for k, v in t.items() if k.startswith("model.")})
        params = [p for g in opt.param_groups for p in g["params"]]
        optim: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in t.items():
            if key.startswith("optim."):
                _, i, name = key.split(".", 2)
                optim.setdefault(int(i), {})[name] = torch.from_numpy(np.array(value))
        for i, st in optim.items():
            st["step"] = st["step"].reshape(())
            st["exp_avg"] = st["exp_avg"].reshape(params[i].shape)
            st["exp_avg_sq"] = st["exp_avg_sq"].reshape(params[i].shape)
        opt.load_state_dict({"state": optim, "param_groups": opt.state_dict()["param_groups"]})
        for group, lr in zip(opt.param_groups, state["lrs"]):
            group["lr"] = lr
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(torch.from_numpy(np.array(t["rng.torch"])))
        device = next(model.parameters()).device
        if device.type == "cuda" and "rng.cuda" in t:
            torch.cuda.set_rng_state(torch.from_numpy(np.array(t["rng.cuda"])), device)
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        raise MismatchError(f"checkpoint does not fit the model ({exc})", path=path) from exc
    return int(state["step"])


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
