"""The evaluation report: frame grids, plots and the self-contained HTML page.

Usage::

    grid = frame_grid(real, rendered, real68, fake68)          # [rows * PANEL, 3 * PANEL, 3] uint8
    page = report_html(figures, [(title, png_base64(grid))], report_plots(parts, figures))

Pure presentation: everything here takes figures already measured (by
:mod:`emogene_cli.pipelines.evaluate`) and returns images or text. Plots use matplotlib's
object API on an Agg canvas, so no global backend is changed.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

import cv2
import numpy as np

from ..errors import InputError
from .result import PAPER_REFERENCE

GRID_ROWS = 4
PANEL = 192  # side of one frame-grid panel in the report, pixels


def png_base64(image: np.ndarray) -> str:
    """``[H, W, 3]`` uint8 RGB image -> PNG bytes as base64 text (for ``<img src="data:...">``)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 failure
        raise InputError("could not encode a report image")
    return base64.b64encode(buf.tobytes()).decode()


def _figure_png(fig: Any) -> str:
    """A matplotlib ``Figure`` drawn on an Agg canvas, as :func:`png_base64` text."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return png_base64(np.asarray(canvas.buffer_rgba())[:, :, :3])


def _panel(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (PANEL, PANEL), interpolation=cv2.INTER_NEAREST if image.shape[0] < PANEL else cv2.INTER_AREA)


def _landmark_panel(background: np.ndarray, real68: np.ndarray, fake68: np.ndarray) -> np.ndarray:
    """The real frame dimmed, real landmarks green, rendered-frame landmarks red, at panel size."""
    out = (_panel(background).astype(np.float32) * 0.35).astype(np.uint8)
    s = PANEL / background.shape[0]
    for pts, colour in ((real68, (60, 230, 60)), (fake68, (255, 60, 60))):
        for x, y in pts[:, :2] * s:
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(out, (int(round(x)), int(round(y))), 2, colour, -1, lineType=cv2.LINE_AA)
    return out


def frame_grid(real: np.ndarray, rendered: np.ndarray, real68: np.ndarray, fake68: np.ndarray, rows: int = GRID_ROWS) -> np.ndarray:
    """A grid image, one row per picked frame: real | rendered | landmarks (real green, rendered red).

    Args:
        real, rendered: ``[T, H, W, 3]`` uint8; real68, fake68: ``[T, 68, 2|3]`` pixels.

    Returns:
        ``[rows * PANEL, 3 * PANEL, 3]`` uint8.
    """
    pick = np.unique(np.linspace(0, len(real) - 1, num=min(rows, len(real))).round().astype(int))
    lines = [np.concatenate([_panel(real[i]), _panel(rendered[i]), _landmark_panel(real[i], real68[i], fake68[i])], axis=1)
             for i in pick]
    return np.concatenate(lines, axis=0)


def report_plots(parts: dict[str, dict[str, Any]], figures: dict[str, Any]) -> list[tuple[str, str]]:
    """Matplotlib figures (object API, Agg canvas: no global backend change) as base64 PNGs."""
    from matplotlib.figure import Figure

    out = []
    rec, aud = parts.get("reconstruction", {}), parts.get("audio_driven", {})
    if rec:
        fig = Figure(figsize=(9, 5.5), dpi=90)
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        x = np.arange(len(rec["psnr"]))
        ax1.plot(x, rec["psnr"], "o-", label="PSNR frame")
        ax1.plot(x, rec["psnr_face"], "s-", label="PSNR face")
        ax1.set_ylabel("dB")
        ax1b = ax1.twinx()
        ax1b.plot(x, rec["ssim"], "^--", color="tab:green", label="SSIM frame")
        ax1b.plot(x, rec["ssim_face"], "v--", color="tab:olive", label="SSIM face")
        ax1b.set_ylabel("SSIM")
        handles = ax1.get_legend_handles_labels()
        handles_b = ax1b.get_legend_handles_labels()
        ax1.legend(handles[0] + handles_b[0], handles[1] + handles_b[1], fontsize=8)
        ax2.plot(x, rec["m_lmd"], "o-", label="M-LMD reconstruction")
        ax2.plot(x, rec["f_lmd"], "s-", label="F-LMD reconstruction")
        if aud:
            ax2.plot(np.arange(len(aud["m_lmd"])), aud["m_lmd"], "o--", label="M-LMD audio-driven")
            ax2.plot(np.arange(len(aud["f_lmd"])), aud["f_lmd"], "s--", label="F-LMD audio-driven")
        ax2.set_ylabel("pixels")
        ax2.set_xlabel("held-out frame")
        ax2.legend(fontsize=8)
        fig.tight_layout()
        out.append(("Per-frame reconstruction metrics and landmark distances (held-out frames)", _figure_png(fig)))
    if aud:
        fig = Figure(figsize=(9, 3.2), dpi=90)
        ax = fig.subplots()
        z = lambda v: (v - np.mean(v)) / (np.std(v) + 1e-9)  # noqa: E731
        t = np.arange(len(aud["envelope"])) / 25.0
        ax.plot(t, z(aud["envelope"]), label="audio loudness (RMS)")
        ax.plot(t, z(aud["mouth_open"]), label="mouth opening, rendered")
        ax.plot(t, z(aud["mouth_open_real"]), ":", label="mouth opening, real")
        a = figures.get("audio_driven", {})
        ax.set_title(f"lip sync: r = {a.get('lipsync_corr', float('nan')):.2f} at lag {a.get('lipsync_lag', 0)} frames", fontsize=10)
        ax.set_xlabel("seconds")
        ax.set_ylabel("z-score")
        ax.legend(fontsize=8)
        fig.tight_layout()
        out.append(("Mouth opening against the audio envelope (audio-driven held-out stretch)", _figure_png(fig)))
    emo = figures.get("emotion", {}).get("per_emotion", {})
    scored = [(e, v.get("score")) for e, v in emo.items() if e != "neutral"]
    if scored:
        fig = Figure(figsize=(9, 3.2), dpi=90)
        ax = fig.subplots()
        ax.bar([e for e, _ in scored], [s if s is not None and np.isfinite(s) else 0.0 for _, s in scored], color="tab:purple")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel("blendshape change vs neutral")
        fig.tight_layout()
        out.append(("Emotion: change of the relevant blendshapes against the neutral render", _figure_png(fig)))
    idle = parts.get("idle", {})
    if idle:
        fig = Figure(figsize=(9, 3.2), dpi=90)
        ax = fig.subplots()
        t = np.arange(len(idle["speed"])) / 25.0
        ax.plot(t, idle["speed"], label="pose velocity")
        top = np.nanmax(idle["speed"]) if np.isfinite(idle["speed"]).any() else 1.0
        ax.fill_between(t, 0, top, where=idle["silent"], color="grey", alpha=0.25, label="silent")
        ax.set_xlabel("seconds")
        ax.set_ylabel("|Δ pose| per frame")
        ax.legend(fontsize=8)
        fig.tight_layout()
        out.append(("Idle: head-pose velocity, silent stretch shaded", _figure_png(fig)))
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _strength_table(title: str, columns: list[tuple[str, dict[str, tuple[float, str]]]],
                    footer: list[tuple[str, list[str]]] | None = None) -> str:
    """An HTML table of emotion strengths: a row per emotion, a column per ``(heading, {emotion:
    (strength, read as)})``, "-" where a column lacks the emotion; ``footer`` rows of text."""
    emotions = list(dict.fromkeys(e for _, cells in columns for e in cells))
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in columns)
    rows = "".join(
        f"<tr><td>{html.escape(e)}</td>" + "".join(
            f"<td>{_fmt(cells[e][0])} ({html.escape(str(cells[e][1]))})</td>" if e in cells else "<td>-</td>"
            for _, cells in columns) + "</tr>"
        for e in emotions)
    rows += "".join(f"<tr><td>{html.escape(label)}</td>" + "".join(f"<td>{html.escape(v)}</td>" for v in values) + "</tr>"
                    for label, values in footer or [])
    return f"<h4>{html.escape(title)}</h4><table><tr><th>emotion</th>{head}</tr>{rows}</table>"


def leave_one_actor_out_html(held_out: list[dict]) -> str:
    """train-ldm's leave-one-actor-out table (:class:`~emogene_cli.emotion.training.HeldOutActor`
    records): per emotion, for each left-out actor, strength and what it reads as; "" when empty."""
    if not held_out:
        return ""
    return _strength_table(
        "leave one actor out (train-ldm; landmark level: the LDM trained without the actor, its predicted lasting shape "
        "projected on the actor's real one, 1 = as the actor; in brackets the real emotion it points nearest to)",
        [(f"without {h['actor']}", {e: (v, h["read_as"][e]) for e, v in h["strength"].items()}) for h in held_out])


def rendered_leave_one_actor_out_html(records: list[dict]) -> str:
    """``train-ldm --render``'s table (:func:`~emogene_cli.pipelines.emotion_loao.rendered_leave_one_actor_out`
    records): per emotion, for each identity and left-out actor, the rendered strength and what
    it reads as, then the median, lowest and how many read right; "" when empty."""
    if not records:
        return ""
    return _strength_table(
        "leave one actor out on rendered frames (train-ldm --render: every emotion rendered with the LDM trained without "
        "the actor, graded by the actor's own blendshape change, 1 = as the actor; in brackets the actor's emotion it reads as)",
        [(f"{r['identity']} without {r['actor']}",
          {e: (v["strength"], v["recognised_as"]) for e, v in r["per_emotion"].items() if "strength" in v}) for r in records],
        [("median / lowest", [f"{r['summary']['median']:.4g} / {r['summary']['lowest']:.4g}" for r in records]),
         ("read right", [f"{r['summary']['read_right']} of {r['summary']['measured']}" for r in records])])


def report_html(figures: dict[str, Any], grids: list[tuple[str, str]], plots: list[tuple[str, str]]) -> str:
    """The self-contained evaluation page: a table per part of ``figures`` (with the paper's
    figures beside ours, :data:`PAPER_REFERENCE`), the emotion table, then ``grids`` and
    ``plots`` as ``(title, base64 PNG)`` pairs and the software versions."""
    def table(title: str, d: dict[str, Any]) -> str:
        rows = []
        for k, v in d.items():
            if isinstance(v, dict):
                continue
            ref = PAPER_REFERENCE.get(k if title != "idle" else f"idle_{k}")
            rows.append(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td><td>{'' if ref is None else ref}</td></tr>")
        return (f"<h3>{html.escape(title)}</h3><table><tr><th>figure</th><th>value</th><th>EmoGene paper</th></tr>"
                + "".join(rows) + "</table>")

    parts = [f"<h1>emogene evaluation: {html.escape(figures['identity'])}</h1>",
             f"<p>preset {_fmt(figures['preset'])}, {figures['resolution']}x{figures['resolution']} pixels, "
             f"{figures['frames']} frames ({figures['heldout_frames']} held out), device {_fmt(figures['device']['device'])}. "
             "Landmark distances in pixels at that resolution after centring each frame's points "
             "(see emogene_cli.evaluation.metrics).</p>"]
    for key in ("reconstruction", "audio_driven", "lipsync", "idle"):
        if key in figures:
            parts.append(table(key, figures[key]))
    emo = figures.get("emotion", {})
    if "per_emotion" in emo:
        rows = "".join(
            f"<tr><td>{html.escape(e)}</td><td>{_fmt(v.get('strength', ''))}</td><td>{html.escape(str(v.get('recognised_as', '')))}</td>"
            f"<td>{_fmt(v.get('emotion_gain', ''))}</td><td>{_fmt(v.get('score', ''))}</td><td>"
            + ", ".join(f"{html.escape(n)} {d:+.3f}" for n, d in v.get("deltas", {}).items())
            + f"</td><td>{_fmt(v['face_found'])}</td><td>"
            + ", ".join(f"{html.escape(c['name'])} {c['rendered']:+.2f} ({c['reference']:+.2f})" for c in v.get("largest_changes", []))
            + "</td></tr>"
            for e, v in emo["per_emotion"].items())
        parts.append(f"<h3>emotion</h3><p>strength median {_fmt(emo.get('strength_median', ''))}, "
                     f"lowest {_fmt(emo.get('strength_min', ''))}; recognised {emo.get('recognised', 0)} of {emo.get('measured', 0)}"
                     f"{'; landmark deformation model: ' + html.escape(emo['ldm']) if emo.get('ldm') else ''}</p>"
                     "<table><tr><th>emotion</th><th>strength (1 = real actor)</th><th>recognised as</th><th>emotion gain</th><th>score</th>"
                     "<th>blendshape deltas</th><th>face found</th>"
                     "<th>largest changes: rendered (reference actors)</th></tr>" + rows + "</table>"
                     + (f"<p>{html.escape(emo['reference_note'])}.</p>" if emo.get("reference_note") else "")
                     + leave_one_actor_out_html(emo.get("leave_one_actor_out", []))
                     + rendered_leave_one_actor_out_html(emo.get("rendered_leave_one_actor_out", [])))
    elif emo:
        parts.append(f"<h3>emotion</h3><p>{_fmt(emo.get('skipped', ''))}</p>")
    ref = figures.get("reference_lipsync", {})
    if "per_emotion" in ref:
        def cells(d: dict[str, Any]) -> str:
            return (f"<td>{_fmt(d['r_lag0'])}</td><td>{_fmt(d['r_best'])} ({d['best_lag']:+d})</td>"
                    f"<td>{_fmt(d['std_ratio'])}</td>")
        rows = "".join(
            f"<tr><td>{html.escape(e)}</td>{cells(v['rendered_vs_speaker'])}{cells(v['rendered_vs_driving'])}"
            f"{cells(v['driving_vs_speaker'])}<td>{_fmt(v['face_found_rendered'])}</td>"
            + "".join(f"<td>{_fmt(v['image_plane'][k]['r_lag0'])}</td>"
                      for k in ("rendered_vs_speaker", "rendered_vs_driving", "driving_vs_speaker")) + "</tr>"
            for e, v in ref["per_emotion"].items())
        head = "<th>r lag 0</th><th>best r (lag)</th><th>std ratio</th>"
        off = ref.get("reference_offset", {})
        warn = (f"<p><b>{html.escape(off['note'])}.</b></p>" if off.get("note") else
                f"<p>The reference's audio-video offset: {off['frames']:+d} frames (+: sound late; driving vs speaker r "
                f"{_fmt(off['r_at_offset'])} there, {_fmt(off['r_lag0'])} at lag 0).</p>" if off else "")
        parts.append(f"<h3>lip sync end to end: {html.escape(ref['reference'])}, {ref['seconds']:.1f} s</h3>"
                     f"{warn}<p>{html.escape(ref['note'])}</p><table><tr><th></th><th colspan=3>rendered vs the real speaker</th>"
                     "<th colspan=3>rendered vs the driving landmarks</th><th colspan=3>driving landmarks vs the real speaker</th>"
                     "<th></th><th colspan=3>measured in the image (head pose not removed): r lag 0</th></tr>"
                     f"<tr><th>emotion</th>{head}{head}{head}<th>face found (rendered)</th>"
                     f"<th>rendered vs speaker</th><th>rendered vs driving</th><th>driving vs speaker</th></tr>{rows}</table>")
    for title, b64 in grids + plots:
        parts.append(f"<h3>{html.escape(title)}</h3><img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>")
    parts.append("<h3>versions</h3><pre>" + html.escape(json.dumps(figures["versions"], indent=1)) + "</pre>")
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>emogene evaluation</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>")


def lipsync_plot(series: dict[str, np.ndarray], figures: dict[str, Any]) -> str:
    """A PNG (base64) of predicted and real mouth opening over the measured stretch, with the audio envelope."""
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
    return _figure_png(fig)


PLOT_TITLE = "Lip sync: predicted vs real mouth opening over the whole measured stretch (frames the model never trained on)"
REFERENCE_PLOT_TITLE = "Lip sync end to end: the reference speaker's real mouth, the driving landmarks and the rendered mouth"


def reference_lipsync_plot(series: dict[str, Any], figures: dict[str, Any]) -> str:
    """A PNG (base64): per emotion, the reference speaker's, the driving and the rendered mouth opening.

    Args:
        series: ``{"speaker": [T], emotion: {"driving": [T], "rendered": [T]}}`` (inter-ocular
            distances, 25 fps), as :func:`emogene_cli.pipelines.reference.reference_lipsync` returns.
        figures: its figures (the r at lag 0 goes in each title).
    """
    from matplotlib.figure import Figure

    emotions = [e for e in series if e != "speaker"]
    fig = Figure(figsize=(9, 2.4 * len(emotions) + 0.4), dpi=90)
    axes = np.atleast_1d(fig.subplots(len(emotions), 1, sharex=True))
    speaker = series["speaker"]
    for ax, emotion in zip(axes, emotions):
        t = np.arange(len(series[emotion]["rendered"])) / 25.0
        ax.plot(np.arange(len(speaker)) / 25.0, speaker, color="k", lw=1.2, label="reference speaker (real)")
        ax.plot(t, series[emotion]["driving"], color="tab:blue", lw=1.0, label="driving landmarks")
        ax.plot(t, series[emotion]["rendered"], color="tab:red", lw=1.2, label="rendered (re-detected)")
        per = figures["per_emotion"][emotion]
        ax.set_title(f"{emotion}: rendered vs speaker r {per['rendered_vs_speaker']['r_lag0']:.2f}, "
                     f"rendered vs driving {per['rendered_vs_driving']['r_lag0']:.2f}, "
                     f"driving vs speaker {per['driving_vs_speaker']['r_lag0']:.2f} (lag 0)", fontsize=9)
        ax.set_ylabel("lip gap / IOD\n(pose removed)", fontsize=8)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("seconds into the reference")
    fig.tight_layout()
    return _figure_png(fig)


def lipsync_report_html(name: str, note: str, lip: dict[str, Any], series: dict[str, np.ndarray]) -> str:
    """The HTML page of an identity without a renderer: the ``lipsync`` figures and :func:`lipsync_plot`."""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</td></tr>"
                   for k, v in lip.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>emogene evaluation</title></head>"
            f"<body style='font-family:sans-serif;max-width:1000px;margin:2em auto'><h1>emogene evaluation: {html.escape(name)}</h1>"
            f"<p>{html.escape(note)}</p><h3>lipsync</h3><table border=1 cellpadding=3>{rows}</table>"
            f"<h3>{html.escape(PLOT_TITLE)}</h3><img style='max-width:100%' src='data:image/png;base64,{lipsync_plot(series, lip)}'>"
            "</body></html>")
