"""Emotion: what the user asks for, the landmark deformation model, and how it reaches a face.

Usage::

    from emogene_cli.emotion import attach_calibration, emotional_motion, load_ldm, parse_blend
    ldm = load_ldm(store)
    attach_calibration(speaker, store, ldm)                   # this face's tracker and emotion gains
    emotional, motion68, dense, code = emotional_motion(speaker, neutral, weights, ldm=ldm)

Modules: :mod:`.control` (blends and emotion tracks -> per-frame weights ``[T, 8]``),
:mod:`.training` (the LDM from MEAD-style clips, ``train-ldm``), :mod:`.motion_to_emotion`
(EmoGene's displacement and landmark mixture, lifted to the face mesh), :mod:`.tracker_gain`
(how much of a landmark motion MediaPipe reads on this face) and :mod:`.gain` (how strongly
the rendered face shows each emotion). The emotion vocabulary itself is
:mod:`emogene_cli.emotions`, which the LDM model shares. The names below are the package's
public face.
"""

from .control import (
    MAX_INTENSITY, TrackRow, blend_vector, clip_track, constant_weights, describe_blend, is_all, load_track, one_hot_weights,
    parse_blend, track_weights, with_gaps,
)
from .gain import GAIN_MAX, attach_calibration, emotion_gain_path, identity_emotion_gain
from .motion_to_emotion import CODE_FROM_NEUTRAL_68, dense_motion, emotional_motion, ldm_provenance, load_ldm
from .tracker_gain import NoFaceError, apply_gain, identity_tracker_gain, tracker_gain_path
from .training import LDMReport, MeadClip, data_roots, reference_blendshape_change, scan_actors, scan_mead, train_ldm

__all__ = [
    "CODE_FROM_NEUTRAL_68", "GAIN_MAX", "LDMReport", "MAX_INTENSITY", "MeadClip", "NoFaceError", "TrackRow",
    "apply_gain", "attach_calibration", "blend_vector", "clip_track", "constant_weights", "data_roots",
    "dense_motion", "describe_blend", "emotion_gain_path", "emotional_motion", "identity_emotion_gain",
    "identity_tracker_gain", "is_all", "ldm_provenance", "load_ldm", "load_track", "one_hot_weights", "parse_blend",
    "reference_blendshape_change", "scan_actors", "scan_mead", "track_weights", "tracker_gain_path", "train_ldm",
    "with_gaps",
]
