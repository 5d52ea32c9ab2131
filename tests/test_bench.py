"""benchmarks/bench.py: targets, verdicts and the printed table (no timing: tests check behaviour)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("emogene_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_targets_are_minimums_or_maximums(bench):
    assert bench.meets(12.0, "cpu_render_fps_256") is True
    assert bench.meets(8.0, "cpu_render_fps_256") is False
    assert bench.meets(2.4, "cpu_speak_command_rtf") is True
    assert bench.meets(3.9, "cpu_speak_command_rtf") is False
    assert bench.meets("not measured", "gpu_render_fps_512") is None
    assert all(kind in ("min", "max") for _, kind in bench.TARGETS.values())


def test_table_shows_each_figure_with_its_ratio_and_verdict(bench, capsys):
    results = {
        "identity": "obama_20s", "audio": "radio31_8s.wav", "preset": "quick", "fit_skipped": False,
        "devices": {"cpu": {
            "preprocess": {"seconds_per_video_second": 0.75, "peak_rss_mb": 900.0, "peak_child_rss_mb": 1100.0},
            "fit": {"seconds": 1200.0, "heldout_psnr": 28.3, "heldout_ssim": 0.93},
            "speak": {"real_time_factor": 3.5, "render_fps": 8.0},
            "speak_command": {"real_time_factor": 3.9},
            "render_256": {"fps": 11.0, "renderer": "identity (256px, trained)"},
            "render_512": {"skipped": "no GPU"},
        }},
    }
    bench.print_table(results)
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if "render fps 256x256" in row)
    assert "1.10×" in line and "✓" in line
    line = next(row for row in out.splitlines() if "whole command" in row)
    assert "1.56×" in line and "✗" in line
    line = next(row for row in out.splitlines() if "fit-identity" in row)
    assert "2.00×" in line and "✗" in line
    assert "not measured" in next(row for row in out.splitlines() if "render fps 512x512" in row)
    line = next(row for row in out.splitlines() if "peak memory, preprocess " in row)
    assert "900 MB RSS" in line
    line = next(row for row in out.splitlines() if "1100 MB RSS" in row)  # the label may wrap
    assert "preprocess child" in line
