"""Audio loading and features: a Whisper or HuBERT encoder (transformers) or log-mel + f0 (librosa).

Contracts (DESIGN.md, :mod:`.timing`): audio is 16 kHz mono, features run at 50 Hz, two
feature frames per 25 fps video frame: ``features [2T, D]``. The feature kind (``"mel"``,
``"whisper:<model>:L<layer>"`` or ``"hubert:<model>"``) is recorded with every dataset and
model; :func:`check_kind` turns a mismatch into a clear error.

Weights are looked up by :mod:`.whisper` and :mod:`.hubert`; ``kind="auto"`` takes Whisper,
then HuBERT, then log-mel + f0, and says which (:func:`resolve_encoder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import EmogeneError, MismatchError, NotFoundError
from ..media import SAMPLE_RATE, read_audio
from .hubert import DEFAULT_HUBERT, load_hubert
from .whisper import DEFAULT_WHISPER, load_whisper
from .timing import HOP, SAMPLES_PER_FRAME, fit_length, frames_for

N_MELS = 80


@dataclass
class AudioFeatures:
    """Per-utterance audio features.

    Attributes:
        features: ``[2T, D]`` float32 at 50 Hz (D = 80 for mel, 512 for Whisper base,
            1024 for HuBERT large).
        f0: ``[T]`` float32 fundamental frequency per video frame in Hz (0 = unvoiced).
        kind: ``"mel"``, ``"whisper:<model name>:L<layer>"`` or ``"hubert:<model name>"``.
        note: why this kind was chosen (for ``auto``), for the user.
    """

    features: np.ndarray
    f0: np.ndarray
    kind: str
    note: str = ""

    @property
    def num_frames(self) -> int:
        return len(self.f0)


def load_audio(path: str | Path) -> np.ndarray:
    """Decode any audio or video file to ``[N]`` float32 mono at 16 kHz (resampling as needed)."""
    return read_audio(path, SAMPLE_RATE)


def mel_features(audio: np.ndarray, num_frames: int, *, warp: float = 1.0) -> np.ndarray:
    """Log-mel spectrogram, 80 mels, hop 320 (50 Hz), normalised per utterance and per bin.

    Args:
        warp: vocal-tract-length perturbation factor (training-time augmentation; 1 = none).
            The power spectrum is read through librosa's mel filter bank built for a sample
            rate ``warp`` times the real one, i.e. the frequency axis is scaled by ``warp``
            (Jaitly & Hinton, 2013): ``warp > 1`` moves formants up, as a shorter vocal tract
            does. The top band stops at the warped Nyquist frequency.

    Returns:
        ``[2 * num_frames, 80]`` float32.
    """
    import librosa

    power = np.abs(librosa.stft(audio.astype(np.float32), n_fft=1024, hop_length=HOP, win_length=800)) ** 2
    sr = SAMPLE_RATE * float(warp)
    bank = librosa.filters.mel(sr=sr, n_fft=1024, n_mels=N_MELS, fmin=55, fmax=min(7600.0, sr / 2))
    mel = bank @ power  # the same as librosa.feature.melspectrogram for warp = 1
    logmel = np.log(mel + 1e-6).T  # [frames, 80]
    logmel = (logmel - logmel.mean(0)) / (logmel.std(0) + 1e-5)
    return fit_length(logmel.astype(np.float32), 2 * num_frames)


#: pYIN runs on stretches of this many video frames (60 s), so that its memory does not grow
#: with the length of the audio, each with ``PITCH_CONTEXT`` frames of audio on both sides.
PITCH_CHUNK_FRAMES = 1500
PITCH_CONTEXT = 25


def pitch(audio: np.ndarray, num_frames: int, *, chunk_frames: int = PITCH_CHUNK_FRAMES) -> np.ndarray:
    """f0 per video frame (Hz, 0 where unvoiced) with librosa's pYIN at hop 640 (25 Hz). ``[T]``.

    Long audio goes through pYIN in stretches of ``chunk_frames`` frames (60 s) with one second
    of context on each side, which is cut off again: frame ``i`` is centred on sample
    ``i * 640`` in every stretch, and the peak memory stays that of one minute of audio
    (pYIN on 10 minutes at once takes about 0.5 GB).
    """
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    total = 1 + len(audio) // SAMPLES_PER_FRAME  # librosa's frame count with center=True
    parts = []
    for start in range(0, total, chunk_frames):
        stop = min(total, start + chunk_frames)
        a, b = max(0, start - PITCH_CONTEXT), min(total, stop + PITCH_CONTEXT)
        segment = audio[a * SAMPLES_PER_FRAME : (b - 1) * SAMPLES_PER_FRAME + 1]
        f0, voiced, _ = librosa.pyin(
            segment, fmin=60, fmax=500, sr=SAMPLE_RATE, frame_length=1280, hop_length=SAMPLES_PER_FRAME, center=True
        )
        parts.append(np.where(voiced & np.isfinite(f0), f0, 0.0)[start - a : stop - a])
    f0 = np.concatenate(parts) if parts else np.zeros(0)
    return fit_length(f0.astype(np.float32), num_frames)


def resolve_encoder(
    kind: str = "auto",
    *,
    hubert: str | None = None,
    whisper: str | None = None,
    device: str = "cpu",
    store_dir: Path | None = None,
):
    """Pick the speech encoder for a feature kind: ``(kind, encoder or None for mel, note)``.

    Args:
        kind: ``"auto"`` (Whisper if its weights resolve, then HuBERT, then log-mel + f0),
            ``"whisper"``, ``"hubert"``, ``"mel"``, or an exact recorded kind such as
            ``"whisper:whisper-base:L3"`` or ``"hubert:hubert-large-ls960-ft"`` (to match a
            model; a Whisper kind names its layer, which is the one loaded).
        hubert, whisper: explicit weights folders or hub ids (see :mod:`.hubert`, :mod:`.whisper`).
        store_dir: the store's third-party model folder.

    Returns:
        The resolved kind, an encoder called as ``encoder(audio, num_frames) -> [2T, D]``
        (None for mel), and one line for the user on what was chosen and why.

    Raises:
        NotFoundError: Whisper or HuBERT asked for (or recorded) and no weights load.
        InputError: a Whisper folder that exists but is broken.
        MismatchError: an exact kind whose model resolves to another one.
        EmogeneError: an unknown kind.
    """
    if kind == "mel":
        return "mel", None, ""
    tried = []
    if kind in ("auto", "whisper") or kind.startswith("whisper:"):
        layer = int(kind.rsplit(":L", 1)[1]) if kind.startswith("whisper:") and ":L" in kind else None
        try:
            enc = load_whisper(whisper, device=device, store_dir=store_dir, layer=layer)
        except NotFoundError:
            if kind != "auto":
                raise
            tried.append("Whisper")
        else:
            if kind.startswith("whisper:") and enc.kind != kind:
                raise MismatchError(f"the model expects audio features {kind!r} but Whisper resolved to {enc.kind!r}",
                                    path=whisper or DEFAULT_WHISPER)
            return enc.kind, enc, f"Whisper encoder layer {enc.layer} from {enc.name}"
    if kind in ("auto", "hubert") or kind.startswith("hubert:"):
        try:
            enc = load_hubert(hubert, device=device, store_dir=store_dir)
        except NotFoundError:
            if kind != "auto":
                raise
            tried.append("HuBERT")
        else:
            if kind.startswith("hubert:") and enc.kind != kind:
                raise MismatchError(f"the model expects audio features {kind!r} but HuBERT resolved to {enc.kind!r}",
                                    path=hubert or DEFAULT_HUBERT)
            why = " (no Whisper weights found; see --whisper)" if tried else ""
            return enc.kind, enc, f"HuBERT from {enc.name}{why}"
    if kind == "auto":
        return "mel", None, "no Whisper or HuBERT weights found (see --whisper, --hubert); using log-mel + f0"
    raise EmogeneError(f"unknown audio feature kind {kind!r} (use auto, whisper, hubert or mel)", path="--audio-features")


def compute_audio_features(
    audio: np.ndarray,
    *,
    num_frames: int | None = None,
    kind: str = "auto",
    hubert: str | None = None,
    whisper: str | None = None,
    device: str = "cpu",
    store_dir: Path | None = None,
    f0: np.ndarray | Callable[[], np.ndarray] | None = None,
) -> AudioFeatures:
    """Audio features and per-frame f0 for ``audio`` (``[N]`` float32, 16 kHz mono).

    Args:
        num_frames: video frames T to cover (default :func:`frames_for`); features are
            trimmed/padded to exactly ``2T`` rows and f0 to ``T``.
        kind, hubert, whisper, store_dir: which encoder (see :func:`resolve_encoder`).
        f0: ``[T]`` f0 computed elsewhere (:func:`pitch` of the same audio), or a function
            that returns it, called once the encoder has run (so that a computation in a
            second process, :class:`~.background.PitchInBackground`, overlaps the encoder);
            default :func:`pitch` here.

    Raises:
        the errors of :func:`resolve_encoder`; ValueError: an ``f0`` that is not ``[T]``.
    """
    T = num_frames or frames_for(audio)
    kind, encoder, note = resolve_encoder(kind, hubert=hubert, whisper=whisper, device=device, store_dir=store_dir)
    features = mel_features(audio, T) if encoder is None else encoder(audio, T)
    f0 = pitch(audio, T) if f0 is None else np.asarray(f0() if callable(f0) else f0, dtype=np.float32)
    if f0.shape != (T,):
        raise ValueError(f"f0 of shape {f0.shape} for {T} frames")
    return AudioFeatures(features, f0, kind, note=note)


def check_kind(expected: str, got: str, path: str | Path) -> None:
    """Raise MismatchError if two artifacts were made with different audio feature kinds."""
    if expected != got:
        raise MismatchError(f"audio features differ: {got!r} here but {expected!r} expected; re-run with matching --audio-features", path=path)
