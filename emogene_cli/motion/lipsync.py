"""Lip-sync of the audio-to-motion model, measured on frames it never trained on.

Usage::

    figures, series = identity_lipsync(store, "obama_20s", data, device="cpu")
    figures["mouth_open_corr"], figures["mouth_open_best_lag"], figures["m_lmd"], figures["frames"]

``evaluate`` reports these figures (:func:`emogene_cli.pipelines.evaluate.evaluate_lipsync_only`
alone for an identity that was only preprocessed).

The figure is the Pearson correlation at lag 0 between the inner-lip opening (points 62-66
of the 68) predicted by the audio-to-motion model from the audio and the opening tracked in
the real video, both in the canonical head frame (head pose removed), in inter-ocular units;
the best correlation within ±10 frames and its lag (negative: the prediction moves early);
M-LMD (mouth landmarks 48-67, each frame centred) between the predicted landmarks, posed
with the real head poses, and the tracked ones, in pixels of a 256-pixel face crop; and the
number of frames measured. The model runs at temperature 0 (the prior's mean) on the
stretch's audio alone, speaker-normalised over that stretch, as ``speak`` would run it.
A person's model is scored with the recording's sound moved by the audio-video offset it was
trained with (:mod:`emogene_cli.motion.sync`; ``sync_offset`` in the figures).

Which frames: a fitted identity's model trains on all but the clip's last ``max(10 %, 5 s)``
(at most half the clip; :func:`emogene_cli.motion.training.a2m_heldout`), recorded in the model
file, and is measured on exactly those held-out frames. An identity that was only
preprocessed is measured with the generic model (``train-a2m``) on the whole clip, which
that model never saw unless its video was among train-a2m's inputs (then it says so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import SAMPLES_PER_FRAME, loudness_envelope
from ..dataset import split_frames
from ..errors import NotFoundError
from ..evaluation import metrics
from ..geometry import LM68_FROM_LM478
from ..store import Store, load_artifact
from .corpus import mouth_open
from .generic import MAX_LAG, lipsync_scores
from .sync import paired_frames
from .training import load_a2m, predict_motion

CROP = 256  # M-LMD pixels are those of a face crop of this side


def lipsync_model(store: Store, name: str, feature_kind: str, n_frames: int, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """The model to measure and where it may be measured: ``(model, info)``.

    ``info``: ``model`` (``"person"`` or ``"generic"``), ``start`` (first unseen frame),
    ``method`` (a sentence for the report), ``offset`` (the recording's audio-video offset the
    person's model was trained with, :func:`sync_offset_of`; 0 for the generic model).

    Raises:
        NotFoundError: neither the person's nor a generic audio-to-motion model exists.
        MismatchError: the model was made with other audio features than the dataset.
    """
    path = store.a2m_path(name)
    if path.is_file():
        model, art = load_a2m(path, device=device, feature_kind=feature_kind)
        start = art.metadata.get("a2m_train_frames")
        if start is not None:
            start = int(start)
            method = (f"the person's model ({art.metadata.get('a2m_mode', '?')}) on its own held-out stretch: the last "
                      f"{n_frames - start} frames, never trained on")
        else:  # older person models trained on the renderer's split
            start = len(split_frames(n_frames)[0])
            method = "the person's (older) model on the renderer's held-out last 10 % (under 5 s for clips under 50 s)"
        offset = _recorded_offset(art.metadata)
        if offset:
            method += (f"; the recording's sound is paired {offset:+d} frames from its picture, the audio-video offset "
                       "fit-identity measured and trained with")
        return model, {"model": "person", "start": start, "method": method, "offset": offset}
    gpath = store.generic_a2m_file
    if not gpath.is_file():
        raise NotFoundError(
            f"identity '{name}' has no audio-to-motion model and the store no generic one: run `emogene train-a2m VIDEOS` "
            f"or `emogene fit-identity {name}`", path=gpath)
    model, art = load_a2m(gpath, what="generic audio-to-motion model", device=device, feature_kind=feature_kind)
    method = f"the generic model ({store.generic_a2m_label()}) on the whole clip"
    return model, {"model": "generic", "start": 0, "offset": 0, "method": method, "trained_clips": json.loads(art.metadata.get("train_clips", "[]"))}


def sync_offset_of(store: Store, name: str) -> int:
    """The audio-video offset (frames, :mod:`emogene_cli.motion.sync`) the person's model was trained with; 0 if none."""
    path = store.a2m_path(name)
    if not path.is_file():
        return 0
    return _recorded_offset(load_artifact(path, what="audio-to-motion model").metadata)


def _recorded_offset(metadata: dict[str, str]) -> int:
    """``sync_offset`` of a person's model file (written by fit-identity); 0 in files made before it."""
    return int(metadata.get("sync_offset", "0"))


def measure_lipsync(model: Any, data: Any, start: int, stop: int | None = None, device: str = "cpu",
                    offset: int = 0) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Lip-sync figures of ``model`` on frames ``[start, stop)`` of an identity dataset.

    Args:
        data: :class:`~emogene_cli.dataset.IdentityData` (any loaded ``size``).
        offset: the recording's audio-video offset in frames (:mod:`emogene_cli.motion.sync`):
            video frame ``t`` is scored against the prediction from audio frame ``t + offset``
            (frames without a partner are dropped).

    Returns:
        ``(figures, series)``: figures as in the module docstring plus the audio-envelope
        correlation of the predicted and of the real mouth opening (best within ±10 frames and its
        lag); series ``mouth_open_pred``, ``mouth_open_real``, ``envelope`` (``[n]`` each).
    """
    T = data.frames
    stop = T if stop is None else min(stop, T)
    start = max(0, min(start, stop - 3))
    a, v = paired_frames(start, stop, offset, T)
    pred = predict_motion(model, data.audio_features[2 * a.start : 2 * a.stop], data.f0[a], temperature=0.0, device=device)
    mean68 = data.mean_shape[LM68_FROM_LM478]
    lm68 = data.landmarks[v][:, LM68_FROM_LM478]
    figures = lipsync_scores(pred, data.motion[v], mean68, data.iod, data.poses[v], lm68,
                             CROP / float(data.size), data.face_found[v])

    p_open = mouth_open(pred, mean68, data.iod)
    r_open = mouth_open(data.motion[v], mean68, data.iod)
    n = v.stop - v.start
    env = loudness_envelope(data.audio[a.start * SAMPLES_PER_FRAME : a.stop * SAMPLES_PER_FRAME], n)
    env_video = loudness_envelope(data.audio[v.start * SAMPLES_PER_FRAME : v.stop * SAMPLES_PER_FRAME], n)
    env_pred = metrics.lipsync_correlation(p_open, env, max_lag=MAX_LAG)
    env_real = metrics.lipsync_correlation(r_open, env_video, max_lag=MAX_LAG)
    figures.update({
        "seconds": n / 25.0, "start_frame": int(v.start), "stop_frame": int(v.stop), "sync_offset": int(offset),
        "envelope_corr_pred": env_pred[0], "envelope_lag_pred": int(env_pred[1]),
        "envelope_corr_real_video": env_real[0], "envelope_lag_real_video": int(env_real[1]),
        "m_lmd_units": f"pixels of a {CROP}x{CROP} face crop",
    })
    return figures, {"mouth_open_pred": p_open, "mouth_open_real": r_open, "envelope": env}


def identity_lipsync(store: Store, name: str, data: Any, device: str = "cpu") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """:func:`measure_lipsync` of the identity's own (or the generic) model on its unseen frames."""
    model, info = lipsync_model(store, name, data.feature_kind, data.frames, device)
    figures, series = measure_lipsync(model, data, info["start"], None, device, offset=info.get("offset", 0))
    figures = {"model": info["model"], "method": info["method"], **figures}
    if info["model"] == "generic":
        source = str(Path(data.metadata.get("source", "")).resolve()) if data.metadata.get("source") else ""
        figures["clip_in_generic_training"] = bool(source and source in info.get("trained_clips", []))
    if figures["frames"] < 125:
        figures["note"] = f"only {figures['frames']} unseen frames ({figures['frames'] / 25:.1f} s); under 5 s the correlation is loose"
    return figures, series
