"""The encoder of OpenAI Whisper as a speech feature extractor (MuseTalk, LatentSync), offline first.

Usage::

    enc = load_whisper()                      # --whisper / $EMOGENE_WHISPER / ... (see below)
    feats = enc(audio, num_frames=T)          # [2T, 512] hidden states of encoder layer 3

Weights resolve like HuBERT's (:mod:`.weights`): ``--whisper DIR``, ``$EMOGENE_WHISPER``,
``$EMOGENE_MODEL_DIR/whisper-base``, ``<store>/models/third_party/whisper-base``, the Hugging
Face cache, then the hub (``openai/whisper-base``) only if it answers within a second and
never with ``HF_HUB_OFFLINE=1``. A folder holds ``config.json``, ``preprocessor_config.json``
and ``model.safetensors`` in transformers' layout; only the encoder's tensors (``encoder.*``
or ``model.encoder.*``) are read, so an encoder-only file and a full Whisper model both load.

The encoder sees 30 s windows (3000 log-mel frames at 100 Hz, 1500 hidden states at 50 Hz).
Longer audio goes through windows every 20 s; each keeps the hidden states of its middle
20 s (the first window also its first 5 s, the last one everything after), so every kept
state had at least 4.5 s of real audio on each side where the audio has it. Whisper's states
depend on where in its window a sound falls, so two windows differ slightly on the same
audio; over 0.5 s on each side of a join (25 s, 45 s, ...) the two are cross-faded, and the
features show no seam there. The hidden state of encoder layer ``layer`` (0 = the
embeddings, 6 = the last of whisper-base) is the feature; the blocks above it are not run.
Layer 3 was best for mouth opening in a leave-one-person-out ridge regression on the 34
people of ``../shared/data/talking`` (r 0.59 for layer 3 or 4, 0.55 for the last layer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, NotFoundError
from ..media import SAMPLE_RATE
from .timing import fit_length
from .weights import _store_folder, fetch_into_store, quiet_transformers, weight_candidates

DEFAULT_WHISPER = "openai/whisper-base"
WHISPER_FOLDER = "whisper-base"
#: The files of a Whisper hub repository that are downloaded (into the store, once).
WHISPER_FILES = ["config.json", "preprocessor_config.json", "model.safetensors"]
DEFAULT_LAYER = 3
WINDOW_SECONDS = 30.0  # what the encoder sees
STRIDE_SECONDS = 20.0  # where windows start; each keeps its middle 20 s
STATES_PER_SECOND = 50  # encoder hidden states per second (2 per video frame at 25 fps)
CROSSFADE = 25  # states (0.5 s) on each side of a join where two windows are blended


def whisper_candidates(explicit: str | None = None, store_dir: Path | None = None) -> list[tuple[str, bool]]:
    """Where Whisper weights are looked for, in order: ``(path or hub id, local_files_only)``."""
    return weight_candidates(
        explicit, env_var="EMOGENE_WHISPER", folder=WHISPER_FOLDER, default_id=DEFAULT_WHISPER, store_dir=store_dir
    )


def whisper_kind(name: str, layer: int) -> str:
    """The feature kind recorded with every artifact, e.g. ``"whisper:whisper-base:L3"``."""
    return f"whisper:{name}:L{layer}"


def windows(num_samples: int, sr: int = SAMPLE_RATE) -> list[tuple[int, int, int]]:
    """The encoder windows for ``num_samples`` of audio: ``(start sample, keep from, keep to)``.

    ``keep from`` / ``keep to`` are hidden-state indices (50 Hz) of the whole audio; the kept
    ranges tile ``[0, ceil(num_samples / sr * 50))`` without gaps or overlaps (see the module).
    """
    total = int(np.ceil(num_samples / sr * STATES_PER_SECOND))
    stride = int(STRIDE_SECONDS * STATES_PER_SECOND)
    margin = int((WINDOW_SECONDS - STRIDE_SECONDS) / 2 * STATES_PER_SECOND)
    out, k = [], 0
    while True:
        first = k * stride
        keep_from = 0 if k == 0 else first + margin
        keep_to = first + margin + stride
        if keep_to >= total:
            out.append((int(first * sr / STATES_PER_SECOND), keep_from, total))
            return out
        out.append((int(first * sr / STATES_PER_SECOND), keep_from, keep_to))
        k += 1


def _encoder_tensors(weights: Path) -> dict:
    """The encoder's tensors of a Whisper ``model.safetensors`` with the ``encoder.`` prefix dropped."""
    from safetensors.torch import load_file

    tensors = load_file(str(weights))
    for prefix in ("model.encoder.", "encoder."):
        found = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if found:
            return found
    raise InputError("no Whisper encoder tensors (encoder.*) in this file", path=weights)


class WhisperEncoder:
    """Hidden states of one layer of a Whisper encoder, at 50 Hz, for audio of any length.

    Args:
        source: a folder in transformers' layout (see the module) or a hub id.
        device: torch device string.
        local_files_only: never touch the network.
        layer: the hidden state used (0 = embeddings ... ``encoder_layers``); default 3, or
            the last layer of an encoder with fewer.

    Raises:
        NotFoundError: nothing loadable at ``source``.
        InputError: ``source`` is a folder but its files are broken (names the folder).
    """

    def __init__(self, source: str, device: str = "cpu", local_files_only: bool = True, layer: int | None = None) -> None:
        import torch

        quiet_transformers()
        from transformers import WhisperConfig, WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisperEncoder

        folder = Path(source)
        try:
            if folder.is_dir():
                weights = folder / "model.safetensors"
                if not weights.is_file():
                    raise InputError("a Whisper folder needs config.json, preprocessor_config.json and model.safetensors", path=folder)
            else:
                from huggingface_hub import hf_hub_download

                weights = Path(hf_hub_download(source, "model.safetensors", local_files_only=local_files_only))
            config = WhisperConfig.from_pretrained(source, local_files_only=local_files_only)
            self.extractor = WhisperFeatureExtractor.from_pretrained(source, local_files_only=local_files_only)
            if layer is None:
                layer = min(DEFAULT_LAYER, config.encoder_layers)
            if not 0 <= layer <= config.encoder_layers:
                raise InputError(f"Whisper layer {layer} does not exist (0-{config.encoder_layers})", path=source)
            encoder = HFWhisperEncoder(config)
            missing, unexpected = encoder.load_state_dict(_encoder_tensors(weights), strict=False)
            if missing:
                raise InputError(f"the Whisper encoder misses {len(missing)} tensors (e.g. {missing[0]})", path=weights)
        except InputError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:  # a bad config.json is a ValueError
            if folder.is_dir():
                raise InputError(f"broken Whisper weights folder ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})",
                                 path=folder) from exc
            raise NotFoundError(f"cannot load Whisper weights ({exc.__class__.__name__})", path=source) from exc
        encoder.layers = encoder.layers[:layer]  # the blocks above the chosen layer are never needed
        if layer < config.encoder_layers:  # the full encoder's final layer norm follows its last block only
            encoder.layer_norm = torch.nn.Identity()
        self.model = encoder.float().eval().to(device)
        self.device = device
        self.torch = torch
        self.layer = layer
        self.name = Path(source.rstrip("/")).name
        self.kind = whisper_kind(self.name, layer)
        self.dim = int(config.d_model)
        self.window_samples = int(WINDOW_SECONDS * SAMPLE_RATE)

    def __call__(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        """``[N]`` 16 kHz audio -> ``[2 * num_frames, D]`` float32 hidden states of ``layer``.

        Audio of any length goes through 30 s windows every 20 s (see the module); the
        result is trimmed or padded (last row repeated) to exactly two states per video frame.
        """
        torch = self.torch
        audio = np.asarray(audio, dtype=np.float32)
        plan = windows(len(audio))
        feats = np.zeros((plan[-1][2], self.dim), np.float32)
        previous = None  # the last window's states, to cross-fade into at the join
        with torch.inference_mode():
            for start, keep_from, keep_to in plan:
                piece = audio[start : start + self.window_samples]
                mel = self.extractor(piece, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
                out = self.model(torch.from_numpy(mel).to(self.device), output_hidden_states=True)
                hidden = out.hidden_states[self.layer][0].float().cpu().numpy()
                offset = start * STATES_PER_SECOND // SAMPLE_RATE
                feats[keep_from:keep_to] = hidden[keep_from - offset : keep_to - offset]
                if previous is not None:  # blend the two windows over CROSSFADE states on each side
                    prev_hidden, prev_offset = previous
                    lo, hi = keep_from - CROSSFADE, min(keep_from + CROSSFADE, keep_to)
                    w = ((np.arange(lo, hi) - lo + 0.5) / (2 * CROSSFADE))[:, None].astype(np.float32)
                    feats[lo:hi] = (1 - w) * prev_hidden[lo - prev_offset : hi - prev_offset] + w * hidden[lo - offset : hi - offset]
                previous = (hidden, offset)
        return fit_length(feats, 2 * num_frames).astype(np.float32)


def load_whisper(
    explicit: str | None = None, *, device: str = "cpu", store_dir: Path | None = None, layer: int | None = None
) -> WhisperEncoder:
    """The first Whisper encoder that loads from :func:`whisper_candidates`.

    Raises:
        InputError: a folder given (``explicit`` or ``$EMOGENE_WHISPER``) exists but is broken.
        NotFoundError: none loads; the line names ``--whisper`` and ``EMOGENE_WHISPER``.
    """
    tried = []
    for source, local in whisper_candidates(explicit, store_dir):
        try:
            if not local and store_dir is not None:  # from the hub: once, into the store
                source, local = str(fetch_into_store(source, store_dir, _store_folder(source, DEFAULT_WHISPER, WHISPER_FOLDER), WHISPER_FILES)), True
            return WhisperEncoder(source, device=device, local_files_only=local, layer=layer)
        except NotFoundError:
            tried.append(source + ("" if local else " (hub)"))
    raise NotFoundError(
        "no Whisper weights found (tried: " + ", ".join(tried) + "); pass --whisper DIR or set EMOGENE_WHISPER "
        "to a folder with openai/whisper-base, or use --audio-features mel",
        path=explicit or DEFAULT_WHISPER,
    )
