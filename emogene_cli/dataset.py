"""The identity dataset: what ``preprocess`` writes and every later stage reads.

Usage::

    data = load_identity(store, "obama_20s", size=256)     # IdentityData, arrays + images resized
    train_idx, held_idx = split_frames(data.frames)          # the first 90 % / the last 10 %

The contract between the stages (DESIGN.md, "Artifacts")::

    identities/<name>/dataset.safetensors          per-frame arrays (see IdentityData)
    identities/<name>/frames/images/00000.jpg ...  cropped RGB frames
    identities/<name>/frames/masks/00000.png ...   labels: 0 background, 1 torso, 2 head
    identities/<name>/frames/background.png        background plate

and the one train / held-out split of an identity's frames that the renderer, the
calibrations and the evaluation share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import MismatchError, NotFoundError
from .store import Store, load_artifact


@dataclass
class IdentityData:
    """A preprocessed identity loaded by :func:`load_identity` (T frames at 25 fps, ``size`` pixels).

    Attributes:
        name: identity name.
        landmarks: ``[T, 478, 3]`` float32 crop pixels at ``size``.
        face_found: ``[T]`` bool, False where the landmarks were interpolated.
        blendshapes: ``[T, 52]`` float32 (:data:`~emogene_cli.face.BLENDSHAPE_NAMES`).
        mp_transform: ``[T, 4, 4]`` float32 MediaPipe facial transformation matrices.
        poses: ``[T, 4, 4]`` float32 camera-from-head similarity poses (crop pixels at ``size``).
        mean_shape: ``[478, 3]`` float32 head-frame mean shape.
        canonical: ``[T, 478, 3]`` float32 canonical landmarks.
        motion: ``[T, 68, 3]`` float32 motion in inter-ocular units.
        audio_features: ``[2T, D]`` float32 at 50 Hz.
        f0: ``[T]`` float32 Hz (0 = unvoiced).
        audio: ``[N]`` float32, 16 kHz mono.
        crop_box: ``[4]`` int32 ``x, y, side, side`` in source pixels.
        iod: inter-ocular distance of ``mean_shape`` (its units).
        images: ``[T, size, size, 3]`` uint8 RGB.
        labels: ``[T, size, size]`` uint8: 0 background, 1 torso, 2 head.
        background: ``[size, size, 3]`` uint8 RGB plate.
        feature_kind: audio feature kind (``"mel"`` or ``"hubert:<model>"``).
        size: frame side in pixels.
        metadata: the dataset file's metadata strings.
    """

    name: str
    landmarks: np.ndarray
    face_found: np.ndarray
    blendshapes: np.ndarray
    mp_transform: np.ndarray
    poses: np.ndarray
    mean_shape: np.ndarray
    canonical: np.ndarray
    motion: np.ndarray
    audio_features: np.ndarray
    f0: np.ndarray
    audio: np.ndarray
    crop_box: np.ndarray
    iod: float
    images: np.ndarray
    labels: np.ndarray
    background: np.ndarray
    feature_kind: str
    size: int
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        """Number of video frames T."""
        return len(self.landmarks)


_DATASET_KEYS = (
    "landmarks", "face_found", "blendshapes", "mp_transform", "poses", "mean_shape", "canonical",
    "motion", "audio_features", "f0", "audio", "crop_box", "iod",
)


def _read_image(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise MismatchError("cannot read image of the identity dataset; re-run preprocess", path=path)
    return img


def load_identity(store: Store, name: str, size: int | None = None, *, with_images: bool = True) -> IdentityData:
    """Load a preprocessed identity, optionally resized to another square ``size``.

    With ``with_images=False`` only the background plate is read; ``images`` and ``labels``
    are then empty ``[0, size, size, ...]`` arrays (what ``speak`` needs is the plate and poses).

    Resizing uses ``cv2.INTER_AREA`` for images and the plate and ``INTER_NEAREST`` for labels;
    landmarks and poses are scaled by ``f = size / stored size`` (``pose[:3, :] *= f``: both
    ``sR`` and ``t``); mean shape, canonical landmarks, motion and iod are unchanged.

    Raises:
        NotFoundError: the identity was never preprocessed, or its frames folder is missing.
        MismatchError: an unreadable dataset or images that do not match it.
    """
    art = load_artifact(store.require_dataset(name), what="identity dataset")
    missing = [k for k in _DATASET_KEYS if k not in art.tensors]
    if missing:
        raise MismatchError(f"identity dataset lacks {', '.join(missing)}; re-run preprocess", path=art.path)
    tens = art.tensors
    T = len(tens["landmarks"])
    frames_dir = store.frames_dir(name)
    image_files = sorted((frames_dir / "images").glob("*.jpg"))
    mask_files = sorted((frames_dir / "masks").glob("*.png"))
    if not (frames_dir / "background.png").is_file():
        raise NotFoundError(f"frames of identity '{name}' are missing; re-run preprocess", path=frames_dir)
    if len(image_files) != T or len(mask_files) != T:
        raise MismatchError(
            f"frames folder has {len(image_files)} images and {len(mask_files)} masks but the dataset has {T} frames; re-run preprocess",
            path=frames_dir,
        )
    stored = int(art.metadata.get("size", 0)) or _read_image(image_files[0], cv2.IMREAD_COLOR).shape[0]
    out = size or stored
    resize = out != stored

    def load_rgb(path: Path) -> np.ndarray:
        img = _read_image(path, cv2.IMREAD_COLOR)[:, :, ::-1]
        return cv2.resize(img, (out, out), interpolation=cv2.INTER_AREA) if resize else np.ascontiguousarray(img)

    def load_labels(path: Path) -> np.ndarray:
        lab = _read_image(path, cv2.IMREAD_UNCHANGED)
        return cv2.resize(lab, (out, out), interpolation=cv2.INTER_NEAREST) if resize else lab

    if with_images:
        images = np.stack([load_rgb(p) for p in image_files])
        labels = np.stack([load_labels(p) for p in mask_files])
    else:
        images = np.zeros((0, out, out, 3), np.uint8)
        labels = np.zeros((0, out, out), np.uint8)
    background = load_rgb(frames_dir / "background.png")

    f = out / stored
    landmarks = tens["landmarks"].astype(np.float32) * np.float32(f)
    poses = tens["poses"].astype(np.float32).copy()
    poses[:, :3, :] *= np.float32(f)
    return IdentityData(
        name=name,
        landmarks=landmarks,
        face_found=tens["face_found"].astype(bool),
        blendshapes=tens["blendshapes"],
        mp_transform=tens["mp_transform"],
        poses=poses,
        mean_shape=tens["mean_shape"],
        canonical=tens["canonical"],
        motion=tens["motion"],
        audio_features=tens["audio_features"],
        f0=tens["f0"],
        audio=tens["audio"],
        crop_box=tens["crop_box"],
        iod=float(np.asarray(tens["iod"]).reshape(-1)[0]),
        images=images,
        labels=labels,
        background=background,
        feature_kind=art.feature_kind or "",
        size=out,
        metadata=art.metadata,
    )


TRAIN_FRACTION = 0.9


def split_frames(n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Training frames ``0 .. n_train - 1`` and held-out frames ``n_train .. T - 1``, ``n_train = int(0.9 T)``."""
    n_train = int(TRAIN_FRACTION * n_frames)
    return np.arange(n_train), np.arange(n_train, n_frames)


def heldout_frames(n_frames: int) -> np.ndarray:
    """The held-out frame indices (the last 10 %), see :func:`split_frames`."""
    return split_frames(n_frames)[1]
