"""LPIPS (Zhang et al., 2018), where it can be had without the network.

Usage::

    ok, note = lpips_status()                      # (False, why) without the package or cached weights
    value, note = lpips_distance(real, fake, "cpu")  # mean over [T, H, W, 3] uint8 pairs, or (None, why)

The ``lpips`` package is optional and its AlexNet weights must already be in the torch hub
cache: the evaluation never downloads anything and skips the figure with a note instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def lpips_status() -> tuple[bool, str]:
    """Whether LPIPS can be computed here without the network: ``(available, note)``.

    Needs the ``lpips`` package (which ships its linear-layer weights) and torchvision's
    AlexNet weights already in the torch hub cache (torchvision would otherwise download them).
    """
    if importlib.util.find_spec("lpips") is None:
        return False, "skipped: the lpips package is not installed (pip install lpips, with AlexNet weights cached)"
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(cached.glob("alexnet-*.pth")):
        return False, f"skipped: torchvision's AlexNet weights are not in {cached} and are never downloaded here"
    return True, "LPIPS (Zhang et al., 2018), AlexNet features, lpips package"


def lpips_distance(real: np.ndarray, fake: np.ndarray, device: str) -> tuple[float | None, str]:
    """Mean LPIPS over ``[T, H, W, 3]`` uint8 frame pairs, or ``(None, why not)``."""
    ok, note = lpips_status()
    if not ok:
        return None, note
    try:
        import lpips
        import torch

        model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
        to_t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)  # noqa: E731
        with torch.inference_mode():
            value = float(model(to_t(real), to_t(fake)).mean())
        return value, note
    except Exception as exc:  # a broken third-party install must not sink the evaluation
        return None, f"skipped: lpips failed ({exc.__class__.__name__}: {str(exc)[:120]})"
