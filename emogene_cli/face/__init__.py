"""The face: MediaPipe landmarks and person masks, the clip's crop, head/torso labels, the plate.

Usage::

    from emogene_cli.face import FaceTracker, track_frames
    with FaceTracker() as tracker:
        face = tracker.detect(rgb, timestamp_ms=0)          # FaceResult: 478 landmarks, 52 blendshapes
    track = track_frames(frames)                            # TrackResult over a clip

Modules: :mod:`.tracking` (the one landmark extractor and segmenter, MediaPipe Tasks),
:mod:`.cache` (a cached track per source video), :mod:`.crop` (the clip's square crop),
:mod:`.masks` (head / torso / background labels and the background plate). Landmark
geometry (index sets, poses, the canonical frame) is :mod:`emogene_cli.geometry`, which the
models share. The names below are the package's public face.
"""

from .cache import CACHE_VERSION, cached_track, read_cache, source_stamp
from .crop import choose_crop_box, face_box, find_crop_box
from .masks import LABEL_BACKGROUND, LABEL_HEAD, LABEL_TORSO, background_plate, crop_valid_mask, split_head_torso
from .tracking import (
    BLENDSHAPE_NAMES, DETECT_SIZE, FACE_MODEL_FILE, NUM_LANDMARKS, SEGMENTER_MODEL_FILE, FaceResult, FaceTracker, PersonSegmenter,
    TrackBuilder, TrackResult, fill_missing, masked_mean, redetect, track_frames,
)

__all__ = [
    "BLENDSHAPE_NAMES", "CACHE_VERSION", "DETECT_SIZE", "FACE_MODEL_FILE", "LABEL_BACKGROUND", "LABEL_HEAD", "LABEL_TORSO",
    "NUM_LANDMARKS", "SEGMENTER_MODEL_FILE", "FaceResult", "FaceTracker", "PersonSegmenter", "TrackBuilder", "TrackResult",
    "background_plate", "cached_track", "choose_crop_box", "crop_valid_mask", "face_box", "fill_missing", "find_crop_box",
    "masked_mean", "read_cache", "redetect", "source_stamp", "split_head_torso", "track_frames",
]
