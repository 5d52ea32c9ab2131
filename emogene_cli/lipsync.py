"""Lip-sync of the audio-to-motion model, measured on frames it never trained on.

Usage::

    figures, series = identity_lipsync(store, "obama_20s", data, device="cpu")
    figures["mouth_open_corr"], figures["mouth_open_best_lag"], figures["m_lmd"], figures["frames"]
    result = evaluate_lipsync_only("new_person", store=store)      # a preprocessed-only identity

The figure is the Pearson correlation at lag 0 between the inner-lip opening (points 62-66
of the 68) predicted by the audio-to-motion model from the audio and the opening tracked in
the real video, both in the canonical head frame (head pose removed), in inter-ocular units;
the best correlation within ±10 frames and its lag (negative: the prediction moves early);
M-LMD (mouth landmarks 48-67, each frame centred) between the predicted landmarks, posed
with the real head poses, and the tracked ones, in pixels of a 256-pixel face crop; and the
number of frames measured. The model runs at temperature 0 (the prior's mean) on the
stretch's audio alone, speaker-normalised over that stretch, as ``speak`` would run it.

Which frames: a fitted identity's model trains on all but the clip's last ``max(10 %, 5 s)``
(at most half the clip; :func:`emogene_cli.train_a2m.a2m_heldout`), recorded in the model
file, and is measured on exactly those held-out frames. An identity that was only
preprocessed is measured with the generic model (``train-a2m``) on the whole clip, which
that model never saw unless its video was among train-a2m's inputs (then it says so).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import metrics
from .audio import SAMPLES_PER_FRAME, loudness_envelope
from .errors import NotFoundError
from .generic_a2m import MAX_LAG, lipsync_scores
from .geometry import LM68_FROM_LM478
from .store import Store, atomic_write_bytes
from .train_a2m import load_a2m, predict_motion

if TYPE_CHECKING:
    from .evaluate import EvaluationResult

CROP = 256  # M-LMD pixels are those of a face crop of this side


def lipsync_model(store: Store, name: str, feature_kind: str, n_frames: int, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """The model to measure and where it may be measured: ``(model, info)``.

    ``info``: ``model`` (``"person"`` or ``"generic"``), ``start`` (first unseen frame),
    ``method`` (a sentence for the report).

    Raises:
        NotFoundError: neither the person's nor a generic audio-to-motion model exists.
        MismatchError: the model was made with other audio features than the dataset.
    """
    from .fit_renderer import split_frames

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
        return model, {"model": "person", "start": start, "method": method}
    gpath = store.generic_a2m_path
    if not gpath.is_file():
        raise NotFoundError(
            f"identity '{name}' has no audio-to-motion model and the store no generic one: run `emogene train-a2m VIDEOS` "
            f"or `emogene fit-identity {name}`", path=gpath)
    model, art = load_a2m(gpath, what="generic audio-to-motion model", device=device, feature_kind=feature_kind)
    method = "the generic model (train-a2m) on the whole clip"
    return model, {"model": "generic", "start": 0, "method": method, "trained_clips": json.loads(art.metadata.get("train_clips", "[]"))}


def measure_lipsync(model: Any, data: Any, start: int, stop: int | None = None, device: str = "cpu") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Lip-sync figures of ``model`` on frames ``[start, stop)`` of an identity dataset.

    Args:
        data: :class:`~emogene_cli.preprocess.IdentityData` (any loaded ``size``).

    Returns:
        ``(figures, series)``: figures as in the module docstring plus the audio-envelope
        correlation of the predicted and of the real mouth opening (best within ±10 frames and its
        lag); series ``mouth_open_pred``, ``mouth_open_real``, ``envelope`` (``[n]`` each).
    """
    T = data.frames
    stop = T if stop is None else min(stop, T)
    start = max(0, min(start, stop - 3))
    feats = data.audio_features[2 * start : 2 * stop]
    f0 = data.f0[start:stop]
    pred = predict_motion(model, feats, f0, temperature=0.0, device=device)
    mean68 = data.mean_shape[LM68_FROM_LM478]
    lm68 = data.landmarks[start:stop][:, LM68_FROM_LM478]
    figures = lipsync_scores(pred, data.motion[start:stop], mean68, data.iod, data.poses[start:stop], lm68,
                             CROP / float(data.size), data.face_found[start:stop])
    from .a2m_data import mouth_open

    p_open = mouth_open(pred, mean68, data.iod)
    r_open = mouth_open(data.motion[start:stop], mean68, data.iod)
    audio = data.audio[start * SAMPLES_PER_FRAME : stop * SAMPLES_PER_FRAME]
    env = loudness_envelope(audio, stop - start)
    env_pred = metrics.lipsync_correlation(p_open, env, max_lag=MAX_LAG)
    env_real = metrics.lipsync_correlation(r_open, env, max_lag=MAX_LAG)
    figures.update({
        "seconds": (stop - start) / 25.0, "start_frame": int(start), "stop_frame": int(stop),
        "envelope_corr_pred": env_pred[0], "envelope_lag_pred": int(env_pred[1]),
        "envelope_corr_real_video": env_real[0], "envelope_lag_real_video": int(env_real[1]),
        "m_lmd_units": f"pixels of a {CROP}x{CROP} face crop",
    })
    return figures, {"mouth_open_pred": p_open, "mouth_open_real": r_open, "envelope": env}


def identity_lipsync(store: Store, name: str, data: Any, device: str = "cpu") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """:func:`measure_lipsync` of the identity's own (or the generic) model on its unseen frames."""
    model, info = lipsync_model(store, name, data.feature_kind, data.frames, device)
    figures, series = measure_lipsync(model, data, info["start"], None, device)
    figures = {"model": info["model"], "method": info["method"], **figures}
    if info["model"] == "generic":
        source = str(Path(data.metadata.get("source", "")).resolve()) if data.metadata.get("source") else ""
        figures["clip_in_generic_training"] = bool(source and source in info.get("trained_clips", []))
    if figures["frames"] < 125:
        figures["note"] = f"only {figures['frames']} unseen frames ({figures['frames'] / 25:.1f} s); under 5 s the correlation is loose"
    return figures, series


def lipsync_plot(series: dict[str, np.ndarray], figures: dict[str, Any]) -> str:
    """A PNG (base64) of predicted and real mouth opening over the measured stretch, with the audio envelope."""
    import base64

    import cv2
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    start = figures.get("start_frame", 0)
    t = (start + np.arange(len(series["mouth_open_real"]))) / 25.0
    fig = Figure(figsize=(9, 3.4), dpi=90)
    ax = fig.subplots()
    ax.plot(t, series["mouth_open_real"], color="k", lw=1.2, label="real (tracked)")
    ax.plot(t, series["mouth_open_pred"], color="tab:red", lw=1.2, label=f"predicted from audio ({figures.get('model', '')} model)")
    env = series["envelope"]
    if np.ptp(env) > 0:
        lo, hi = np.min(series["mouth_open_real"]), np.max(series["mouth_open_real"])
        ax.fill_between(t, lo, lo + (env - env.min()) / np.ptp(env) * (hi - lo), color="tab:blue", alpha=0.15, label="audio loudness (scaled)")
    ax.set_xlabel("seconds into the clip")
    ax.set_ylabel("inner-lip opening (inter-ocular units)")
    ax.set_title(f"mouth opening: r = {figures.get('mouth_open_corr', float('nan')):.2f} at lag 0, "
                 f"best {figures.get('mouth_open_best_corr', float('nan')):.2f} at lag {figures.get('mouth_open_best_lag', 0)} "
                 f"({figures.get('frames', 0)} frames)", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[:, :, :3]
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return base64.b64encode(buf.tobytes()).decode()


PLOT_TITLE = "Lip sync: predicted vs real mouth opening over the whole measured stretch (frames the model never trained on)"


def evaluate_lipsync_only(name: str, *, store: Store, device: str = "cpu", json_path: str | Path | None = None,
                          report_path: str | Path | None = None) -> EvaluationResult:
    """Evaluate a preprocessed identity without a renderer: only the ``lipsync`` figures.

    Writes ``identities/<name>/evaluation.json`` (``{"identity", "lipsync", ...}``) and an HTML
    report with the mouth-opening plot.

    Returns:
        :class:`~emogene_cli.evaluate.EvaluationResult` with the ``lipsync`` figures alone.

    Raises:
        NotFoundError: not preprocessed, or no audio-to-motion model at all.
    """
    import html

    from .evaluate import EvaluationResult, _finite
    from .preprocess import load_identity

    t0 = time.perf_counter()
    data = load_identity(store, name, with_images=False)
    seconds = {"load": time.perf_counter() - t0}
    t0 = time.perf_counter()
    lip, series = identity_lipsync(store, name, data, device)
    seconds["lipsync"] = time.perf_counter() - t0
    figures = {"identity": name, "fitted": False, "frames": data.frames, "feature_kind": data.feature_kind,
               "lipsync": lip, "seconds": seconds,
               "note": "no renderer: only the audio-to-motion figures (run `emogene fit-identity` for the rendering ones)"}
    json_out = Path(json_path) if json_path else store.identity_dir(name) / "evaluation.json"
    report_out = Path(report_path) if report_path else store.identity_dir(name) / "evaluation.html"
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</td></tr>"
                   for k, v in lip.items())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>emogene evaluation</title></head>"
            f"<body style='font-family:sans-serif;max-width:1000px;margin:2em auto'><h1>emogene evaluation: {html.escape(name)}</h1>"
            f"<p>{html.escape(figures['note'])}</p><h3>lipsync</h3><table border=1 cellpadding=3>{rows}</table>"
            f"<h3>{html.escape(PLOT_TITLE)}</h3><img style='max-width:100%' src='data:image/png;base64,{lipsync_plot(series, lip)}'>"
            "</body></html>")
    atomic_write_bytes(json_out, json.dumps(_finite(figures), indent=1, allow_nan=False).encode())
    atomic_write_bytes(report_out, page.encode())
    return EvaluationResult(name=name, figures=figures, json_path=json_out, report_path=report_out, seconds=seconds)
