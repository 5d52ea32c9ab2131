"""Where a pretrained speech encoder's weights are looked for, offline first.

Order, for an encoder whose folder is called ``folder`` and whose hub id is ``default_id``:
an explicit path or name (a command's option), the environment variable ``env_var``,
``$EMOGENE_MODEL_DIR/<folder>``, ``<store>/models/third_party/<folder>``, the Hugging Face
cache (``local_files_only=True``), and only then the hub, and the hub only when it answers a
1-second connection test and neither ``HF_HUB_OFFLINE`` nor ``EMOGENE_OFFLINE`` is set. From the
hub the files are downloaded once into ``<store>/models/third_party/<folder>``
(:func:`fetch_into_store`, huggingface_hub's progress bars).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from ..errors import NotFoundError


def hub_reachable(timeout: float = 1.0) -> bool:
    """True when huggingface.co answers within ``timeout`` seconds and neither ``HF_HUB_OFFLINE``
    nor ``EMOGENE_OFFLINE`` is set."""
    if any(os.environ.get(v, "0").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "EMOGENE_OFFLINE")):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def weight_candidates(
    explicit: str | None, *, env_var: str, folder: str, default_id: str, store_dir: Path | None = None
) -> list[tuple[str, bool]]:
    """The places to try, in order, as ``(path or hub id, local_files_only)``; see the module."""
    out: list[tuple[str, bool]] = []
    if explicit:
        out.append((explicit, True))
    env = os.environ.get(env_var)
    if env:
        out.append((env, True))
    model_dir = os.environ.get("EMOGENE_MODEL_DIR")
    if model_dir and (Path(model_dir) / folder).is_dir():
        out.append((str(Path(model_dir) / folder), True))
    if store_dir is not None and (store_dir / folder).is_dir():
        out.append((str(store_dir / folder), True))
    name = explicit if explicit and not Path(explicit).exists() else default_id
    out.append((name, True))  # Hugging Face cache
    if hub_reachable():
        out.append((name, False))
    return list(dict.fromkeys(out))  # keep the order, drop repeats


def _store_folder(repo_id: str, default_id: str, folder: str) -> str:
    """The store folder a hub download goes to: ``folder`` (where :func:`weight_candidates` looks)
    for the default model, else the repository's own name (another model is another folder)."""
    return folder if repo_id == default_id else repo_id.rstrip("/").split("/")[-1]


def fetch_into_store(repo_id: str, store_dir: Path, folder: str, patterns: list[str]) -> Path:
    """Download ``patterns`` of the hub repository ``repo_id`` into ``store_dir/folder``, once
    (``folder`` is where :func:`weight_candidates` looks in the store next time).

    The files go to a ``.partial`` folder first (a second call resumes it), which is renamed
    when complete, so an interrupted download never looks like a model folder.

    Returns:
        The folder, e.g. ``<store>/models/third_party/whisper-base``.

    Raises:
        NotFoundError: the download failed (any network or hub error).
    """
    from huggingface_hub import snapshot_download

    dest = Path(store_dir) / folder
    if dest.is_dir():
        return dest
    partial = dest.with_name(dest.name + ".partial")
    try:
        snapshot_download(repo_id, local_dir=partial, allow_patterns=patterns)
    except Exception as exc:  # network and hub errors come in many types; all mean "not available"
        raise NotFoundError(f"download of {repo_id} failed ({exc.__class__.__name__})", path=partial) from exc
    os.replace(partial, dest)
    return dest


def quiet_transformers() -> None:
    """Silence transformers' warnings and progress bars (they cut through our rich bars)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
