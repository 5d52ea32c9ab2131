"""The preprocess stage: a person's talking video -> an identity dataset in the store.

Usage::

    result = preprocess_video(Path("obama.mp4"), store=Store(), size=512, audio_features="mel")
    data = load_identity(Store(), result.name, size=256)      # emogene_cli.dataset: arrays + images
    data.landmarks.shape, data.images.shape                     # [T, 478, 3], [T, 256, 256, 3]

Steps (GeneFace++'s data preparation, as typed functions): one square crop for the whole
clip (:func:`~emogene_cli.face.choose_crop_box`), per-frame MediaPipe landmarks /
blendshapes / transform and person mask on the cropped frames, head poses and canonical
landmarks (:mod:`emogene_cli.geometry`), head / torso / background labels
(:func:`~emogene_cli.face.split_head_torso`), a static background plate
(:func:`~emogene_cli.face.background_plate`) and the audio features. A speech encoder's
features (Whisper, HuBERT) and pYIN's f0 are computed in a second process while the face is
found and tracked (:class:`~emogene_cli.audio.AudioFeaturesInBackground`); with
``audio_features="mel"`` they are computed in line.

Written (see DESIGN.md, "Artifacts")::

    identities/<name>/dataset.safetensors          arrays listed in preprocess_video
    identities/<name>/frames/images/00000.jpg ...  cropped RGB frames at size x size
    identities/<name>/frames/masks/00000.png ...   labels: 0 background, 1 torso, 2 head
    identities/<name>/frames/background.png        background plate

All times are video frames at 25 fps; all image coordinates are pixels.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .. import geometry, media
from ..audio import AudioFeaturesInBackground, compute_audio_features, load_audio
from ..errors import EmogeneError, InputError
from ..face import (
    BLENDSHAPE_NAMES, FaceTracker, PersonSegmenter, TrackBuilder, TrackResult, background_plate, crop_valid_mask, find_crop_box,
    split_head_torso,
)
from ..interrupt import held, note_kept
from ..store import Store, name_from_file, save_artifact, validate_name

FPS = media.FPS
MIN_SECONDS = 2.0
MIN_FACE_FRACTION = 0.9
MAX_PLATE_FRAMES = 200  # frames (evenly spaced) that the background median looks at
JPEG_QUALITY = 95
#: frames beyond the video's nominal length that the background audio features cover (trimmed to the tracked count)
SPARE_AUDIO_FRAMES = 25
#: frames per task when the head and torso masks are written on two threads
MASK_CHUNK = 25


Progress = Callable[[str, int, int], None]


@dataclass
class PreprocessResult:
    """What :func:`preprocess_video` did.

    Attributes:
        name: identity name.
        frames: number of video frames T (25 fps).
        seconds: T / 25.
        face_found_fraction: fraction of frames where MediaPipe found the face.
        crop_box: ``(x, y, side, side)`` in source-video pixels (may reach past the frame).
        size: side of the stored square frames, pixels.
        feature_kind: audio feature kind recorded with the dataset.
        paths: what was written: ``dataset``, ``frames``, ``images``, ``masks``, ``background``.
        feature_note: why that feature kind was chosen (for ``auto``), empty if nothing to say.
        faces_in_view: the most faces seen in one frame; with several, the crop follows the
            one that was largest when faces first appeared.
    """

    name: str
    frames: int
    seconds: float
    face_found_fraction: float
    crop_box: tuple[int, int, int, int]
    size: int
    feature_kind: str
    paths: dict[str, Path]
    feature_note: str = ""
    faces_in_view: int = 1


# --------------------------------------------------------------------------------------
# the stage


def _check_input(video: Path, name: str | None) -> tuple[str, media.MediaInfo]:
    """Validate the identity name and the video's streams and length; see preprocess_video."""
    if name is None:
        name = name_from_file(video.stem)
        if name is None:
            raise EmogeneError(
                f"no identity name can be made from the file name {video.stem!r}: pass --name NAME "
                "(1-64 letters, digits, '_' or '-')",
                path=video,
            )
    name = validate_name(name)
    info = media.require_video(
        video, audio_hint="preprocess needs a video of the person talking; `emogene speak AUDIO --emotion EMOTION` takes audio",
    )
    if not info.has_audio:
        raise InputError(
            "no audio track: fit-identity trains lip motion from the person's speech, so the video must have sound",
            path=video,
        )
    if info.duration < MIN_SECONDS:
        raise InputError(f"clip too short to fit ({info.duration:.1f} s; need at least {MIN_SECONDS:g} s)", path=video)
    return name, info


def _missing_spans(found: np.ndarray, most: int = 3) -> str:
    """The stretches without a face as seconds, e.g. ``"1.0-3.0 s, 4.2-4.6 s"`` (``found``: ``[T]`` bool at 25 fps)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[1], np.asarray(found, dtype=np.int8), [1]])))
    spans = [f"{a / FPS:.1f}-{b / FPS:.1f} s" for a, b in zip(edges[::2], edges[1::2])]
    return ", ".join(spans[:most]) + (f" and {len(spans) - most} more" if len(spans) > most else "")


def _report(progress: Progress | None, label: str, done: int, total: int) -> None:
    if progress is not None:
        progress(label, done, max(total, done))


@dataclass
class _Tracked:
    """Per-frame results of the main pass (T frames)."""

    track: TrackResult  # landmarks [T, 478, 3] crop pixels at size, gaps filled
    person_bits: list[np.ndarray]  # T packed [size, size] bool person masks
    plate_frames: list[np.ndarray]  # every plate_step-th frame, [size, size, 3] uint8
    plate_person: list[np.ndarray]  # their person masks [size, size] bool


def _track_crop(
    video: Path,
    box: tuple[int, int, int, int],
    frame_size: tuple[int, int],
    size: int,
    images_dir: Path,
    *,
    expected_frames: int,
    model_dir: str | Path | None,
    store: Store,
    progress: Progress | None,
) -> _Tracked:
    """Decode the crop at ``size``, write each frame as JPEG, track the face and segment the person.

    Each frame's segmentation and JPEG run on a second thread while the face is tracked (both
    MediaPipe graphs wait outside the GIL): 21.6 -> 13.4 ms a frame on a 2-core CPU (512x512).
    """
    plate_step = max(1, math.ceil(expected_frames / MAX_PLATE_FRAMES))
    valid = crop_valid_mask(box, frame_size, size)  # black padding is never "person"
    builder = TrackBuilder()
    bits: list[np.ndarray] = []
    plate_frames: list[np.ndarray] = []
    plate_person: list[np.ndarray] = []

    def segment_and_write(segmenter: PersonSegmenter, rgb: np.ndarray, ts: int, path: Path) -> np.ndarray:
        cv2.imwrite(str(path), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        return segmenter.segment(rgb, ts)

    with FaceTracker(model_dir, store=store) as tracker, PersonSegmenter(model_dir, store=store) as segmenter, \
            ThreadPoolExecutor(1, thread_name_prefix="emogene-segment") as pool:
        for t, rgb in enumerate(media.read_frames(video, crop=box, size=size)):
            ts = t * 1000 // FPS
            segmented = pool.submit(segment_and_write, segmenter, rgb, ts, images_dir / f"{t:05d}.jpg")
            builder.add(tracker.detect(rgb, ts))
            person = (segmented.result() > 0.5) & valid
            bits.append(np.packbits(person))
            if t % plate_step == 0:
                plate_frames.append(rgb.copy())
                plate_person.append(person)
            _report(progress, "tracking the face", t + 1, expected_frames)
    return _Tracked(builder.build(), bits, plate_frames, plate_person)


def _compute_audio(video: Path, num_frames: int, *, kind: str, hubert: str | None, device: str, store: Store):
    """``(audio [N] float32 16 kHz, AudioFeatures)`` for the video's sound track."""
    audio = load_audio(video)
    feats = compute_audio_features(
        audio, num_frames=num_frames, kind=kind, hubert=hubert, device=device, store_dir=store.third_party_dir
    )
    return audio, feats


def _collect_audio(background: AudioFeaturesInBackground | None, video: Path, num_frames: int, *, kind: str,
                   hubert: str | None, device: str, store: Store):
    """:func:`_compute_audio` for ``num_frames`` frames, taken from ``background`` (computed for a few frames
    more, trimmed: the same rows) when it covers them, else computed here."""
    if background is not None:
        audio, feats = background.result()
        if len(feats.f0) >= num_frames:
            return audio, replace(feats, features=feats.features[: 2 * num_frames], f0=feats.f0[:num_frames])
    return _compute_audio(video, num_frames, kind=kind, hubert=hubert, device=device, store=store)


def _swap_in(new_dir: Path, final_dir: Path) -> None:
    """Replace ``final_dir`` by ``new_dir`` (two renames; the old folder is deleted afterwards)."""
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final_dir, old)
    os.replace(new_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def preprocess_video(
    video: Path,
    *,
    store: Store,
    name: str | None = None,
    size: int = 512,
    audio_features: str = "auto",
    hubert: str | None = None,
    model_dir: str | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
) -> PreprocessResult:
    """Turn a talking video into the identity dataset ``name`` in ``store``.

    Args:
        video: the person talking, with sound, at least 2 s (resampled to 25 fps).
        store: the artifact store to write into.
        name: identity name; default the file name's stem made into one
            (:func:`~emogene_cli.store.name_from_file`).
        size: side in pixels of the stored square frames.
        audio_features: ``"auto"``, ``"hubert"``, ``"mel"`` (see :mod:`emogene_cli.audio`).
        hubert: explicit HuBERT directory or hub id.
        model_dir: folder (or file) with the MediaPipe model files; see
            :func:`~emogene_cli.modelfiles.resolve_model_file`.
        device: torch device for HuBERT.
        progress: called as ``progress(stage_label, done, total)`` during the long loops.

    Returns:
        :class:`PreprocessResult`. The dataset holds ``landmarks [T,478,3]`` (crop pixels at
        ``size``), ``face_found [T]`` uint8, ``blendshapes [T,52]``, ``mp_transform [T,4,4]``,
        ``poses [T,4,4]``, ``mean_shape [478,3]``, ``canonical [T,478,3]``, ``motion [T,68,3]``,
        ``audio_features [2T,D]``, ``f0 [T]``, ``audio [N]`` (16 kHz), ``crop_box [4]`` int32 and
        ``iod []`` (float32 unless noted). An earlier dataset of the same name stays intact
        until the new one is complete.

    Raises:
        EmogeneError: invalid name (or a file stem that is not one, without ``name``).
        NotFoundError: the video or a model file does not exist.
        InputError: unreadable media, an image or an audio file instead of a video, no video
            stream, no audio track, shorter than 2 s,
            no face, or a face in fewer than 90 % of the frames.
    """
    video = Path(video)
    name, info = _check_input(video, name)
    if size < 32:
        raise EmogeneError(f"frame size {size} is too small (use at least 32 pixels)", path=video)
    params = {
        "video": str(video), "name": name, "size": size, "audio_features": audio_features,
        "hubert": hubert, "model_dir": model_dir, "device": device,
    }

    expected = max(1, round(info.duration * FPS))
    # the speech encoder loads and pYIN runs in a second process while the face is found and tracked
    background = None if audio_features == "mel" else AudioFeaturesInBackground(
        video, num_frames=expected + SPARE_AUDIO_FRAMES, kind=audio_features, hubert=hubert, device=device,
        store_dir=store.third_party_dir,
    )
    with background or contextlib.nullcontext():
        box, faces_in_view = find_crop_box(video, info, model_dir=model_dir, store=store, progress=progress)

        ident_dir = store.identity_dir(name)
        ident_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".frames.", suffix=".tmp", dir=ident_dir))
        tmp_dataset = ident_dir / f".dataset.{uuid.uuid4().hex[:8]}.tmp.safetensors"
        try:
            (work / "images").mkdir()
            (work / "masks").mkdir()
            tracked = _track_crop(
                video, box, (info.width, info.height), size, work / "images",
                expected_frames=expected, model_dir=model_dir, store=store, progress=progress,
            )
            track = tracked.track
            T = len(track.found)
            if T < MIN_SECONDS * FPS:
                raise InputError(
                    f"clip too short to fit ({T / FPS:.1f} s of video; need at least {MIN_SECONDS:g} s)", path=video
                )
            frac = track.found_fraction
            if frac < MIN_FACE_FRACTION:
                raise InputError(
                    f"a face was found in only {frac:.0%} of frames (need {MIN_FACE_FRACTION:.0%}); none at "
                    f"{_missing_spans(track.found)}: cut those parts out (ffmpeg -ss/-to) or use a clip where the face stays in view",
                    path=video,
                )

            # two workers: one starts on the plate (a median over the plate frames) while the audio
            # features are collected, the other writes the masks in chunks, joined by the first once
            # the plate is done; this thread only waits
            def write_masks(frames: range) -> int:
                for t in frames:
                    person = np.unpackbits(tracked.person_bits[t], count=size * size).reshape(size, size).astype(bool)
                    cv2.imwrite(str(work / "masks" / f"{t:05d}.png"), split_head_torso(person, landmarks[t]))
                return len(frames)

            pool = ThreadPoolExecutor(2, thread_name_prefix="emogene-plate-masks")
            try:
                plate_job = pool.submit(
                    background_plate, np.stack(tracked.plate_frames), np.stack(tracked.plate_person),
                    dilate_px=max(1, size // 32), inpaint_radius=max(3, size // 64),
                )
                _report(progress, "audio features", 0, 1)
                audio, feats = _collect_audio(background, video, T, kind=audio_features, hubert=hubert, device=device, store=store)
                _report(progress, "audio features", 1, 1)

                landmarks = track.landmarks
                mean = geometry.mean_shape(landmarks)
                poses = geometry.estimate_poses(landmarks, mean)
                canonical = geometry.to_canonical(landmarks, poses)
                iod = geometry.interocular_distance(mean)
                motion = geometry.motion68(canonical, mean, iod)

                done = 0
                for n in pool.map(write_masks, [range(a, min(T, a + MASK_CHUNK)) for a in range(0, T, MASK_CHUNK)]):
                    done += n
                    _report(progress, "head and torso masks", done, T)
                _report(progress, "background plate", 0, 1)
                plate = plate_job.result()
                _report(progress, "background plate", 1, 1)
            finally:  # an error or an interrupt drops the tasks not yet started
                pool.shutdown(wait=True, cancel_futures=True)
            cv2.imwrite(str(work / "background.png"), plate[:, :, ::-1])

            tensors = {
                "landmarks": landmarks.astype(np.float32),
                "face_found": track.found.astype(np.uint8),
                "blendshapes": track.blendshapes.astype(np.float32),
                "mp_transform": track.transforms.astype(np.float32),
                "poses": poses.astype(np.float32),
                "mean_shape": mean.astype(np.float32),
                "canonical": canonical.astype(np.float32),
                "motion": motion.astype(np.float32),
                "audio_features": np.asarray(feats.features, dtype=np.float32),
                "f0": np.asarray(feats.f0, dtype=np.float32),
                "audio": np.asarray(audio, dtype=np.float32),
                "crop_box": np.asarray(box, dtype=np.int32),
                "iod": np.asarray(iod, dtype=np.float32),
            }
            extra = {
                "fps": str(FPS), "size": str(size), "source": str(video.resolve()), "iod": repr(iod),
                "frames": str(T), "face_found_fraction": f"{frac:.4f}", "faces_in_view": str(faces_in_view),
                "blendshape_names": json.dumps(list(BLENDSHAPE_NAMES)),
            }
            save_artifact(tmp_dataset, tensors, producer="preprocess", params=params, feature_kind=feats.kind, extra=extra)
            frames_dir = store.frames_dir(name)
            with held():  # frames and dataset are replaced together, a signal waits for both
                _swap_in(work, frames_dir)
                os.replace(tmp_dataset, store.dataset_path(name))
                note_kept("dataset", f"identity dataset '{name}'", store.dataset_path(name), then="complete")
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
            tmp_dataset.unlink(missing_ok=True)
            if not any(ident_dir.iterdir()):
                ident_dir.rmdir()  # a first run that failed leaves no empty identity folder

    return PreprocessResult(
        name=name,
        frames=T,
        seconds=T / FPS,
        face_found_fraction=frac,
        crop_box=tuple(int(v) for v in box),
        size=size,
        feature_kind=feats.kind,
        faces_in_view=faces_in_view,
        paths={
            "dataset": store.dataset_path(name),
            "frames": frames_dir,
            "images": frames_dir / "images",
            "masks": frames_dir / "masks",
            "background": frames_dir / "background.png",
        },
        feature_note=getattr(feats, "note", ""),
    )
