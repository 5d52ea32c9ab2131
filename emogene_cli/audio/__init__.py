"""Audio: loading speech, the features audio-to-motion reads, voice activity.

Usage::

    from emogene_cli.audio import compute_audio_features, frames_for, load_audio
    audio = load_audio("speech.wav")                          # [N] float32, 16 kHz mono
    feats = compute_audio_features(audio, kind="auto")        # features [2T, D] at 50 Hz, f0 [T]

Modules: :mod:`.timing` (the 16 kHz / 25 fps / 50 Hz clock), :mod:`.features` (log-mel + f0,
the feature kind and which encoder gives it), :mod:`.whisper` (the Whisper encoder in 30 s
windows) and :mod:`.hubert` (HuBERT), both resolved offline first by :mod:`.weights`,
:mod:`.activity` (voice activity and loudness per video frame), :mod:`.background` (the features,
or f0 and voice activity, computed in a second process while the caller does other work). The names below are the package's public face;
other modules import them from here.
"""

from .activity import loudness_envelope, voice_activity
from .background import AudioFeaturesInBackground, PitchInBackground
from .features import N_MELS, AudioFeatures, check_kind, compute_audio_features, load_audio, mel_features, pitch, resolve_encoder
from .hubert import DEFAULT_HUBERT, HubertEncoder, hubert_candidates, load_hubert
from .whisper import DEFAULT_WHISPER, WhisperEncoder, load_whisper, whisper_candidates
from .timing import HOP, SAMPLES_PER_FRAME, frames_for

__all__ = [
    "AudioFeatures", "AudioFeaturesInBackground", "DEFAULT_HUBERT", "DEFAULT_WHISPER", "HOP", "HubertEncoder", "N_MELS", "PitchInBackground",
    "SAMPLES_PER_FRAME",
    "WhisperEncoder", "check_kind", "compute_audio_features", "frames_for", "hubert_candidates", "load_audio",
    "load_hubert", "load_whisper", "loudness_envelope", "mel_features", "pitch", "resolve_encoder", "voice_activity",
    "whisper_candidates",
]
