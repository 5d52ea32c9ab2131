"""The emotion vocabulary: MEAD's eight emotion folder names, with accepted short forms."""

from __future__ import annotations

from .errors import EmogeneError

EMOTIONS: tuple[str, ...] = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
ALIASES = {"disgust": "disgusted", "surprise": "surprised", "anger": "angry", "fearful": "fear", "sadness": "sad", "happiness": "happy"}


def parse_emotion(name: str) -> str:
    """Canonical emotion name for ``name`` (case-insensitive; ``disgust``/``surprise`` accepted).

    Raises:
        EmogeneError: an unknown emotion, listing the valid ones.
    """
    key = (name or "").strip().lower()
    key = ALIASES.get(key, key)
    if key not in EMOTIONS:
        raise EmogeneError(f"unknown emotion '{name}'; choose one of: {', '.join(EMOTIONS)}", path="--emotion")
    return key


def emotion_index(name: str) -> int:
    """Index of ``name`` in :data:`EMOTIONS` (after :func:`parse_emotion`)."""
    return EMOTIONS.index(parse_emotion(name))
