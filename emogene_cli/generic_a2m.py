"""The train-a2m stage: a generic audio-to-motion model across people, validated on unseen people.

Usage::

    report = train_generic_a2m([Path("talking/")], store=Store(), epochs=400)
    report.validation["noem"]["mouth_open_corr"], report.path      # models/a2m.safetensors

Steps: find the clips and their people (:func:`emogene_cli.a2m_data.scan_talking`); extract
landmarks and audio features (cached in the store); hold out whole people
(leave-identity-out: :func:`emogene_cli.a2m_data.split_people`); add voice-changing
augmented copies of every training clip; train the VAE with speaker-normalised inputs
(:func:`emogene_cli.train_a2m.train_a2m_clips`); measure on the held-out people's clips the
mouth-opening correlation (Pearson r at lag 0 between predicted and tracked inner-lip
opening, and the best lag within ±10 frames) and M-LMD, next to a person-only baseline: the
same VAE trained the old way (one person, raw inputs, no augmentation) on the training
person with the most speech, and driven by the held-out people's audio.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import geometry, metrics
from .a2m_data import (AugmentConfig, ClipData, FeatureExtractor, add_variants, default_val_count, load_clip,
                       mouth_open, scan_talking, split_people)
from .errors import InputError
from .models.a2m import A2MConfig, AudioToMotionVAE
from .store import Store
from .train_a2m import A2MTraining, Utterance, predict_motion, save_a2m, train_a2m_clips

Progress = Callable[..., None]
MAX_LAG = 10  # frames searched for the best lag (±0.4 s)


@dataclass
class GenericPreset:
    """Model sizes and optimisation of ``train-a2m``: ``tiny`` (tests), ``quick`` (CPU), ``full`` (GPU)."""

    name: str
    model: str
    batch: int
    window: int
    lr: float
    epochs: int

    @classmethod
    def get(cls, name: str) -> "GenericPreset":
        presets = {
            "tiny": cls("tiny", "tiny", 8, 32, 2e-3, 40),
            "quick": cls("quick", "quick", 16, 64, 1e-3, 500),
            "full": cls("full", "full", 32, 64, 5e-4, 2000),
        }
        if name not in presets:
            from .errors import EmogeneError

            raise EmogeneError(f"unknown preset {name!r}; choose one of: {', '.join(presets)}", path="--preset")
        return presets[name]


def lipsync_scores(pred: np.ndarray, data_motion: np.ndarray, mean68: np.ndarray, iod: float, poses: np.ndarray,
                   landmarks68: np.ndarray, px_scale: float, valid: np.ndarray | None = None) -> dict[str, float]:
    """Mouth-opening agreement and M-LMD of predicted motion against the tracked one.

    Args:
        pred, data_motion: ``[T, 68, 3]`` motion (inter-ocular units), predicted and tracked.
        mean68, iod: the face's 68-point mean shape (pixels) and inter-ocular distance.
        poses: ``[T, 4, 4]`` tracked head poses; landmarks68: ``[T, 68, 3]`` tracked landmarks (pixels).
        px_scale: multiplies pixel distances (e.g. to a 256-pixel crop).
        valid: ``[T]`` frames where the face was really found (M-LMD is averaged over them).

    Returns:
        ``mouth_open_corr`` (Pearson r at lag 0), ``mouth_open_best_lag`` and
        ``mouth_open_best_corr`` (within ±10 frames; negative lag: prediction early),
        ``m_lmd`` (mean inner+outer lip distance after centring each frame, pixels × px_scale), ``frames``.
    """
    p_open = mouth_open(pred, mean68, iod)
    r_open = mouth_open(data_motion, mean68, iod)
    r0, _ = metrics.lipsync_correlation(p_open, r_open, max_lag=0)
    best, lag = metrics.lipsync_correlation(p_open, r_open, max_lag=MAX_LAG)
    pred68 = geometry.transform_points(poses, mean68[None] + pred * iod)
    m_lmd = metrics.m_lmd(pred68, landmarks68, valid=valid) * px_scale
    return {"mouth_open_corr": r0, "mouth_open_best_lag": int(lag), "mouth_open_best_corr": best, "m_lmd": float(m_lmd),
            "frames": int(len(pred))}


def score_clip(model: AudioToMotionVAE, clip: ClipData, device: str = "cpu") -> dict[str, float]:
    """:func:`lipsync_scores` of ``model`` driven by the whole clip's audio (temperature 0)."""
    pred = predict_motion(model, clip.features, clip.f0, temperature=0.0, device=device)
    return lipsync_scores(pred, clip.motion, clip.mean68, clip.iod, clip.poses, clip.landmarks68, clip.px_scale, clip.found)


def pool_scores(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Frame-weighted means of per-clip scores (lags: the most common best lag)."""
    w = np.array([r["frames"] for r in rows], dtype=np.float64)
    out: dict[str, float] = {"frames": int(w.sum()), "clips": len(rows)}
    for key in ("mouth_open_corr", "mouth_open_best_corr", "m_lmd"):
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        ok = np.isfinite(vals)
        out[key] = float(np.average(vals[ok], weights=w[ok])) if ok.any() else float("nan")
    lags = [r["mouth_open_best_lag"] for r in rows]
    out["mouth_open_best_lag"] = int(max(set(lags), key=lags.count))
    return out


@dataclass
class GenericA2MReport:
    """What :func:`train_generic_a2m` did (times in seconds; M-LMD in pixels of a 256-pixel face crop)."""

    path: Path
    feature_kind: str
    feature_note: str
    train_people: list[str]
    val_people: list[str]
    clips: int
    train_frames: int
    steps: int
    epochs: int
    validation: dict[str, dict[str, Any]]
    baseline: dict[str, dict[str, Any]]
    baseline_person: str
    per_clip: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)


def _train_utterances(clips: Sequence[ClipData], with_variants: bool) -> list[list[Utterance]]:
    out = []
    for c in clips:
        utts = [Utterance(c.features, c.f0, c.motion)]
        if with_variants:
            utts += [Utterance(v.features, v.f0, v.motion) for v in c.variants]
        out.append(utts)
    return out


def train_generic_a2m(
    inputs: Sequence[str | Path],
    *,
    store: Store,
    preset: str = "quick",
    epochs: int | None = None,
    val_people: int | Sequence[str] | None = None,
    augment: AugmentConfig | None = None,
    audio_features: str = "auto",
    hubert: str | None = None,
    baseline: bool = True,
    device: str = "cpu",
    seed: int = 0,
    resume: bool = False,
    progress: Progress | None = None,
) -> GenericA2MReport:
    """Extract (cached), split by person, augment, train, validate and save ``models/a2m.safetensors``.

    Args:
        inputs: videos or folders of videos (see :func:`emogene_cli.a2m_data.scan_talking` for who is who).
        epochs: passes over the training frames (default: the preset's); one step sees
            ``batch × window`` frames.
        val_people: how many people to hold out, or their names (default 2 of 4 or more people).
        augment: voice augmentation (default :class:`AugmentConfig`; ``variants=0`` for none).
        baseline: also train the person-only baseline for comparison.
        resume: continue an interrupted run from its checkpoint (``models/a2m_checkpoint.safetensors``).

    Raises:
        NotFoundError / InputError: missing inputs, no usable clip, unknown validation people.
    """
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    cfg = GenericPreset.get(preset)
    augment = augment or AugmentConfig()
    clips = scan_talking(inputs)
    extractor = FeatureExtractor.create(audio_features, hubert=hubert, device=device, store=store)
    data: list[ClipData] = []
    skipped: list[str] = []
    cached = {"landmarks": 0, "features": 0, "augmented": 0}
    for i, clip in enumerate(clips):
        if progress:
            progress("landmarks + audio", i, len(clips))
        try:
            d = load_clip(clip, store, extractor)
        except InputError as exc:
            skipped.append(exc.one_line())
            continue
        cached["landmarks"] += d.cached["landmarks"]
        cached["features"] += d.cached["features"]
        data.append(d)
    if progress:
        progress("landmarks + audio", len(clips), len(clips))
    if not data:
        raise InputError("no usable clip (" + "; ".join(skipped[:3]) + ")", path=", ".join(str(i) for i in inputs))
    times["extract"] = time.perf_counter() - t0

    people = [d.person for d in data]
    val = default_val_count(len(set(people))) if val_people is None else val_people
    train_people, held = split_people(people, val, seed=seed)
    train = [d for d in data if d.person in train_people]
    valid = [d for d in data if d.person in held]

    t0 = time.perf_counter()
    for i, d in enumerate(train):
        if progress:
            progress("augmentation", i, len(train))
        cached["augmented"] += add_variants(d, store, extractor, augment, seed)
    if progress:
        progress("augmentation", len(train), len(train))
    times["augment"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    frames = sum(d.frames for d in train)
    n_epochs = epochs if epochs is not None else cfg.epochs
    steps = max(1, int(np.ceil(n_epochs * frames / (cfg.batch * cfg.window))))
    training = A2MTraining(steps=steps, window=cfg.window, batch=cfg.batch, lr=cfg.lr)
    config = A2MConfig.preset(cfg.model, audio_dim=int(data[0].features.shape[1]))
    model = train_a2m_clips(
        _train_utterances(train, True), config, training, device=device, seed=seed,
        checkpoint=store.models_dir / "a2m_checkpoint.safetensors", resume=resume, progress=progress, label="train",
    )
    times["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    per_clip: list[dict[str, Any]] = []
    validation: dict[str, dict[str, Any]] = {}
    for person in held:
        rows = []
        for d in (v for v in valid if v.person == person):
            row = score_clip(model, d, device)
            rows.append(row)
            per_clip.append({"person": person, "clip": d.clip.path.name, "model": "generic", **row})
        validation[person] = pool_scores(rows)
    times["validate"] = time.perf_counter() - t0

    base_scores: dict[str, dict[str, Any]] = {}
    base_person = ""
    if baseline and held:
        t0 = time.perf_counter()
        base_person = max(train_people, key=lambda p: sum(d.frames for d in train if d.person == p))
        own = [d for d in train if d.person == base_person]
        base_cfg = A2MConfig(**{**asdict(A2MConfig.preset(cfg.model, audio_dim=config.audio_dim)), "input_norm": "none", "dropout": 0.0})
        base_training = A2MTraining(steps=min(1500, steps), window=48, batch=16, lr=1e-3)
        base = train_a2m_clips(_train_utterances(own, False), base_cfg, base_training, device=device, seed=seed,
                               progress=progress, label="baseline")
        for person in held:
            rows = []
            for d in (v for v in valid if v.person == person):
                row = score_clip(base, d, device)
                rows.append(row)
                per_clip.append({"person": person, "clip": d.clip.path.name, "model": f"person-only ({base_person})", **row})
            base_scores[person] = pool_scores(rows)
        times["baseline"] = time.perf_counter() - t0

    params = {
        "inputs": [str(i) for i in inputs], "preset": preset, "epochs": n_epochs, "steps": steps, "seed": seed,
        "augment": asdict(augment), "device": device,
    }
    extra = {
        "train_people": json.dumps(train_people), "val_people": json.dumps(held),
        "val_clips": json.dumps([str(d.clip.path.resolve()) for d in valid]),
        "train_clips": json.dumps([str(d.clip.path.resolve()) for d in train]),
        "validation": json.dumps({"generic": validation, "person_only": base_scores, "person_only_trained_on": base_person},
                                 allow_nan=True),
        "train_frames": str(frames),
    }
    path = save_a2m(store.generic_a2m_path, model, producer="train-a2m", params=params, feature_kind=extractor.kind, extra=extra)
    return GenericA2MReport(
        path=path, feature_kind=extractor.kind, feature_note=extractor.note, train_people=train_people, val_people=held,
        clips=len(data), train_frames=frames, steps=steps, epochs=n_epochs, validation=validation, baseline=base_scores,
        baseline_person=base_person, per_clip=per_clip, skipped=skipped, seconds=times, cached=cached,
    )


def validation_clips(store: Store, metadata: dict[str, str]) -> list[ClipData]:
    """The held-out people's clips of a generic model (from its metadata), loaded from the cache where possible.

    Clips whose video is gone are left out; the audio features are of the model's kind.
    """
    paths = [Path(p) for p in json.loads(metadata.get("val_clips", "[]"))]
    kind = metadata.get("feature_kind", "mel")
    people = json.loads(metadata.get("val_people", "[]"))
    out: list[ClipData] = []
    if not paths:
        return out
    try:
        extractor = FeatureExtractor.create(kind, store=store)
    except Exception:
        return out  # HuBERT weights not here: cannot compute the clips' features
    from .a2m_data import TalkingClip, person_from_stem

    for p in paths:
        if not p.is_file():
            continue
        person = next((q for q in people if q == person_from_stem(p.stem) or q == p.parent.name), person_from_stem(p.stem))
        try:
            out.append(load_clip(TalkingClip(p, person), store, extractor))
        except InputError:
            continue
    return out
