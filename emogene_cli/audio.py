"""Audio loading and features: HuBERT (transformers) or log-mel + f0 (librosa), voice activity.

Contracts (DESIGN.md): audio is 16 kHz mono; video runs at 25 fps, so one video frame is
640 samples and audio features run at 50 Hz (hop 320 samples), two feature frames per video
frame: ``features [2T, D]``. The feature kind (``"mel"`` or ``"hubert:<model>"``) is recorded
with every dataset and model; :func:`check_kind` turns a mismatch into a clear error.

HuBERT weights are looked up without ever waiting on the network: an explicit path or
name, ``$EMOGENE_HUBERT``, ``<store>/models/third_party/hubert``, the Hugging Face cache
(``local_files_only=True``), and only then the hub — and the hub only when it answers a
1-second connection test and ``HF_HUB_OFFLINE`` is unset.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MismatchError, NotFoundError
from .media import SAMPLE_RATE, read_audio

DEFAULT_HUBERT = "facebook/hubert-large-ls960-ft"
HOP = 320  # samples per feature frame (50 Hz)
SAMPLES_PER_FRAME = 640  # samples per video frame (25 fps)
N_MELS = 80


@dataclass
class AudioFeatures:
    """Per-utterance audio features.

    Attributes:
        features: ``[2T, D]`` float32 at 50 Hz (D = 80 for mel, 1024 for HuBERT large).
        f0: ``[T]`` float32 fundamental frequency per video frame in Hz (0 = unvoiced).
        kind: ``"mel"`` or ``"hubert:<model name>"``.
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


def frames_for(audio: np.ndarray) -> int:
    """Number of 25 fps video frames covering ``audio`` (16 kHz): ``round(N / 640)``, at least 1."""
    return max(1, int(round(len(audio) / SAMPLES_PER_FRAME)))


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or edge-pad ``x`` along axis 0 to length ``n``."""
    if len(x) >= n:
        return x[:n]
    pad = [(0, n - len(x))] + [(0, 0)] * (x.ndim - 1)
    return np.pad(x, pad, mode="edge") if len(x) else np.zeros((n,) + x.shape[1:], x.dtype)


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
    return _fit_length(logmel.astype(np.float32), 2 * num_frames)


def pitch(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """f0 per video frame (Hz, 0 where unvoiced) with librosa's pYIN at hop 640 (25 Hz). ``[T]``."""
    import librosa

    f0, voiced, _ = librosa.pyin(
        audio.astype(np.float32), fmin=60, fmax=500, sr=SAMPLE_RATE, frame_length=1280, hop_length=SAMPLES_PER_FRAME, center=True
    )
    f0 = np.where(voiced & np.isfinite(f0), f0, 0.0).astype(np.float32)
    return _fit_length(f0, num_frames)


def _hub_reachable(timeout: float = 1.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def hubert_candidates(explicit: str | None = None, store_dir: Path | None = None) -> list[tuple[str, bool]]:
    """Where HuBERT weights are looked for, in order: ``(path or hub id, local_files_only)``."""
    out: list[tuple[str, bool]] = []
    if explicit:
        out.append((explicit, True))
    env = os.environ.get("EMOGENE_HUBERT")
    if env:
        out.append((env, True))
    model_dir = os.environ.get("EMOGENE_MODEL_DIR")
    if model_dir and (Path(model_dir) / "hubert").is_dir():
        out.append((str(Path(model_dir) / "hubert"), True))
    if store_dir is not None and (store_dir / "hubert").is_dir():
        out.append((str(store_dir / "hubert"), True))
    name = explicit if explicit and not Path(explicit).exists() else DEFAULT_HUBERT
    out.append((name, True))  # Hugging Face cache
    if _hub_reachable():
        out.append((name, False))
    # keep order, drop duplicates
    seen, uniq = set(), []
    for item in out:
        if item not in seen:
            seen.add(item)
            uniq.append(item)
    return uniq


class HubertEncoder:
    """HuBERT (``transformers.HubertModel``) as a feature extractor: last hidden state at 50 Hz.

    Args:
        source: a local directory or hub id loadable by ``HubertModel.from_pretrained``.
        device: torch device string.
        local_files_only: never touch the network.

    Raises:
        NotFoundError: the weights cannot be loaded from ``source``.
    """

    def __init__(self, source: str, device: str = "cpu", local_files_only: bool = True) -> None:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import torch
        from transformers import HubertModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # its tqdm bar would cut through our rich progress bars
        try:
            self.model = HubertModel.from_pretrained(source, local_files_only=local_files_only).eval().to(device)
        except Exception as exc:
            raise NotFoundError(f"cannot load HuBERT weights ({exc.__class__.__name__})", path=source) from exc
        self.device = device
        self.torch = torch
        self.name = Path(source.rstrip("/")).name
        self.kind = f"hubert:{self.name}"
        self.dim = int(self.model.config.hidden_size)

    def __call__(self, audio: np.ndarray, num_frames: int, chunk_seconds: float = 20.0) -> np.ndarray:
        """``[N]`` 16 kHz audio -> ``[2 * num_frames, D]`` float32 last hidden states.

        The waveform is normalised to zero mean / unit variance (as HuBERT's feature
        extractor does) and encoded in chunks of ``chunk_seconds`` to bound memory.
        """
        torch = self.torch
        x = audio.astype(np.float32)
        x = (x - x.mean()) / (x.std() + 1e-7)
        chunk = int(chunk_seconds * SAMPLE_RATE)
        outs = []
        with torch.inference_mode():
            for start in range(0, len(x), chunk):
                piece = x[start : start + chunk]
                if len(piece) < 400:  # shorter than HuBERT's receptive field
                    piece = np.pad(piece, (0, 400 - len(piece)))
                hidden = self.model(torch.from_numpy(piece)[None].to(self.device)).last_hidden_state[0]
                outs.append(hidden.float().cpu().numpy())
        feats = np.concatenate(outs, 0)
        return _fit_length(feats, 2 * num_frames).astype(np.float32)


def load_hubert(explicit: str | None = None, *, device: str = "cpu", store_dir: Path | None = None) -> HubertEncoder:
    """The first HuBERT that loads from :func:`hubert_candidates`; NotFoundError naming them otherwise."""
    tried = []
    for source, local in hubert_candidates(explicit, store_dir):
        try:
            return HubertEncoder(source, device=device, local_files_only=local)
        except NotFoundError:
            tried.append(source + ("" if local else " (hub)"))
    raise NotFoundError(
        "no HuBERT weights found (tried: " + ", ".join(tried) + "); pass --hubert DIR, set EMOGENE_HUBERT, or use --audio-features mel",
        path=explicit or DEFAULT_HUBERT,
    )


def compute_audio_features(
    audio: np.ndarray,
    *,
    num_frames: int | None = None,
    kind: str = "auto",
    hubert: str | None = None,
    device: str = "cpu",
    store_dir: Path | None = None,
) -> AudioFeatures:
    """Audio features and per-frame f0 for ``audio`` (``[N]`` float32, 16 kHz mono).

    Args:
        num_frames: video frames T to cover (default :func:`frames_for`); features are
            trimmed/padded to exactly ``2T`` rows and f0 to ``T``.
        kind: ``"auto"`` (HuBERT if weights resolve, else mel), ``"hubert"``, ``"mel"``, or an
            exact recorded kind such as ``"hubert:hubert-large-ls960-ft"`` (to match a model).
        hubert: explicit HuBERT directory or hub id.
        store_dir: the store's third-party model folder, searched for ``hubert/``.

    Raises:
        NotFoundError: ``kind="hubert"`` and no weights load.
        EmogeneError: an unknown kind.
    """
    from .errors import EmogeneError

    T = num_frames or frames_for(audio)
    f0 = pitch(audio, T)
    if kind == "mel":
        return AudioFeatures(mel_features(audio, T), f0, "mel")
    if kind in ("auto", "hubert") or kind.startswith("hubert:"):
        try:
            enc = load_hubert(hubert, device=device, store_dir=store_dir)
        except NotFoundError:
            if kind != "auto":
                raise
            return AudioFeatures(mel_features(audio, T), f0, "mel", note="HuBERT unavailable (no weights found; see --hubert); using log-mel + f0")
        if kind.startswith("hubert:") and enc.kind != kind:
            raise MismatchError(f"the model expects audio features {kind!r} but HuBERT resolved to {enc.kind!r}", path=hubert or DEFAULT_HUBERT)
        return AudioFeatures(enc(audio, T), f0, enc.kind, note=f"HuBERT from {enc.name}")
    raise EmogeneError(f"unknown audio feature kind {kind!r} (use auto, hubert or mel)")


def check_kind(expected: str, got: str, path: str | Path) -> None:
    """Raise MismatchError if two artifacts were made with different audio feature kinds."""
    if expected != got:
        raise MismatchError(f"audio features differ: {got!r} here but {expected!r} expected; re-run with matching --audio-features", path=path)


def voice_activity(audio: np.ndarray, num_frames: int, *, top_db: float = 35.0, min_silence: float = 0.4) -> np.ndarray:
    """Per-frame voice activity by energy, segment by segment (librosa.effects.split).

    Non-silent intervals are those within ``top_db`` of the utterance's loudest frame;
    silent gaps shorter than ``min_silence`` seconds count as speech (pauses between words).

    Returns:
        ``[T]`` bool, True where someone speaks (frames at 25 fps).
    """
    import librosa

    active = np.zeros(num_frames, dtype=bool)
    if len(audio) == 0 or np.max(np.abs(audio)) < 1e-4:
        return active
    intervals = librosa.effects.split(audio, top_db=top_db, frame_length=1024, hop_length=256)
    for start, end in intervals:
        active[int(start // SAMPLES_PER_FRAME) : int(np.ceil(end / SAMPLES_PER_FRAME))] = True
    # fill short gaps
    gap = int(round(min_silence * 25))
    idx = np.flatnonzero(active)
    if len(idx):
        for a, b in zip(idx[:-1], idx[1:]):
            if 1 < b - a <= gap:
                active[a:b] = True
    return active


def loudness_envelope(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """RMS loudness per video frame (hop 640 samples), ``[T]`` float32."""
    import librosa

    rms = librosa.feature.rms(y=audio.astype(np.float32), frame_length=1280, hop_length=SAMPLES_PER_FRAME, center=True)[0]
    return _fit_length(rms.astype(np.float32), num_frames)
