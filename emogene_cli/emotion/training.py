"""Training the landmark deformation model (LDM) on MEAD.

Stage of EmoGene's motion-to-emotion step. Input is a folder in MEAD's own layout::

    <actor>/video/front/<emotion>/level_<n>/<sentence>.mp4

For each actor the neutral clips define the actor's mean shape; every clip's landmarks
(MediaPipe, cached in the store) become 68-point motion relative to it, in inter-ocular
units. Each emotional clip is paired with the same actor's neutral clip of the same
sentence and aligned in time by dynamic time warping (librosa) on the mouth motion with
each sequence's mean removed, so that lips saying the same syllable line up whatever the
emotion does to the mouth's rest shape. The LDM learns ``emotional - neutral`` per aligned
frame. The last 20% of each pair (in time) is held out for the per-emotion validation error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .. import geometry
from ..emotions import ALIASES, EMOTIONS
from ..errors import InputError, NotFoundError
from ..face import cached_track
from ..interrupt import note_kept
from ..models.ldm import LandmarkDeformationModel, LDMConfig
from ..store import Store, save_model

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class MeadClip:
    """One MEAD clip: ``<actor>/video/front/<emotion>/level_<level>/<sentence>.mp4``."""

    actor: str
    emotion: str
    level: int
    sentence: str
    path: Path

    @property
    def key(self) -> str:
        return f"{self.actor}__{self.emotion}__level_{self.level}__{self.sentence}"


def scan_mead(data_dir: str | Path) -> list[MeadClip]:
    """All front-view clips under ``data_dir`` in MEAD's layout, sorted.

    Raises:
        NotFoundError: ``data_dir`` does not exist.
        InputError: no clip in the expected layout, or an actor without a neutral clip.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise NotFoundError("MEAD folder not found", path=root)
    clips = []
    for path in sorted(root.glob("*/video/front/*/level_*/*.mp4")):
        emotion = path.parent.parent.name.lower()
        emotion = ALIASES.get(emotion, emotion)
        m = re.fullmatch(r"level_(\d+)", path.parent.name)
        if emotion not in EMOTIONS or not m:
            continue
        clips.append(MeadClip(path.parents[4].name, emotion, int(m.group(1)), path.stem, path))
    if not clips:
        raise InputError("no MEAD clips found (expected <actor>/video/front/<emotion>/level_<n>/<sentence>.mp4)", path=root)
    for actor in sorted({c.actor for c in clips}):
        if not any(c.actor == actor and c.emotion == "neutral" for c in clips):
            raise InputError(f"actor {actor} has no neutral clip (needed to pair the emotional ones)", path=root / actor / "video" / "front")
    return clips


def mead_clip_track(clip: MeadClip, store: Store) -> tuple[np.ndarray, np.ndarray]:
    """``[T, 478, 3]`` landmarks (pixels) and ``[T, 52]`` blendshapes of a clip, cached in ``<store>/models/mead_cache``.

    The cache entry (:func:`emogene_cli.face.cached_track`, shared with train-a2m) is reused
    only while the clip's size and modification time match; older entries are recomputed.

    Raises:
        InputError: a face was found in fewer than half of the frames.
    """

    track, _ = cached_track(clip.path, store.mead_cache_dir / f"{clip.key}.safetensors", store, producer="train-ldm")
    found = track["found"].astype(bool)
    frac = float(found.mean()) if len(found) else 0.0
    if frac < 0.5:
        raise InputError(f"a face was found in only {frac:.0%} of frames", path=clip.path)
    return track["landmarks"], track["blendshapes"][found]


def clip_landmarks(clip: MeadClip, store: Store) -> np.ndarray:
    """``[T, 478, 3]`` landmarks (pixels) of a clip (:func:`mead_clip_track`, cached)."""
    return mead_clip_track(clip, store)[0]


def actor_motions(landmarks: dict[MeadClip, np.ndarray]) -> dict[MeadClip, np.ndarray]:
    """Dense motion ``[T, 478, 3]`` of each clip of ONE actor, relative to the actor's neutral mean shape.

    In inter-ocular units (:func:`geometry.dense_motion`); its 68-point subset
    ``[:, geometry.LM68_FROM_LM478]`` is the motion the LDM works on.
    """
    neutral = np.concatenate([lm for c, lm in landmarks.items() if c.emotion == "neutral"], 0)
    mean = geometry.mean_shape(neutral)
    iod = geometry.interocular_distance(mean)
    out = {}
    for clip, lm in landmarks.items():
        canon = geometry.to_canonical(lm, geometry.estimate_poses(lm, mean))
        out[clip] = geometry.dense_motion(canon, mean, iod)
    return out


def actor_blendshape_changes(blendshapes: dict[MeadClip, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Per actor and emotion, the mean blendshapes on the emotional clips minus those on the neutral ones.

    Args:
        blendshapes: ``[T, 52]`` MediaPipe blendshape scores (0..1) per clip.

    Returns:
        ``{actor: {emotion: [52]}}`` for each emotion the actor has beside a neutral clip.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for actor in sorted({c.actor for c in blendshapes}):
        neutral = [b for c, b in blendshapes.items() if c.actor == actor and c.emotion == "neutral"]
        if not neutral:
            continue
        rest = np.concatenate(neutral).mean(0)
        for emotion in EMOTIONS:
            emo = [b for c, b in blendshapes.items() if c.actor == actor and c.emotion == emotion]
            if emo and emotion != "neutral":
                out.setdefault(actor, {})[emotion] = np.concatenate(emo).mean(0) - rest
    return out


def real_blendshape_change(blendshapes: dict[MeadClip, np.ndarray]) -> np.ndarray:
    """Per emotion, the actors' mean blendshapes on emotional clips minus those on their neutral clips.

    Args:
        blendshapes: ``[T, 52]`` per clip.

    Returns:
        ``[8, 52]`` float32 over :data:`EMOTIONS`, averaged over the actors that have the
        emotion (:func:`actor_blendshape_changes`; rows of emotions no actor has, and
        ``neutral``, are zero).
    """
    per_actor = actor_blendshape_changes(blendshapes)
    out = np.zeros((len(EMOTIONS), 52), np.float32)
    for k, emotion in enumerate(EMOTIONS):
        changes = [mine[emotion] for mine in per_actor.values() if emotion in mine]
        if changes:
            out[k] = np.mean(changes, 0)
    return out


def reference_blendshape_change(data_dirs: str | Path | list[str | Path], store: Store, *,
                                exclude: list[str] | tuple[str, ...] = ()) -> tuple[np.ndarray, list[str]]:
    """The real blendshape change of the actors in ``data_dirs`` that are not in ``exclude``: the
    yardstick of a rendered emotion that an LDM trained on ``exclude`` never saw.

    Args:
        data_dirs: folders in MEAD's layout (:func:`scan_actors`); landmarks and blendshapes
            are tracked once and cached in the store (:func:`mead_clip_track`).
        exclude: actors to leave out (the LDM's training actors).

    Returns:
        ``[8, 52]`` (:func:`real_blendshape_change`) and the sorted actors it averages.

    Raises:
        NotFoundError / InputError: as :func:`scan_actors`; InputError also when every actor
            there is excluded.
    """
    excluded = set(exclude)
    clips = [c for c in scan_actors(data_dirs) if c.actor not in excluded]
    if not clips:
        raise InputError(f"every actor here trained the LDM in use ({', '.join(sorted(exclude))}): "
                         "give actors it did not train on", path=data_roots(data_dirs)[0])
    blendshapes = {c: mead_clip_track(c, store)[1] for c in clips}
    return real_blendshape_change(blendshapes), sorted({c.actor for c in clips})


def dtw_align(neutral: np.ndarray, emotional: np.ndarray) -> np.ndarray:
    """For each emotional frame, the index of its DTW-matched neutral frame.

    Args:
        neutral: ``[Tn, 68, 3]`` motion; emotional: ``[Te, 68, 3]`` motion.

    Returns:
        ``[Te]`` int indices into ``neutral`` (monotonic non-decreasing).

    Alignment features are the mouth points (48-67) with each sequence's mean removed.
    """
    import librosa

    def feats(m: np.ndarray) -> np.ndarray:
        mouth = m[:, geometry.LM68_MOUTH].reshape(len(m), -1)
        return (mouth - mouth.mean(0)).T.astype(np.float64)

    _, path = librosa.sequence.dtw(X=feats(neutral), Y=feats(emotional), metric="euclidean")
    path = path[::-1]  # librosa returns it end to start
    match = np.zeros(len(emotional), dtype=np.int64)
    seen = np.zeros(len(emotional), dtype=bool)
    for i, j in path:
        if not seen[j]:
            match[j], seen[j] = i, True
    return match


@dataclass
class PairSet:
    """Aligned training pairs: neutral ``[N, 68, 3]``, displacement ``[N, 68, 3]``, emotion ``[N]``,
    is_val ``[N]`` and the actor of each frame ``[N]`` (str)."""

    neutral: np.ndarray
    displacement: np.ndarray
    emotion: np.ndarray
    is_val: np.ndarray
    pairs: list[tuple[str, str, str]] = field(default_factory=list)  # (actor, emotion, sentence)
    actor: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))


def build_pairs(motions: dict[MeadClip, np.ndarray], val_fraction: float = 0.2) -> PairSet:
    """Pair every emotional clip with its actor's neutral clip of the same sentence (lowest level)."""
    neutral_of = {}
    for clip in sorted(motions, key=lambda c: c.level):
        if clip.emotion == "neutral":
            neutral_of.setdefault((clip.actor, clip.sentence), clip)
    parts: dict[str, list[np.ndarray]] = {"neutral": [], "displacement": [], "emotion": [], "is_val": [], "actor": []}
    pairs = []
    for clip, emo in sorted(motions.items(), key=lambda kv: kv[0].key):
        if clip.emotion == "neutral":
            continue
        ref = neutral_of.get((clip.actor, clip.sentence))
        if ref is None:
            continue  # this sentence was not recorded neutrally for this actor
        neu = motions[ref]
        match = dtw_align(neu, emo)
        n = len(emo)
        is_val = np.arange(n) >= int(round(n * (1 - val_fraction)))
        parts["neutral"].append(neu[match])
        parts["displacement"].append(emo - neu[match])
        parts["emotion"].append(np.full(n, EMOTIONS.index(clip.emotion)))
        parts["is_val"].append(is_val)
        parts["actor"].append(np.full(n, clip.actor))
        pairs.append((clip.actor, clip.emotion, clip.sentence))
    if not pairs:
        raise InputError("no emotional clip has a neutral clip of the same actor and sentence")
    return PairSet(
        neutral=np.concatenate(parts["neutral"]).astype(np.float32),
        displacement=np.concatenate(parts["displacement"]).astype(np.float32),
        emotion=np.concatenate(parts["emotion"]).astype(np.int64),
        is_val=np.concatenate(parts["is_val"]),
        pairs=pairs,
        actor=np.concatenate(parts["actor"]),
    )


@dataclass
class LDMReport:
    """What :func:`train_ldm` did. Errors are RMS landmark errors in inter-ocular units."""

    clips: int
    actors: list[str]
    pairs: int
    train_frames: int
    val_frames: int
    epochs: int
    val_error: dict[str, float]
    baseline_error: dict[str, float]
    real_size: dict[str, float]  # mean |time-averaged displacement| over the 68 points, real pairs
    predicted_size: dict[str, float]  # the same of the LDM's prediction on the same validation frames
    path: Path
    leave_one_out: list["HeldOutActor"] = field(default_factory=list)


def data_roots(data_dirs: str | Path | Sequence[str | Path]) -> list[Path]:
    """One folder or several as a list of paths (train-ldm and the reference actors take either).

    Raises:
        InputError: no folder given.
    """
    roots = [Path(data_dirs)] if isinstance(data_dirs, (str, Path)) else [Path(d) for d in data_dirs]
    if not roots:
        raise InputError("no data folder given")
    return roots


def scan_actors(data_dirs: str | Path | list[str | Path]) -> list[MeadClip]:
    """:func:`scan_mead` over one or several folders in MEAD's layout (MEAD, CREMA-D laid out
    the same way), sorted.

    Raises:
        NotFoundError / InputError: as :func:`scan_mead`; InputError also when two folders hold
            an actor of the same name (actor names must be unique: they pair clips).
    """
    roots = data_roots(data_dirs)
    clips: list[MeadClip] = []
    seen: dict[str, Path] = {}
    for root in roots:
        found = scan_mead(root)
        for actor in sorted({c.actor for c in found}):
            if actor in seen:
                raise InputError(f"actor {actor} is also in {seen[actor]}: actor names must be unique", path=root)
            seen[actor] = Path(root)
        clips += found
    return sorted(clips, key=lambda c: c.key)


def fit_ldm(data: PairSet, *, epochs: int, batch_size: int = 256, lr: float = 1e-3, device: str = "cpu", seed: int = 0,
            progress: Callable[[int], None] | None = None) -> LandmarkDeformationModel:
    """Train an LDM on the training pairs of ``data`` (``~is_val``): MSE on the displacement,
    Adam with cosine decay, 0.01 inter-ocular units of noise on the input neutral motion.

    ``progress(epoch)`` is called after each epoch. Returns the model in eval mode on ``device``.
    """
    torch.manual_seed(seed)
    model = LandmarkDeformationModel(LDMConfig()).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    tr = ~data.is_val
    x = torch.from_numpy(data.neutral[tr]).to(device)
    y = torch.from_numpy(data.displacement[tr]).to(device)
    e = torch.from_numpy(data.emotion[tr]).to(device)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen).to(device)
        for start in range(0, len(x), batch_size):
            idx = perm[start : start + batch_size]
            # small noise on the input neutral motion: the A2M output at speak time is not MEAD's
            pred = model(x[idx] + 0.01 * torch.randn_like(x[idx]), e[idx])
            loss = torch.mean((pred - y[idx]) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if progress:
            progress(epoch + 1)

    return model.eval()


@dataclass
class HeldOutActor:
    """How an LDM trained without ``actor`` reproduces that actor's emotions (landmark level).

    ``strength[e]``: the projection of the predicted lasting shape (the time-averaged
    displacement ``[68, 3]`` on the actor's own aligned neutral frames) on the actor's real one,
    over its squared norm (1.0 = as large as the actor's, in the same direction; 0 = none of
    it). ``read_as[e]``: the actor's emotion whose real lasting shape points most nearly the
    same way as the prediction (cosine), the landmark-level twin of ``evaluate``'s recognition.
    """

    actor: str
    frames: int
    strength: dict[str, float]
    read_as: dict[str, str]

    def to_dict(self) -> dict:
        return {"actor": self.actor, "frames": self.frames, "strength": {k: round(v, 4) for k, v in self.strength.items()},
                "read_as": self.read_as}


def leave_one_actor_out(data: PairSet, *, epochs: int, batch_size: int = 256, lr: float = 1e-3, device: str = "cpu",
                        seed: int = 0, progress: Progress | None = None) -> list[HeldOutActor]:
    """For each actor, train an LDM on all the others (:func:`fit_ldm`) and measure it on that
    actor's pairs (:class:`HeldOutActor`), so that no figure grades the model with the answers
    it trained on. Empty with fewer than two actors.
    """
    actors = sorted(set(data.actor.tolist()))
    if len(actors) < 2:
        return []
    out = []
    for actor in actors:
        mine = data.actor == actor
        others = PairSet(neutral=data.neutral, displacement=data.displacement, emotion=data.emotion,
                         is_val=data.is_val | mine, actor=data.actor)
        model = fit_ldm(others, epochs=epochs, batch_size=batch_size, lr=lr, device=device, seed=seed,
                        progress=(lambda k, a=actor: progress(f"train without {a}", k, epochs)) if progress else None)
        real, pred = {}, {}
        with torch.no_grad():
            for k, name in enumerate(EMOTIONS):
                sel = mine & (data.emotion == k)
                if not sel.any():
                    continue
                x = torch.from_numpy(data.neutral[sel]).to(device)
                pred[name] = model(x, torch.full((len(x),), k, device=device)).mean(0).cpu().numpy().ravel()
                real[name] = data.displacement[sel].mean(0).ravel()

        def cosine(a: np.ndarray, b: np.ndarray) -> float:
            return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))

        strength = {e: float(pred[e] @ real[e] / max(real[e] @ real[e], 1e-12)) for e in real}
        read_as = {e: max(real, key=lambda r: cosine(pred[e], real[r])) for e in real}
        out.append(HeldOutActor(actor, int(mine.sum()), strength, read_as))
    return out


def train_ldm(
    data_dir: str | Path | list[str | Path],
    *,
    store: Store,
    epochs: int = 300,
    batch_size: int = 256,
    lr: float = 1e-3,
    device: str = "cpu",
    seed: int = 0,
    leave_out: list[str] | tuple[str, ...] = (),
    measure_held_out: bool = True,
    extra: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> LDMReport:
    """Extract (cached) MEAD landmarks, pair and align clips, train and save the LDM.

    ``leave_out`` names actors of ``data_dir`` not to train on (to measure the model against
    them later, e.g. ``evaluate --emotion-actors``). With ``measure_held_out`` and two or more
    actors, the recipe is also trained once without each actor (:func:`leave_one_actor_out`)
    and the table stored with the model. ``extra``: more metadata to store with it (strings).

    Raises:
        NotFoundError / InputError: as :func:`scan_actors`; InputError also for a ``leave_out``
            actor that is not there, or when no actor is left.

    Returns:
        :class:`LDMReport` with per-emotion validation RMS error of the predicted emotional
        landmarks and, for comparison, of the neutral landmarks alone (``baseline_error``).
    """
    roots = data_roots(data_dir)
    clips = scan_actors(roots)
    left_out = set(leave_out)
    unknown = sorted(left_out - {c.actor for c in clips})
    if unknown:
        raise InputError(f"no actor {', '.join(unknown)} to leave out (there are {', '.join(sorted({c.actor for c in clips}))})", path=roots[0])
    clips = [c for c in clips if c.actor not in left_out]
    if not clips:
        raise InputError("every actor is left out: nothing to train on", path=roots[0])
    landmarks: dict[MeadClip, np.ndarray] = {}
    blendshapes: dict[MeadClip, np.ndarray] = {}
    for i, clip in enumerate(clips):
        if progress:
            progress("landmarks", i, len(clips))
        landmarks[clip], blendshapes[clip] = mead_clip_track(clip, store)
        note_kept("mead", f"landmarks of {i + 1} of {len(clips)} MEAD clips, cached", store.mead_cache_dir.resolve(), then="rerun")
    if progress:
        progress("landmarks", len(clips), len(clips))
    dense: dict[MeadClip, np.ndarray] = {}
    for actor in sorted({c.actor for c in clips}):
        dense.update(actor_motions({c: lm for c, lm in landmarks.items() if c.actor == actor}))
    motions = {c: m[:, geometry.LM68_FROM_LM478] for c, m in dense.items()}
    data = build_pairs(motions)
    all_dense = np.concatenate(list(dense.values()))
    lift, _ = geometry.fit_lift(all_dense[:, geometry.LM68_FROM_LM478], all_dense)

    model = fit_ldm(data, epochs=epochs, batch_size=batch_size, lr=lr, device=device, seed=seed,
                    progress=(lambda k: progress("train", k, epochs)) if progress else None)
    tr = ~data.is_val
    loao = (leave_one_actor_out(data, epochs=epochs, batch_size=batch_size, lr=lr, device=device, seed=seed, progress=progress)
            if measure_held_out else [])
    model.lift.copy_(torch.as_tensor(lift, dtype=torch.float32))
    model.real_blendshape_change.copy_(torch.from_numpy(real_blendshape_change(blendshapes)))
    val_error, baseline_error, real_size, predicted_size = {}, {}, {}, {}
    with torch.no_grad():
        for k, name in enumerate(EMOTIONS):
            sel = data.is_val & (data.emotion == k)
            if not sel.any():
                continue
            xv = torch.from_numpy(data.neutral[sel]).to(device)
            pred = model(xv, torch.full((len(xv),), k, device=device)).cpu().numpy()
            target = data.displacement[sel]
            val_error[name] = float(np.sqrt(np.mean(np.sum((pred - target) ** 2, -1))))
            baseline_error[name] = float(np.sqrt(np.mean(np.sum(target ** 2, -1))))
            # the emotion's lasting shape: the time-averaged displacement, mean over the 68 points
            real_size[name] = float(np.linalg.norm(target.mean(0), axis=-1).mean())
            predicted_size[name] = float(np.linalg.norm(pred.mean(0), axis=-1).mean())
    actors = sorted({c.actor for c in clips})
    dirs = [str(d) for d in roots]
    path = save_model(
        store.ldm_path, model.cpu(), model.config, producer="train-ldm",
        params={"data_dir": dirs[0] if len(dirs) == 1 else dirs, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                "seed": seed, "actors": actors, **({"left_out": sorted(leave_out)} if leave_out else {})},
        extra={**({"leave_one_actor_out": json.dumps([h.to_dict() for h in loao])} if loao else {}), **(extra or {})} or None,
    )
    return LDMReport(
        clips=len(clips), actors=actors, pairs=len(data.pairs), train_frames=int(tr.sum()), val_frames=int(data.is_val.sum()),
        epochs=epochs, val_error=val_error, baseline_error=baseline_error, real_size=real_size,
        predicted_size=predicted_size, path=path, leave_one_out=loao,
    )
