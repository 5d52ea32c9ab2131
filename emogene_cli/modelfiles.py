"""Third-party model files (MediaPipe ``.task`` / ``.tflite``): where to find them.

Usage::

    path = resolve_model_file("face_landmarker.task")                    # search, else download once
    path = resolve_model_file("face_landmarker.task", "/models")          # a folder or a file
    path = resolve_model_file("selfie_segmentation.tflite", store=Store("/data/emogene"))

Look-up order (DESIGN.md, "Model files that cannot be downloaded here"):

1. ``explicit`` (an option such as ``--model-dir``): a file, or a folder holding ``filename``.
   When given it must exist: a wrong explicit path is an error, never silently bypassed.
2. ``$EMOGENE_MODEL_DIR/<filename>``.
3. ``<store home>/models/third_party/<filename>``.
4. A one-time download from the official MediaPipe URL into that third-party folder
   (10 s timeout, a progress bar on stderr, atomic write); never with ``EMOGENE_OFFLINE=1``.

Anything else raises :class:`~emogene_cli.errors.NotFoundError`.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from .errors import NotFoundError
from .store import Store, atomic_write_bytes

MODEL_DIR_ENV = "EMOGENE_MODEL_DIR"
#: Set to 1 to forbid every download (MediaPipe files here, Whisper/HuBERT in :mod:`.audio.weights`).
OFFLINE_ENV = "EMOGENE_OFFLINE"
DOWNLOAD_TIMEOUT_S = 10.0

_SELFIE_URL = (
    "https://storage.googleapis.com/mediapipe-models/image_segmenter/selfie_segmenter/float16/latest/selfie_segmenter.tflite"
)
#: Official download location of each model file emogene knows by name.
MODEL_URLS: dict[str, str] = {
    "face_landmarker.task": (
        "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task"
    ),
    "selfie_segmentation.tflite": _SELFIE_URL,
    "selfie_segmenter.tflite": _SELFIE_URL,
}


def resolve_model_file(filename: str, explicit: str | Path | None = None, store: Store | None = None) -> Path:
    """Find (or download once) the model file ``filename``; see the module docstring for the order.

    Args:
        filename: e.g. ``"face_landmarker.task"`` or ``"selfie_segmentation.tflite"``.
        explicit: a file path or a folder containing ``filename`` (from a command option).
        store: the artifact store whose ``third_party_dir`` caches downloads (default store if None).

    Returns:
        Path of an existing file.

    Raises:
        NotFoundError: ``explicit`` does not exist, or no location has the file and the
            download failed (or there is no known URL).
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / filename
        if not path.is_file():
            raise NotFoundError(f"model file {filename} not found at the given path", path=path)
        return path

    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        path = Path(env).expanduser() / filename
        if path.is_file():
            return path

    store = store if store is not None else Store()
    cached = store.third_party_dir / filename
    if cached.is_file():
        return cached

    url = MODEL_URLS.get(filename)
    reason = "no download URL is known for it"
    if url is not None and offline():
        reason = f"downloads are off: {OFFLINE_ENV}=1"
    elif url is not None:
        try:
            atomic_write_bytes(cached, _download(url))
            return cached
        except Exception as exc:  # network errors come in many types; all mean "not available"
            reason = f"download failed: {exc.__class__.__name__}"
    raise NotFoundError(
        f"model file {filename} not found ({reason}): set {MODEL_DIR_ENV} to a folder holding it "
        f"or pass its folder with --model-dir",
        path=cached,
    )


def offline() -> bool:
    """True when ``$EMOGENE_OFFLINE`` forbids downloads (``1``, ``true`` or ``yes``)."""
    return os.environ.get(OFFLINE_ENV, "0").lower() in ("1", "true", "yes")


def model_file_source(filename: str, explicit: str | Path | None = None, store: Store | None = None) -> tuple[Path | None, str]:
    """Where :func:`resolve_model_file` would find ``filename``, without downloading it.

    Returns:
        ``(path, where)``: ``where`` is ``"--model-dir"``, ``"$EMOGENE_MODEL_DIR"`` or
        ``"store"``; ``(None, "download")`` when only the download is left (``(None, "")`` when
        there is no URL or downloads are off).
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        path = path / filename if path.is_dir() else path
        return (path, "--model-dir") if path.is_file() else (None, "")
    env = os.environ.get(MODEL_DIR_ENV)
    if env and (Path(env).expanduser() / filename).is_file():
        return Path(env).expanduser() / filename, f"${MODEL_DIR_ENV}"
    cached = (store if store is not None else Store()).third_party_dir / filename
    if cached.is_file():
        return cached, "store"
    return None, "download" if filename in MODEL_URLS and not offline() else ""


def _download(url: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    """GET ``url`` with a progress bar on stderr and return the body; raises on HTTP errors,
    timeouts and empty or short bodies."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    chunks: list[bytes] = []
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed https URLs
        total = int(response.headers.get("Content-Length") or 0) or None
        columns = (TextColumn("download {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(url.rsplit("/", 1)[-1], total=total)
            while chunk := response.read(1 << 20):
                chunks.append(chunk)
                bar.advance(task, len(chunk))
    data = b"".join(chunks)
    if not data or (total is not None and len(data) != total):
        raise OSError("empty or incomplete response")
    return data
