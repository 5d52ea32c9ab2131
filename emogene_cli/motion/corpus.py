"""Data of the generic audio-to-motion model: talking clips of many people, cached, augmented.

Usage::

    clips = scan_talking([Path("talking/")])                 # [TalkingClip], person of each
    extractor = FeatureExtractor.create("auto", store=store)  # mel + f0 here, HuBERT where weights exist
    data = [load_clip(c, store, extractor) for c in clips]    # ClipData: motion [T, 68, 3], features [2T, D]
    train, val = split_people([d.person for d in data], 2, seed=0)

Only what audio-to-motion needs is extracted from each video: MediaPipe landmarks on the
frames resampled to 25 fps (as ``preprocess`` does; no crop, masks, plate or frames are
written) and the audio features of its sound track. Both are cached in
``<store>/models/a2m_cache`` and reused while the video's size and modification time match,
so a second ``train-a2m`` skips them. Motion is computed as in ``preprocess``: canonical
landmarks minus the clip's own mean shape, in its inter-ocular units.

Who is who: a video in a sub-folder of a folder given on the command line belongs to the
person named by that sub-folder (the VoxCeleb2 / LRS3 layout, ``<person>/<clip>.mp4``);
a video given directly or lying at the top of a given folder belongs to its file name minus
a ``_clip<N>...`` part and a trailing duration such as ``_20s`` (``obama_clip2_30s`` ->
``obama``, ``noem_18s`` -> ``noem``).

Augmentation (:func:`augment_clip`) changes the voice but not the words, with librosa:
pitch shift (``librosa.effects.pitch_shift``), vocal-tract-length perturbation (the mel
filter bank read on a scaled frequency axis, :func:`emogene_cli.audio.mel_features`; log-mel
only, HuBERT features see pitch and speed changes only), speed perturbation (``librosa.resample``:
tempo, pitch and formants together, with the motion resampled in time to match), and white
noise at a random signal-to-noise ratio.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import geometry
from ..audio import AudioFeatures, load_audio, mel_features, pitch, resolve_encoder
from ..errors import InputError, NotFoundError
from ..face import CACHE_VERSION, cached_track, choose_crop_box, face_box, read_cache, source_stamp
from ..media import SAMPLE_RATE
from ..store import Store, save_artifact
from .sync import paired_frames

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
MIN_FRAMES = 50  # 2 s at 25 fps
MIN_FOUND = 0.8  # a clip whose face is found in fewer frames is left out
CROP_SIZE = 256  # M-LMD is reported in pixels of a crop of this side (as preprocess --size 256 makes)

Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------------------
# which clips, which people


@dataclass(frozen=True)
class TalkingClip:
    """One video of one person talking: ``path``, ``person`` and a cache ``key`` unique to the file."""

    path: Path
    person: str

    @property
    def key(self) -> str:
        digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", self.path.stem)[:40]
        return f"{slug}-{digest}"


def person_from_stem(stem: str) -> str:
    """Person name of a file stem: ``obama_clip2_30s`` -> ``obama``, ``noem_18s`` -> ``noem``.

    Drops a ``_clip<N>`` part (and what follows it), then a trailing ``_<seconds>s``; a stem
    that would become empty stays as it is.
    """
    name = re.sub(r"[_-]clip\d+.*$", "", stem, flags=re.IGNORECASE)
    name = re.sub(r"[_-]\d+(\.\d+)?s$", "", name)
    return name or stem


def scan_talking(inputs: Sequence[str | Path]) -> list[TalkingClip]:
    """The videos named by ``inputs`` (files, or folders searched recursively), with their person.

    Raises:
        NotFoundError: an input does not exist.
        InputError: no video found.
    """
    clips: dict[Path, TalkingClip] = {}
    for item in inputs:
        root = Path(item)
        if not root.exists():
            raise NotFoundError("file or folder not found", path=root)
        if root.is_file():
            clips.setdefault(root.resolve(), TalkingClip(root, person_from_stem(root.stem)))
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES):
            rel = path.relative_to(root)
            person = rel.parts[0] if len(rel.parts) > 1 else person_from_stem(path.stem)
            clips.setdefault(path.resolve(), TalkingClip(path, person))
    if not clips:
        raise InputError(f"no video found (looked for {', '.join(VIDEO_SUFFIXES)})", path=", ".join(str(i) for i in inputs))
    return sorted(clips.values(), key=lambda c: (c.person, str(c.path)))


def split_people(people: Sequence[str], val: int | Sequence[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """Leave-identity-out split: ``(training people, validation people)``, disjoint, sorted.

    Args:
        people: the person of each clip (repeats allowed).
        val: how many people to hold out (chosen at random with ``seed``), or their names.

    Raises:
        InputError: an unknown name, or no person left to train on.
    """
    everyone = sorted(set(people))
    if isinstance(val, int):
        if val < 0:
            raise InputError("the number of validation people cannot be negative", path="--val-people")
        rng = np.random.default_rng(seed)
        chosen = sorted(rng.choice(everyone, size=min(val, len(everyone)), replace=False).tolist()) if val else []
    else:
        chosen = sorted(set(val))
        unknown = [p for p in chosen if p not in everyone]
        if unknown:
            raise InputError(f"unknown people {', '.join(unknown)} (known: {', '.join(everyone)})", path="--val-people")
    train = [p for p in everyone if p not in chosen]
    if not train:
        raise InputError(f"no person left to train on ({len(everyone)} people, {len(chosen)} held out)", path="--val-people")
    return train, chosen


def people_folds(people: Sequence[str], folds: int, seed: int = 0) -> list[list[str]]:
    """Partition the distinct people into ``folds`` groups for k-fold leave-identity-out validation.

    Each person lands in exactly one group; group sizes differ by at most one; which person
    goes where is a shuffle drawn with ``seed``. Each group is sorted.

    Raises:
        InputError: ``folds`` below 2 or above the number of people.
    """
    everyone = sorted(set(people))
    if folds < 2 or folds > len(everyone):
        raise InputError(f"--folds must be between 2 and the number of people ({len(everyone)}), got {folds}", path="--folds")
    order = np.random.default_rng(seed).permutation(len(everyone))
    return [sorted(everyone[i] for i in order[k::folds]) for k in range(folds)]


def default_val_count(n_people: int) -> int:
    """People held out by default: 2 of 4 or more, 1 of 2-3, none of 1."""
    return 2 if n_people >= 4 else (1 if n_people >= 2 else 0)


# --------------------------------------------------------------------------------------
# audio features


class FeatureExtractor:
    """Audio features of one kind for many clips, loading the speech encoder once.

    ``kind`` is ``"mel"``, ``"whisper:<model>:L<layer>"`` or ``"hubert:<model>"`` (resolved;
    see :func:`create`).
    """

    def __init__(self, kind: str, encoder=None, note: str = "") -> None:
        self.kind = kind
        self.encoder = encoder
        self.note = note

    @classmethod
    def create(
        cls,
        kind: str = "auto",
        *,
        hubert: str | None = None,
        whisper: str | None = None,
        device: str = "cpu",
        store: Store | None = None,
    ) -> "FeatureExtractor":
        """Resolve ``auto`` / ``whisper`` / ``hubert`` / ``mel`` / an exact kind (:func:`emogene_cli.audio.resolve_encoder`).

        Raises:
            the errors of :func:`~emogene_cli.audio.resolve_encoder`.
        """
        kind, encoder, note = resolve_encoder(
            kind, hubert=hubert, whisper=whisper, device=device, store_dir=store.third_party_dir if store else None
        )
        return cls(kind, encoder, note=note)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]+", "_", self.kind)

    def features(self, audio: np.ndarray, num_frames: int, *, warp: float = 1.0) -> np.ndarray:
        """``[2 * num_frames, D]`` float32 for ``audio [N]`` (16 kHz); ``warp`` applies to log-mel only."""
        if self.encoder is None:
            return mel_features(audio, num_frames, warp=warp)
        return self.encoder(audio, num_frames)

    def __call__(self, audio: np.ndarray, num_frames: int) -> AudioFeatures:
        return AudioFeatures(self.features(audio, num_frames), pitch(audio, num_frames), self.kind, self.note)


# --------------------------------------------------------------------------------------
# augmentation


@dataclass
class AugmentConfig:
    """Voice-changing, word-keeping augmentation: ``variants`` random copies of each clip.

    Each copy draws a pitch shift in ``±pitch_semitones``, a vocal-tract-length warp in
    ``1 ± warp`` (log-mel), a speed factor in ``1 ± speed`` and, with probability
    ``noise_prob``, white noise at an SNR between ``snr_db[0]`` and ``snr_db[1]`` dB.
    """

    variants: int = 8
    pitch_semitones: float = 4.0
    warp: float = 0.12
    speed: float = 0.1
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (12.0, 35.0)

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


_AUG_PARAMS = ("speed", "pitch_semitones", "warp", "snr_db")


@dataclass
class Variant:
    """One utterance for training: ``features [2T, D]``, ``f0 [T]`` Hz, ``motion [T, 68, 3]``."""

    features: np.ndarray
    f0: np.ndarray
    motion: np.ndarray
    params: dict[str, float] = field(default_factory=dict)


def resample_time(x: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling of ``x [T, ...]`` along time to ``[length, ...]`` (same start and end)."""
    from scipy.interpolate import interp1d

    x = np.asarray(x)
    if len(x) == length:
        return x.copy()
    if len(x) == 1:
        return np.repeat(x, length, axis=0)
    src = np.linspace(0.0, 1.0, len(x))
    return interp1d(src, x, axis=0)(np.linspace(0.0, 1.0, length)).astype(x.dtype)


def augment_clip(audio: np.ndarray, f0: np.ndarray, motion: np.ndarray, extractor: FeatureExtractor,
                 rng: np.random.Generator, config: AugmentConfig) -> Variant:
    """One voice-changed copy of a clip (see :class:`AugmentConfig`).

    Args:
        audio: ``[N]`` float32 16 kHz; f0: ``[T]`` Hz (0 unvoiced); motion: ``[T, 68, 3]``.

    Returns:
        :class:`Variant` of ``T' = round(T / speed)`` frames. Its f0 is the clip's f0 moved by
        the pitch shift and the speed factor (exact for both; pitch tracking is not re-run),
        its motion the clip's motion resampled to ``T'`` frames.
    """
    import librosa

    T = len(f0)
    speed = float(rng.uniform(1 - config.speed, 1 + config.speed))
    steps = float(rng.uniform(-config.pitch_semitones, config.pitch_semitones))
    warp = float(rng.uniform(1 - config.warp, 1 + config.warp))
    y = audio.astype(np.float32)
    if abs(speed - 1) > 1e-3:  # faster playback: fewer samples at the same rate
        y = librosa.resample(y, orig_sr=SAMPLE_RATE, target_sr=SAMPLE_RATE / speed, res_type="soxr_hq")
    if abs(steps) > 1e-3:
        y = librosa.effects.pitch_shift(y, sr=SAMPLE_RATE, n_steps=steps, res_type="soxr_hq")
    snr = float("inf")
    if rng.random() < config.noise_prob:
        snr = float(rng.uniform(*config.snr_db))
        power = float(np.mean(y ** 2)) + 1e-12
        y = y + rng.normal(scale=np.sqrt(power / 10 ** (snr / 10)), size=len(y)).astype(np.float32)
    n = max(MIN_FRAMES // 2, int(round(T / speed)))
    feats = extractor.features(y, n, warp=warp)
    # f0: time-resampled (nearest, keeping unvoiced frames at 0) and scaled by both factors
    idx = np.clip(np.round(np.arange(n) * speed).astype(int), 0, T - 1)
    new_f0 = (f0[idx] * speed * 2 ** (steps / 12)).astype(np.float32)
    return Variant(feats.astype(np.float32), new_f0, resample_time(motion, n).astype(np.float32),
                   {"speed": speed, "pitch_semitones": steps, "warp": warp, "snr_db": snr})


# --------------------------------------------------------------------------------------
# cached extraction


@dataclass
class ClipData:
    """One talking clip ready for audio-to-motion (T frames at 25 fps).

    Attributes:
        clip: which video and person.
        motion: ``[T, 68, 3]`` float32, canonical landmarks minus the clip's mean shape, inter-ocular units.
        features: ``[2T, D]`` float32 audio features at 50 Hz; f0: ``[T]`` Hz (0 unvoiced).
        audio: ``[N]`` float32 16 kHz mono.
        mean68: ``[68, 3]`` the clip's mean shape on the 68 points, pixels; iod: its inter-ocular distance.
        poses: ``[T, 4, 4]`` camera-from-head poses (source pixels); landmarks68: ``[T, 68, 3]`` source pixels.
        found: ``[T]`` bool, where MediaPipe found the face (elsewhere interpolated).
        px_scale: pixels of a :data:`CROP_SIZE` crop per source pixel (the crop ``preprocess`` would choose).
        feature_kind: ``"mel"`` or ``"hubert:<model>"``.
        variants: augmented copies (:func:`augment_clip`), empty until :func:`add_variants`.
        cached: ``{"landmarks": bool, "features": bool}``: what came from the cache.
    """

    clip: TalkingClip
    motion: np.ndarray
    features: np.ndarray
    f0: np.ndarray
    audio: np.ndarray
    mean68: np.ndarray
    iod: float
    poses: np.ndarray
    landmarks68: np.ndarray
    found: np.ndarray
    px_scale: float
    feature_kind: str
    variants: list[Variant] = field(default_factory=list)
    cached: dict[str, bool] = field(default_factory=dict)
    offset: int = 0

    @property
    def person(self) -> str:
        return self.clip.person

    @property
    def frames(self) -> int:
        return len(self.motion)


def load_clip(clip: TalkingClip, store: Store, extractor: FeatureExtractor, *, producer: str = "train-a2m") -> ClipData:
    """Landmarks (cached), motion, audio and audio features (cached per kind) of one clip.

    Raises:
        InputError: no audio track, too short (under 2 s), or a face in under 80 % of frames.
    """
    cache_dir = store.a2m_cache_dir
    audio = load_audio(clip.path)  # no sound: fail before the long tracking
    track, lm_cached = cached_track(clip.path, cache_dir / f"{clip.key}.track.safetensors", store, producer=producer)
    landmarks = track["landmarks"].astype(np.float64)
    found = track["found"].astype(bool)
    T = len(landmarks)
    if T < MIN_FRAMES:
        raise InputError(f"clip too short ({T / 25:.1f} s; need at least {MIN_FRAMES / 25:.0f} s)", path=clip.path)
    if found.mean() < MIN_FOUND:
        raise InputError(f"a face was found in only {found.mean():.0%} of frames (need {MIN_FOUND:.0%})", path=clip.path)
    stamp = source_stamp(clip.path)
    feat_cache = cache_dir / f"{clip.key}.{extractor.slug}.safetensors"
    hit = read_cache(feat_cache, stamp, {"feature_kind": extractor.kind, "frames": str(T)})
    if hit is not None:
        features, f0, f_cached = hit["features"], hit["f0"], True
    else:
        feats = extractor(audio, T)
        features, f0, f_cached = feats.features, feats.f0, False
        save_artifact(feat_cache, {"features": features, "f0": f0}, producer=producer, params={"video": str(clip.path)},
                      feature_kind=extractor.kind,
                      extra={"source_stamp": stamp, "cache_version": CACHE_VERSION, "frames": str(T)})
    mean = geometry.mean_shape(landmarks)
    poses = geometry.estimate_poses(landmarks, mean)
    canonical = geometry.to_canonical(landmarks, poses)
    iod = geometry.interocular_distance(mean)
    motion = geometry.motion68(canonical, mean, iod)
    boxes = np.stack([face_box(lm) for lm in landmarks[found][:: max(1, int(found.sum()) // 50)]])
    side = choose_crop_box(boxes, (int(track["size"][0]), int(track["size"][1])))[2]
    return ClipData(
        clip=clip, motion=motion, features=np.asarray(features, np.float32), f0=np.asarray(f0, np.float32), audio=audio,
        mean68=mean[geometry.LM68_FROM_LM478].astype(np.float32), iod=float(iod), poses=poses.astype(np.float32),
        landmarks68=landmarks[:, geometry.LM68_FROM_LM478].astype(np.float32), found=found,
        px_scale=CROP_SIZE / float(side), feature_kind=extractor.kind, cached={"landmarks": lm_cached, "features": f_cached},
    )


def add_variants_arrays(audio: np.ndarray, f0: np.ndarray, motion: np.ndarray, extractor: FeatureExtractor,
                        config: AugmentConfig, seed: int | list[int]) -> list[Variant]:
    """``config.variants`` augmented copies (:func:`augment_clip`) of one utterance, not cached."""
    rng = np.random.default_rng(seed)
    return [augment_clip(audio, f0, motion, extractor, rng, config) for _ in range(config.variants)]


def add_variants(data: ClipData, store: Store, extractor: FeatureExtractor, config: AugmentConfig, seed: int,
                 *, producer: str = "train-a2m") -> bool:
    """Fill ``data.variants`` with ``config.variants`` augmented copies, cached with their settings.

    Returns:
        True when they came from the cache.
    """
    if config.variants <= 0:
        data.variants = []
        return True
    path = store.a2m_cache_dir / f"{data.clip.key}.{extractor.slug}.aug-{config.digest()}-s{seed}-n{config.variants}-o{data.offset}.safetensors"
    stamp = source_stamp(data.clip.path)
    hit = read_cache(path, stamp, {"feature_kind": extractor.kind, "frames": str(data.frames)})
    if hit is not None:
        out = []
        for i in range(config.variants):
            n = len(hit[f"v{i}.f0"])
            params = dict(zip(_AUG_PARAMS, (float(v) for v in hit[f"v{i}.params"])))
            out.append(Variant(hit[f"v{i}.features"], hit[f"v{i}.f0"], resample_time(data.motion, n).astype(np.float32), params))
        data.variants = out
        return True
    # one generator per clip and seed: the same copies whichever clips come along
    data.variants = add_variants_arrays(data.audio, data.f0, data.motion, extractor, config,
                                        [seed, int(data.clip.key.rsplit("-", 1)[1], 16) % (2 ** 32)])
    tensors: dict[str, np.ndarray] = {}
    for i, v in enumerate(data.variants):
        tensors[f"v{i}.features"] = v.features
        tensors[f"v{i}.f0"] = v.f0
        tensors[f"v{i}.params"] = np.array([v.params[k] for k in _AUG_PARAMS], np.float64)
    save_artifact(path, tensors, producer=producer, params={"video": str(data.clip.path), "augment": asdict(config), "seed": seed},
                  feature_kind=extractor.kind, extra={"source_stamp": stamp, "cache_version": CACHE_VERSION, "frames": str(data.frames)})
    return False


def mouth_open(motion: np.ndarray, mean68: np.ndarray, iod: float) -> np.ndarray:
    """Inner-lip opening (points 62-66 of the 68) per frame in inter-ocular units: ``[T]``.

    Args:
        motion: ``[T, 68, 3]`` inter-ocular units; mean68: ``[68, 3]`` the face's mean shape (pixels), iod its
            inter-ocular distance (pixels).
    """
    return geometry.mouth_opening(mean68[None] / iod + motion)


def shift_clip(data: ClipData, offset: int) -> ClipData:
    """``data`` with its video moved ``offset`` frames later against its audio (``offset`` may be negative).

    A clip whose mouth moves ``k`` frames earlier than other people's for the same sound
    (offset ``k > 0``) is paired as audio frame ``t + k`` with video frame ``t``; the first (or
    last) ``|k|`` frames are dropped. Variants are not shifted: make them afterwards.
    """
    k = int(offset)
    if k == 0:
        return data
    a, v = paired_frames(0, data.frames, k, data.frames)  # audio frames kept, video frames kept
    return ClipData(
        clip=data.clip, motion=data.motion[v], features=data.features[2 * a.start : 2 * a.stop], f0=data.f0[a],
        audio=data.audio[a.start * 640 : a.stop * 640], mean68=data.mean68, iod=data.iod, poses=data.poses[v],
        landmarks68=data.landmarks68[v], found=data.found[v], px_scale=data.px_scale, feature_kind=data.feature_kind,
        cached=data.cached, offset=data.offset + k,
    )
