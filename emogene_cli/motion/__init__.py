"""Audio-to-motion: speech -> neutral landmark motion, and the head motion that goes with it.

Usage::

    from emogene_cli.motion import load_a2m, predict_motion, postprocess, sample_poses
    model, _ = load_a2m(store.a2m_path("obama_20s"))
    neutral = predict_motion(model, feats.features, feats.f0)   # [T, 68, 3] inter-ocular units

Modules: :mod:`.corpus` (talking clips of many people, cached and voice-augmented),
:mod:`.training` (the VAE's training loop, a person's model, loading and prediction),
:mod:`.generic` (the generic model across people, ``train-a2m``), :mod:`.sync` (a recording's
audio-video offset), :mod:`.lipsync` (mouth
opening against the real video on unseen frames), :mod:`.postprocessing` (LLE projection,
One-Euro smoothing, the mouth gain, clamp, blinks), :mod:`.poses` (head poses with idle segments in silence).
The names below are the package's public face.
"""

from .corpus import AugmentConfig, ClipData, FeatureExtractor, TalkingClip, load_clip, mouth_open, scan_talking
from .generic import GenericA2MReport, GenericPreset, pool_scores, score_clip, train_generic_a2m, validation_clips
from .lipsync import identity_lipsync, lipsync_model, measure_lipsync, sync_offset_of
from .poses import find_idle_segments, pose_speed, sample_poses
from .postprocessing import (
    MOUTH_GAIN_RANGE, PostConfig, amplify_mouth, deepen_closures, lle_project, measure_mouth_gain, mouth_rest, one_euro_filter,
    postprocess, postprocess_neutral,
)
from .sync import SyncOffset, estimate_offset, paired_frames
from .training import (
    SPEAK_TEMPERATURE, A2MTraining, PersonA2MResult, fit_person_a2m, load_a2m, predict_motion, resolve_a2m_mode, save_a2m,
    train_a2m,
)

__all__ = [
    "MOUTH_GAIN_RANGE", "SPEAK_TEMPERATURE", "A2MTraining", "AugmentConfig", "ClipData", "FeatureExtractor",
    "GenericA2MReport", "GenericPreset", "PersonA2MResult", "PostConfig", "SyncOffset", "TalkingClip",
    "amplify_mouth", "deepen_closures", "estimate_offset", "find_idle_segments", "fit_person_a2m", "identity_lipsync",
    "lipsync_model", "lle_project", "load_a2m", "load_clip", "measure_lipsync", "measure_mouth_gain", "mouth_open", "mouth_rest",
    "one_euro_filter", "paired_frames", "pool_scores", "pose_speed", "postprocess", "postprocess_neutral",
    "predict_motion", "resolve_a2m_mode", "sample_poses", "save_a2m", "scan_talking", "score_clip", "sync_offset_of",
    "train_a2m", "train_generic_a2m", "validation_clips",
]
