"""Evaluation: metrics with known answers, the result type and the HTML report.

Usage::

    from emogene_cli.evaluation import metrics, frame_grid, report_html
    metrics.psnr(real, fake), metrics.m_lmd(fake68, real68)   # dB, pixels
    page = report_html(figures, grids, plots)

Modules: :mod:`.metrics` (PSNR/SSIM, M-LMD/F-LMD, lip-sync correlation, idle-pose velocity,
emotion strength: pure numpy), :mod:`.perceptual` (LPIPS where it can be had offline),
:mod:`.result` (what ``evaluate`` returns, strict JSON), :mod:`.report` (frame grids,
plots, the page). Running the measurements on a fitted identity is the stage
:mod:`emogene_cli.pipelines.evaluate`. The names below are the package's public face.
"""

from . import metrics
from .metrics import emotion_strength, psnr, psnr_from_mse, ssim
from .perceptual import lpips_distance, lpips_status
from .report import (
    PANEL, PLOT_TITLE, REFERENCE_PLOT_TITLE, frame_grid, lipsync_plot, lipsync_report_html, png_base64, reference_lipsync_plot,
    report_html, report_plots,
)
from .result import PAPER_REFERENCE, EvaluationResult, json_ready

__all__ = [
    "PANEL", "PAPER_REFERENCE", "PLOT_TITLE", "REFERENCE_PLOT_TITLE", "EvaluationResult", "emotion_strength", "frame_grid", "json_ready",
    "lipsync_plot", "lipsync_report_html", "lpips_distance", "lpips_status", "metrics", "png_base64", "psnr",
    "psnr_from_mse", "reference_lipsync_plot", "report_html", "report_plots", "ssim",
]
