"""Training the audio-to-motion VAE: one loop for the generic model and for a person's model.

Usage::

    model = train_a2m_clips([[Variant(feats, f0, motion), ...], ...], A2MConfig.preset("quick", 80), A2MTraining())
    motion = predict_motion(model, features [2T, D], f0 [T], temperature=0.0)   # [T, 68, 3]

The loop (:func:`train_a2m_clips`) draws windows of ``window`` frames (25 fps) with the
matching ``2 * window`` audio feature frames (50 Hz) and f0 from a list of clips, each clip a
list of utterances (the recording and its augmented copies, see
:mod:`emogene_cli.motion.corpus`): a clip in proportion to its length, then one of its
utterances at random. Loss: mouth-weighted reconstruction + velocity matching + a KL term
warmed up over the first third of training (GeneFace++'s recipe, minus its flow prior; see
:mod:`emogene_cli.models.a2m`). It serves

* ``train-a2m``: many people, speaker-normalised inputs, augmentation
  (:func:`emogene_cli.motion.train_generic_a2m`);
* ``fit-identity``: one person, from scratch or fine-tuned from the generic model with the
  audio encoder frozen, so that the person's model keeps the generic model's voice
  independence and learns the person's own mouth (:func:`fit_person_a2m`).

Speaker normalisation (:func:`speaker_normalise`) is applied to each utterance as a whole,
before windows are cut, in training and in :func:`predict_motion` alike; the stored
datasets keep their raw features.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..audio import check_kind
from ..errors import EmogeneError, MismatchError, NotFoundError
from ..geometry import LM68_FROM_LM478, LM68_MOUTH, lip_gap
from ..interrupt import interruptible, note_kept
from ..models.a2m import A2MConfig, AudioToMotionVAE
from ..store import load_artifact, load_model, save_artifact, save_model
from .corpus import AugmentConfig, FeatureExtractor, add_variants_arrays, mouth_open
from .postprocessing import measure_mouth_gain
from .sync import SyncOffset, estimate_offset, paired_frames

#: Version of the audio-to-motion model files written here (metadata ``a2m_version``);
#: files without it are the older person-only models (raw inputs, ``input_norm="none"``).
A2M_VERSION = "2"
CHECKPOINT_KIND = "emogene-a2m-checkpoint"


@dataclass
class A2MTraining:
    """Optimisation settings of :func:`train_a2m_clips`.

    ``freeze_audio`` keeps the audio encoder (``audio_in``, ``audio_net``) fixed: fine-tuning.
    ``anchor_weight``: fine-tuning only, an L2 penalty pulling the weights towards those of the
    model fine-tuned from (L2-SP, Li et al., 2018), in the mean squared difference per weight.
    ``checkpoint_every``: steps between resumable checkpoints (when a checkpoint path is given).
    ``sync_weight``: weight of :func:`~emogene_cli.models.a2m.mouth_sync_loss` on the prior's
    mean decoding (what inference draws at temperature 0); 0 leaves it out.
    """

    steps: int = 1500
    window: int = 48
    batch: int = 16
    lr: float = 1e-3
    kl_weight: float = 0.02
    velocity_weight: float = 0.5
    sync_weight: float = 0.0
    freeze_audio: bool = False
    anchor_weight: float = 0.0
    checkpoint_every: int = 250


@dataclass
class Utterance:
    """One training utterance: ``features [2T, D]`` (50 Hz), ``f0 [T]`` Hz (0 unvoiced), ``motion [T, 68, 3]``."""

    features: np.ndarray
    f0: np.ndarray
    motion: np.ndarray


def speaker_normalise(features: np.ndarray, f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-utterance speaker normalisation of the model's audio inputs.

    Args:
        features: ``[2T, D]`` audio features of one utterance.
        f0: ``[T]`` Hz, 0 where unvoiced.

    Returns:
        ``features`` with each dimension's mean removed and variance scaled to 1 over the
        utterance (cepstral mean and variance normalisation), and ``f0`` divided by the
        utterance's median voiced f0 (0 stays 0; all zeros when nothing is voiced). The model
        takes ``log2`` of the latter: octaves relative to the speaker's median.
    """
    x = np.asarray(features, dtype=np.float32)
    x = (x - x.mean(0, keepdims=True)) / (x.std(0, keepdims=True) + 1e-5)
    f = np.asarray(f0, dtype=np.float32)
    voiced = f > 0
    rel = np.zeros_like(f)
    if voiced.any():
        rel[voiced] = f[voiced] / np.median(f[voiced])
    return x.astype(np.float32), rel


def model_inputs(config: A2MConfig, features: np.ndarray, f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the model takes for one utterance: speaker-normalised for ``input_norm="utterance"``, raw otherwise."""
    if config.input_norm == "utterance":
        return speaker_normalise(features, f0)
    return np.asarray(features, np.float32), np.asarray(f0, np.float32)


# --------------------------------------------------------------------------------------
# checkpoints (safetensors only: model, Adam moments, step, random generators)


def _save_checkpoint(path: Path, model: AudioToMotionVAE, opt: torch.optim.Adam, rng: np.random.Generator, step: int,
                     info: dict[str, Any], label: str = "audio-to-motion") -> None:
    """Write the training state after ``step`` steps to one safetensors file (atomic)."""
    tensors: dict[str, Any] = {f"model.{k}": v for k, v in model.state_dict().items()}
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        state = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                tensors[f"opt.{i}.{key}"] = state[key]
        if "step" in state:
            tensors[f"opt.{i}.step"] = torch.as_tensor(state["step"], dtype=torch.float32).reshape(1)
    tensors["rng.torch"] = torch.get_rng_state()
    device = next(model.parameters()).device
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    state = {"kind": CHECKPOINT_KIND, "step": step, "info": info, "numpy_rng": rng.bit_generator.state}
    save_artifact(path, tensors, producer="a2m-checkpoint", params={"step": step}, extra={"state": json.dumps(state, default=str)})
    note_kept(label, f"{label} checkpoint at step {step} of {info['training']['steps']}", path)


def _load_checkpoint(path: Path, model: AudioToMotionVAE, opt: torch.optim.Adam, rng: np.random.Generator,
                     info: dict[str, Any]) -> int:
    """Restore what :func:`_save_checkpoint` wrote; returns the step to continue from (0: no file).

    Raises:
        MismatchError: not a checkpoint, or made with other settings or data (names what differs).
    """
    if not path.is_file():
        return 0
    art = load_artifact(path, what="audio-to-motion checkpoint")
    try:
        state = json.loads(art.metadata["state"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise MismatchError("not an audio-to-motion checkpoint", path=path) from exc
    if state.get("kind") != CHECKPOINT_KIND:
        raise MismatchError("not an audio-to-motion checkpoint", path=path)
    saved = state.get("info") or {}
    if isinstance(saved.get("training"), dict):  # settings added since the checkpoint was written: their defaults
        saved["training"] = {**json.loads(json.dumps(asdict(A2MTraining()))), **saved["training"]}
    now = json.loads(json.dumps(info, default=str))
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diff:
        raise MismatchError(f"checkpoint was made with other settings or data (differs in: {', '.join(diff)}); "
                            "run without --resume to start over", path=path)
    t = art.tensors
    device = next(model.parameters()).device
    try:
        model.load_state_dict({k[6:]: torch.from_numpy(np.array(v)) for k, v in t.items() if k.startswith("model.")})
        params = [p for g in opt.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            if f"opt.{i}.exp_avg" in t:
                opt.state[p] = {
                    "step": torch.tensor(float(t[f"opt.{i}.step"][0])),
                    "exp_avg": torch.from_numpy(np.array(t[f"opt.{i}.exp_avg"])).to(device).reshape(p.shape),
                    "exp_avg_sq": torch.from_numpy(np.array(t[f"opt.{i}.exp_avg_sq"])).to(device).reshape(p.shape),
                }
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(torch.from_numpy(np.array(t["rng.torch"])))
        if device.type == "cuda" and "rng.cuda" in t:
            torch.cuda.set_rng_state(torch.from_numpy(np.array(t["rng.cuda"])), device)
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        raise MismatchError(f"checkpoint does not fit the model ({exc})", path=path) from exc
    return int(state["step"])


# --------------------------------------------------------------------------------------
# the loop


def train_a2m_clips(
    clips: Sequence[Sequence[Utterance]],
    config: A2MConfig,
    training: A2MTraining,
    *,
    init: AudioToMotionVAE | None = None,
    device: str = "cpu",
    seed: int = 0,
    checkpoint: Path | None = None,
    resume: bool = False,
    progress: Callable[..., None] | None = None,
    label: str = "audio-to-motion",
) -> AudioToMotionVAE:
    """Train :class:`AudioToMotionVAE` on windows of ``clips`` (see the module docstring).

    Args:
        clips: per clip, its utterances (``[0]`` the recording, then augmented copies); every
            utterance at least 2 frames long.
        config: model sizes and input normalisation (ignored when ``init`` is given).
        init: start from this model (fine-tuning); its normalisation statistics are kept.
        checkpoint: a file for resumable state, written every ``training.checkpoint_every``
            steps, when SIGINT/SIGTERM stops training (after the current step) and at the end;
            ``resume`` continues from it (at the end: returns the finished model at once).
        progress: ``progress(label, step, steps, loss=..., kl=...)``.

    Returns:
        The trained model (eval mode, on ``device``).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if init is not None:
        model = AudioToMotionVAE(init.config).to(device)
        model.load_state_dict(init.state_dict())
        config = init.config
    else:
        model = AudioToMotionVAE(config).to(device)
    prepared: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = []
    for utts in clips:
        group = []
        for u in utts:
            feats, f0 = model_inputs(config, u.features, u.f0)
            T = min(len(u.motion), len(f0), len(feats) // 2)
            group.append((torch.from_numpy(np.ascontiguousarray(feats[: 2 * T])).float().to(device),
                          torch.from_numpy(np.ascontiguousarray(f0[:T])).float().to(device),
                          torch.from_numpy(np.ascontiguousarray(u.motion[:T])).float().to(device)))
        prepared.append(group)
    if init is None:
        model.set_statistics(torch.cat([g[0][0] for g in prepared]), torch.cat([g[0][2] for g in prepared]))
    lengths = np.array([min(len(u[2]) for u in g) for g in prepared], dtype=np.float64)
    window = int(min(training.window, lengths.min()))
    weights = lengths / lengths.sum()
    if training.freeze_audio:
        for module in (model.audio_in, model.audio_net):
            for p in module.parameters():
                p.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    anchors = [p.detach().clone() for p in trainable] if (init is not None and training.anchor_weight > 0) else []
    n_weights = sum(p.numel() for p in trainable)
    opt = torch.optim.Adam(trainable, lr=training.lr)
    info = {"training": asdict(training), "config": asdict(config), "seed": seed, "clips": [len(g) for g in prepared],
            "lengths": lengths.astype(int).tolist(), "init": init is not None}
    start = _load_checkpoint(checkpoint, model, opt, rng, info) if (checkpoint is not None and resume) else 0

    def save_now(done: int) -> None:
        _save_checkpoint(checkpoint, model, opt, rng, done, info, label)

    model.train()
    eta_min = training.lr * 0.05
    for step in interruptible(range(start, training.steps), save_now if checkpoint is not None else None, what=label):
        lr = eta_min + (training.lr - eta_min) * 0.5 * (1 + math.cos(math.pi * step / training.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        a_list, p_list, m_list = [], [], []
        for c in rng.choice(len(prepared), size=training.batch, p=weights):
            feats, f0, mot = prepared[c][rng.integers(len(prepared[c]))]
            s = int(rng.integers(0, len(mot) - window + 1))
            a_list.append(feats[2 * s : 2 * (s + window)])
            p_list.append(f0[s : s + window])
            m_list.append(mot[s : s + window])
        out = model(torch.stack(a_list), torch.stack(p_list), torch.stack(m_list), sync=training.sync_weight > 0)
        kl_w = training.kl_weight * min(1.0, step / max(1, training.steps // 3))
        loss = out["recon"] + training.velocity_weight * out["velocity"] + kl_w * out["kl"]
        if training.sync_weight > 0:
            loss = loss + training.sync_weight * out["sync"]
        if anchors:
            loss = loss + training.anchor_weight * sum(((p - a) ** 2).sum() for p, a in zip(trainable, anchors)) / n_weights
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        if checkpoint is not None and training.checkpoint_every and (step + 1) % training.checkpoint_every == 0 and step + 1 < training.steps:
            save_now(step + 1)
        if progress and (step % 10 == 0 or step == training.steps - 1):
            progress(label, step + 1, training.steps, loss=loss.item(), kl=out["kl"].item())
    if checkpoint is not None and start < training.steps:
        save_now(training.steps)  # a finished run: --resume returns this model at once
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval()


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
    """Fit :class:`AudioToMotionVAE` on frames ``[0, n_train)`` of one clip (no augmentation).

    Args:
        features: ``[2T, D]`` audio features (50 Hz); f0: ``[T]`` Hz; motion: ``[T, 68, 3]``.
        n_train: number of leading frames to train on (the rest is never seen).
        checkpoint, resume: see :func:`train_a2m_clips`.

    Raises:
        MismatchError: resuming a checkpoint made with other settings or data.
        Interrupted: SIGINT or SIGTERM; the current step is finished and checkpointed first.
    """
    utt = Utterance(features[: 2 * n_train], f0[:n_train], motion[:n_train])
    return train_a2m_clips([[utt]], config, training, device=device, seed=seed, progress=progress,
                           checkpoint=checkpoint, resume=resume)


# --------------------------------------------------------------------------------------
# prediction, errors, files


def predict_motion(model: AudioToMotionVAE, features: np.ndarray, f0: np.ndarray, *, temperature: float = 0.2, seed: int = 0, device: str = "cpu") -> np.ndarray:
    """Neutral motion ``[T, 68, 3]`` (inter-ocular units) for ``features [2T, D]`` and ``f0 [T]`` Hz (one utterance).

    The inputs are speaker-normalised over the utterance first when the model expects it.
    """
    feats, pitch = model_inputs(model.config, features, f0)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.inference_mode():
        a = torch.from_numpy(np.ascontiguousarray(feats)).float()[None].to(device)
        p = torch.from_numpy(np.ascontiguousarray(pitch)).float()[None].to(device)
        out = model.sample(a, p, temperature=temperature, generator=gen)
    return out[0].cpu().numpy().astype(np.float32)


def motion_errors(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """RMS landmark error (inter-ocular units) over all 68 points and over the mouth; mouth-opening correlation."""
    err = np.linalg.norm(pred - target, axis=-1)
    open_p, open_t = lip_gap(pred), lip_gap(target)
    corr = float(np.corrcoef(open_p, open_t)[0, 1]) if open_p.std() > 1e-8 and open_t.std() > 1e-8 else float("nan")
    return {
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "mouth_rmse": float(np.sqrt(np.mean(err[:, LM68_MOUTH] ** 2))),
        "mouth_open_corr": corr,
    }


def save_a2m(path: Path, model: AudioToMotionVAE, *, producer: str, params: dict, feature_kind: str,
             extra: dict[str, str] | None = None) -> Path:
    """Save an audio-to-motion model with its version and input normalisation in the metadata."""
    meta = {"a2m_version": A2M_VERSION, "input_norm": model.config.input_norm, **(extra or {})}
    return save_model(path, model.cpu(), model.config, producer=producer, params=params, feature_kind=feature_kind, extra=meta)


def load_a2m(path: Path, *, what: str = "audio-to-motion model", device: str = "cpu", feature_kind: str | None = None):
    """Load an audio-to-motion model (``(model, artifact)``), old or new.

    Files written before speaker normalisation have no ``a2m_version``; their config has no
    ``input_norm`` and loads as ``"none"`` (raw inputs), so they behave as they always did.

    Raises:
        NotFoundError: no file. MismatchError: unreadable, a newer version, or made with other
        audio features than ``feature_kind``.
    """
    art_meta = load_artifact(path, what=what).metadata
    version = art_meta.get("a2m_version", "1")
    if version not in ("1", A2M_VERSION):
        raise MismatchError(f"{what} has version {version}; this emogene reads 1 and {A2M_VERSION}: update emogene or re-train", path=path)
    model, art = load_model(path, AudioToMotionVAE, A2MConfig, what=what, device=device)
    if feature_kind is not None and art.feature_kind:
        check_kind(art.feature_kind, feature_kind, path)
    return model, art


@dataclass
class PersonA2MResult:
    """What :func:`fit_person_a2m` trained: ``mode`` (finetune/scratch), frames used and held out, errors,
    and the recording's audio-video offset it corrected (:mod:`emogene_cli.motion.sync`)."""

    model: AudioToMotionVAE
    mode: str
    train_frames: int
    heldout_frames: int
    errors: dict[str, float] = field(default_factory=dict)
    note: str = ""
    sync: SyncOffset = field(default_factory=SyncOffset)


# --------------------------------------------------------------------------------------
# the person's model (fit-identity)

HELDOUT_SECONDS = 5.0
A2M_MODES = ("auto", "finetune", "scratch")


#: the VAE's sampling temperature in ``speak`` (GeneFace++'s value); ``fit-identity`` measures the mouth gain at it
SPEAK_TEMPERATURE = 0.2


def a2m_heldout(n_frames: int) -> int:
    """Frames at the end of a clip that the person's model never trains on.

    ``max(10 %, 5 s)`` and at most half the clip: the lip-sync figure of ``evaluate`` is
    measured on them (:mod:`emogene_cli.motion.lipsync`). They include the renderer's held-out 10 %.
    """
    return int(min(max(math.ceil(0.1 * n_frames), round(HELDOUT_SECONDS * 25)), n_frames // 2))


def resolve_a2m_mode(mode: str, store, feature_kind: str) -> tuple[str, str]:
    """``(finetune | scratch, note)`` for ``fit-identity --a2m MODE``.

    ``auto`` fine-tunes when the store has a generic model of the dataset's feature kind,
    else trains from scratch and says why in ``note``.

    Raises:
        NotFoundError: ``finetune`` without a generic model (names ``train-a2m``).
        MismatchError: ``finetune`` with a generic model of another feature kind.
        EmogeneError: an unknown mode.
    """
    if mode not in A2M_MODES:
        raise EmogeneError(f"unknown --a2m {mode!r}; choose one of: {', '.join(A2M_MODES)}", path="--a2m")
    path = store.generic_a2m_file
    if mode == "scratch":
        return "scratch", ""
    if not path.is_file():
        if mode == "finetune":
            raise NotFoundError("--a2m finetune needs a generic audio-to-motion model: run `emogene train-a2m VIDEOS_OR_DIR` first (or use --a2m scratch)", path=path)
        return "scratch", "no generic audio-to-motion model in the store (run `emogene train-a2m`): training the person's from scratch"
    kind = load_artifact(path, what="generic audio-to-motion model").feature_kind or "mel"
    if kind != feature_kind:
        if mode == "finetune":
            raise MismatchError(f"the generic audio-to-motion model uses audio features {kind!r} but the identity {feature_kind!r}; re-run train-a2m with --audio-features matching", path=path)
        return "scratch", f"the generic audio-to-motion model uses {kind!r} features, the identity {feature_kind!r}: training the person's from scratch"
    return "finetune", f"fine-tuning the generic audio-to-motion model ({store.generic_a2m_label()})"


def finetune_settings(base: A2MTraining) -> A2MTraining:
    """Fine-tuning from the generic model: 40 % of the preset's steps, lr 3e-4, audio encoder frozen,
    weights held near the generic ones (``anchor_weight`` 400).

    Without the anchor, 600 steps on obama_20s took the mouth-opening correlation on train-a2m's
    held-out people from 0.41 (generic) to 0.26: the model learned Obama's timing (his mouth
    leads his voice by 2-4 frames more than other people's) along with his mouth. Measured on
    obama_20s against a generic model at 0.47 on those people, mouth-opening r there / on
    Obama's own held-out 5 s: anchor 100: 0.37 / 0.70; 400: 0.42 / 0.68; 1000: 0.47 / 0.60
    (from scratch: 0.54 on his own). These figures predate the correction of the recording's own
    offset (:mod:`emogene_cli.motion.sync`), which removes the timing it had to learn.

    The generic model's sync loss is left out here. Kept at its weight (3) while fine-tuning
    (measured in its Pearson form, which is blind to scale), it shrank the person's mouth:
    driven by the 40 ``talking/`` clips, obama_20s's driving mouth opened a median 0.42 times
    as wide as the speakers' instead of 0.90 (after the mouth gain; 1 clip of 40 within
    0.7-1.4 instead of 37), and followed them at median r 0.66 instead of 0.77.
    """
    return A2MTraining(steps=max(20, int(base.steps * 0.4)), window=base.window, batch=base.batch, lr=3e-4,
                       kl_weight=base.kl_weight, velocity_weight=base.velocity_weight, freeze_audio=True,
                       anchor_weight=400.0)


def _generic_for(store, feature_kind: str, device: str) -> AudioToMotionVAE | None:
    """The store's (or the bundled) generic model when it uses ``feature_kind``, else None."""
    path = store.generic_a2m_file
    if not path.is_file():
        return None
    model, art = load_a2m(path, what="generic audio-to-motion model", device=device)
    return model if (art.feature_kind or "mel") == feature_kind else None


def fit_person_a2m(data, mode: str, preset: str, training: A2MTraining, *, store, device: str = "cpu", seed: int = 0,
                   augment=None, progress: Callable[..., None] | None = None, checkpoint: Path | None = None,
                   resume: bool = False) -> PersonA2MResult:
    """Train a person's audio-to-motion model on all but its held-out stretch (:func:`a2m_heldout`).

    Args:
        data: :class:`~emogene_cli.dataset.IdentityData` (images not needed).
        mode: ``finetune`` (from ``models/a2m.safetensors``, audio encoder frozen) or ``scratch``.
        training: the preset's from-scratch settings (fine-tuning derives its own, :func:`finetune_settings`).
        augment: :class:`~emogene_cli.motion.AugmentConfig` (default: 4 voice-changed copies of the
            training part; none when the dataset's feature kind cannot be recomputed here).
        checkpoint, resume: resumable training state (see :func:`train_a2m_clips`).

    The recording's audio-video offset is measured first with the generic model as the judge
    (:mod:`emogene_cli.motion.sync`; when the store has a generic model of the same audio
    features) and the model trains and is scored on the realigned pairs, so that it learns the
    person's mouth and not the recording's sync.

    Returns:
        :class:`PersonA2MResult` with held-out motion errors, mouth-opening correlation and
        standard-deviation ratio (predicted over tracked), the mouth gain that ``speak`` applies
        (:func:`~emogene_cli.motion.postprocessing.measure_mouth_gain` on the held-out stretch)
        and the offset used.
    """
    T = data.frames
    held = a2m_heldout(T)
    n = T - held
    mean68 = data.mean_shape[LM68_FROM_LM478]
    generic = _generic_for(store, data.feature_kind, device)
    sync = SyncOffset()
    if generic is not None:  # the recording's own audio-video offset, judged on the training part
        pred = predict_motion(generic, data.audio_features[: 2 * n], data.f0[:n], temperature=0.0, device=device)
        sync = estimate_offset(mouth_open(pred, mean68, data.iod), mouth_open(data.motion[:n], mean68, data.iod))
    a, v = paired_frames(0, n, sync.offset, n)  # audio and video both from the training part
    utts = [Utterance(data.audio_features[2 * a.start : 2 * a.stop], data.f0[a], data.motion[v])]
    augment = AugmentConfig() if augment is None else augment
    note = ""
    if augment.variants:
        try:
            extractor = FeatureExtractor.create(data.feature_kind, store=store, device=device)
        except Exception as exc:  # HuBERT weights not here: no augmentation
            extractor, note = None, f"no augmentation ({exc.__class__.__name__})"
        if extractor is not None:
            audio = data.audio[a.start * 640 : a.stop * 640]
            for var in add_variants_arrays(audio, data.f0[a], data.motion[v], extractor, augment, seed):
                utts.append(Utterance(var.features, var.f0, var.motion))
    if mode == "finetune":
        if generic is None:
            raise NotFoundError("--a2m finetune needs a generic audio-to-motion model of the identity's audio features", path=store.generic_a2m_file)
        model = train_a2m_clips([utts], generic.config, finetune_settings(training), init=generic, device=device, seed=seed,
                                progress=progress, label="audio-to-motion (fine-tune)", checkpoint=checkpoint, resume=resume)
    else:
        config = A2MConfig.preset(preset, audio_dim=int(data.audio_features.shape[1]))
        model = train_a2m_clips([utts], config, training, device=device, seed=seed, progress=progress, label="audio-to-motion",
                                checkpoint=checkpoint, resume=resume)
    a, v = paired_frames(n, T, sync.offset, T)
    pred = predict_motion(model, data.audio_features[2 * a.start : 2 * a.stop], data.f0[a], temperature=0.0, device=device)
    errors = motion_errors(pred, data.motion[v])
    p_open, r_open = mouth_open(pred, mean68, data.iod), mouth_open(data.motion[v], mean68, data.iod)
    errors["mouth_open_corr"] = float(np.corrcoef(p_open, r_open)[0, 1]) if p_open.std() > 1e-8 and r_open.std() > 1e-8 else float("nan")
    errors["mouth_open_sd_ratio"] = float(p_open.std() / r_open.std()) if r_open.std() > 1e-8 else float("nan")
    # the mouth gain, on the same held-out pairs, from the model sampled as speak samples it
    sampled = predict_motion(model, data.audio_features[2 * a.start : 2 * a.stop], data.f0[a], temperature=SPEAK_TEMPERATURE,
                             seed=seed, device=device)
    errors["mouth_gain"] = measure_mouth_gain(sampled, data.motion[v], data.motion[:n], mean68, data.iod)
    return PersonA2MResult(model=model, mode=mode, train_frames=n, heldout_frames=held, errors=errors, note=note, sync=sync)
