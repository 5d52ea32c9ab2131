"""What ``evaluate`` returns and writes: the result type, strict-JSON values, the paper's figures.

Usage::

    result.figures["reconstruction"]["psnr"], result.json_path, result.report_path
    json.dumps(json_ready(figures), allow_nan=False)      # nan -> null, numpy -> Python
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Published figures to read ours against (EmoGene, FG 2025, on MEAD; its idle-pose table).
PAPER_REFERENCE: dict[str, float] = {
    "psnr": 19.70,
    "ssim": 0.730,
    "m_lmd": 3.60,
    "f_lmd": 5.93,
    "idle_velocity_mean": 0.0175,
    "idle_acceleration_mean": 0.0068,
}


@dataclass
class EvaluationResult:
    """What :func:`~emogene_cli.pipelines.evaluate.evaluate_identity` measured (``figures``: the JSON written) and where it went."""

    name: str
    figures: dict[str, Any]
    json_path: Path
    report_path: Path
    seconds: dict[str, float] = field(default_factory=dict)


def json_ready(value: Any) -> Any:
    """JSON-ready copy: numpy scalars/arrays to Python, nan to None, ±inf to "inf"/"-inf"."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_ready(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(value, Path):
        return str(value)
    return value
