"""A cached face track per source video, reused while the video is unchanged.

Usage::

    arrays, from_cache = cached_track(Path("clip.mp4"), cache_file, store, producer="train-ldm")

``train-ldm`` and ``train-a2m`` track the same clips again and again; the landmarks,
blendshapes and frame size are stored as safetensors next to the store's models and are
valid while the video's size and modification time (:func:`source_stamp`) match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EmogeneError
from ..media import probe, read_frames
from ..store import Store, load_artifact, save_artifact
from .tracking import track_frames

CACHE_VERSION = "1"


def source_stamp(path: Path) -> str:
    """``"<size>:<mtime>"`` of a file: a cache entry made from it is valid while this holds."""
    stat = Path(path).stat()
    return f"{stat.st_size}:{int(stat.st_mtime)}"


def read_cache(path: Path, stamp: str, extra: dict[str, str] | None = None) -> dict[str, np.ndarray] | None:
    """The arrays of a cache entry made from a source with ``stamp`` (and ``extra`` metadata), else None.

    A missing, broken or stale entry gives None (and is then recomputed by the caller).
    """
    if not Path(path).is_file():
        return None
    try:
        art = load_artifact(path, what="cache entry")
    except EmogeneError:
        return None
    want = {"source_stamp": stamp, "cache_version": CACHE_VERSION, **(extra or {})}
    if any(art.metadata.get(k) != v for k, v in want.items()):
        return None
    return art.tensors


def cached_track(video: Path, cache: Path, store: Store | None, *, producer: str) -> tuple[dict[str, np.ndarray], bool]:
    """:func:`track_frames` of ``video`` resampled to 25 fps, cached in the file ``cache``.

    Reused while the video's size and modification time match.

    Returns:
        ``({"landmarks": [T, 478, 3] float32 pixels, "found": [T] uint8, "blendshapes": [T, 52]
        float32, "size": [2] int32 (width, height)}, came from the cache)``.
    """
    stamp = source_stamp(video)
    hit = read_cache(cache, stamp)
    if hit is not None and {"landmarks", "found", "blendshapes", "size"} <= set(hit):
        return hit, True
    info = probe(video)
    track = track_frames(read_frames(video), store=store)
    tensors = {
        "landmarks": track.landmarks.astype(np.float32), "found": track.found.astype(np.uint8),
        "blendshapes": track.blendshapes.astype(np.float32), "size": np.array([info.width, info.height], np.int32),
    }
    save_artifact(cache, tensors, producer=producer, params={"video": str(video)},
                  extra={"source_stamp": stamp, "cache_version": CACHE_VERSION, "fps": "25"})
    return tensors, False
