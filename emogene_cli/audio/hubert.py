"""HuBERT (``transformers.HubertModel``) as an audio feature extractor, resolved offline first.

Weights are looked up without ever waiting on the network: an explicit path or name,
``$EMOGENE_HUBERT``, ``$EMOGENE_MODEL_DIR/hubert``, ``<store>/models/third_party/hubert``, the
Hugging Face cache (``local_files_only=True``), and only then the hub, and the hub only when
it answers a 1-second connection test and ``HF_HUB_OFFLINE`` is unset.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np

from ..errors import NotFoundError
from ..media import SAMPLE_RATE
from .timing import fit_length

DEFAULT_HUBERT = "facebook/hubert-large-ls960-ft"


def _hub_reachable(timeout: float = 1.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def hubert_candidates(explicit: str | None = None, store_dir: Path | None = None) -> list[tuple[str, bool]]:
    """Where HuBERT weights are looked for, in order: ``(path or hub id, local_files_only)``."""
    out: list[tuple[str, bool]] = []
    if explicit:
        out.append((explicit, True))
    env = os.environ.get("EMOGENE_HUBERT")
    if env:
        out.append((env, True))
    model_dir = os.environ.get("EMOGENE_MODEL_DIR")
    if model_dir and (Path(model_dir) / "hubert").is_dir():
        out.append((str(Path(model_dir) / "hubert"), True))
    if store_dir is not None and (store_dir / "hubert").is_dir():
        out.append((str(store_dir / "hubert"), True))
    name = explicit if explicit and not Path(explicit).exists() else DEFAULT_HUBERT
    out.append((name, True))  # Hugging Face cache
    if _hub_reachable():
        out.append((name, False))
    # keep order, drop duplicates
    seen, uniq = set(), []
    for item in out:
        if item not in seen:
            seen.add(item)
            uniq.append(item)
    return uniq


class HubertEncoder:
    """HuBERT (``transformers.HubertModel``) as a feature extractor: last hidden state at 50 Hz.

    Args:
        source: a local directory or hub id loadable by ``HubertModel.from_pretrained``.
        device: torch device string.
        local_files_only: never touch the network.

    Raises:
        NotFoundError: the weights cannot be loaded from ``source``.
    """

    def __init__(self, source: str, device: str = "cpu", local_files_only: bool = True) -> None:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import torch
        from transformers import HubertModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # its tqdm bar would cut through our rich progress bars
        try:
            self.model = HubertModel.from_pretrained(source, local_files_only=local_files_only).eval().to(device)
        except Exception as exc:
            raise NotFoundError(f"cannot load HuBERT weights ({exc.__class__.__name__})", path=source) from exc
        self.device = device
        self.torch = torch
        self.name = Path(source.rstrip("/")).name
        self.kind = f"hubert:{self.name}"
        self.dim = int(self.model.config.hidden_size)

    def __call__(self, audio: np.ndarray, num_frames: int, chunk_seconds: float = 20.0) -> np.ndarray:
        """``[N]`` 16 kHz audio -> ``[2 * num_frames, D]`` float32 last hidden states.

        The waveform is normalised to zero mean / unit variance (as HuBERT's feature
        extractor does) and encoded in chunks of ``chunk_seconds`` to bound memory.
        """
        torch = self.torch
        x = audio.astype(np.float32)
        x = (x - x.mean()) / (x.std() + 1e-7)
        chunk = int(chunk_seconds * SAMPLE_RATE)
        outs = []
        with torch.inference_mode():
            for start in range(0, len(x), chunk):
                piece = x[start : start + chunk]
                if len(piece) < 400:  # shorter than HuBERT's receptive field
                    piece = np.pad(piece, (0, 400 - len(piece)))
                hidden = self.model(torch.from_numpy(piece)[None].to(self.device)).last_hidden_state[0]
                outs.append(hidden.float().cpu().numpy())
        feats = np.concatenate(outs, 0)
        return fit_length(feats, 2 * num_frames).astype(np.float32)


def load_hubert(explicit: str | None = None, *, device: str = "cpu", store_dir: Path | None = None) -> HubertEncoder:
    """The first HuBERT that loads from :func:`hubert_candidates`; NotFoundError naming them otherwise."""
    tried = []
    for source, local in hubert_candidates(explicit, store_dir):
        try:
            return HubertEncoder(source, device=device, local_files_only=local)
        except NotFoundError:
            tried.append(source + ("" if local else " (hub)"))
    raise NotFoundError(
        "no HuBERT weights found (tried: " + ", ".join(tried) + "); pass --hubert DIR, set EMOGENE_HUBERT, or use --audio-features mel",
        path=explicit or DEFAULT_HUBERT,
    )
