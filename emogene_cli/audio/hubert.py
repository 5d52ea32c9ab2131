"""HuBERT (``transformers.HubertModel``) as an audio feature extractor, resolved offline first.

Weights are looked up without ever waiting on the network (:mod:`.weights`): an explicit
path or name, ``$EMOGENE_HUBERT``, ``$EMOGENE_MODEL_DIR/hubert``,
``<store>/models/third_party/hubert``, the Hugging Face cache, then the hub if it answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import NotFoundError
from ..media import SAMPLE_RATE
from .timing import fit_length
from .weights import _store_folder, fetch_into_store, quiet_transformers, weight_candidates

DEFAULT_HUBERT = "facebook/hubert-large-ls960-ft"


#: The files of a HuBERT hub repository that are downloaded (into the store, once).
HUBERT_FILES = ["config.json", "preprocessor_config.json", "model.safetensors"]


def hubert_candidates(explicit: str | None = None, store_dir: Path | None = None) -> list[tuple[str, bool]]:
    """Where HuBERT weights are looked for, in order: ``(path or hub id, local_files_only)``."""
    return weight_candidates(explicit, env_var="EMOGENE_HUBERT", folder="hubert", default_id=DEFAULT_HUBERT, store_dir=store_dir)


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
        import torch
        from transformers import HubertModel

        quiet_transformers()
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
            if not local and store_dir is not None:  # from the hub: once, into the store
                source, local = str(fetch_into_store(source, store_dir, _store_folder(source, DEFAULT_HUBERT, "hubert"), HUBERT_FILES)), True
            return HubertEncoder(source, device=device, local_files_only=local)
        except NotFoundError:
            tried.append(source + ("" if local else " (hub)"))
    raise NotFoundError(
        "no HuBERT weights found (tried: " + ", ".join(tried) + "); pass --hubert DIR, set EMOGENE_HUBERT, or use --audio-features mel",
        path=explicit or DEFAULT_HUBERT,
    )
