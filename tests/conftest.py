"""Shared test fixtures: the ../shared test data and model files, a temporary store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOGENE_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
MODELS = SHARED / "models"

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def need_shared() -> None:
    if not (DATA.is_dir() and (MODELS / "face_landmarker.task").is_file()):
        pytest.skip("../shared test data not present")


@pytest.fixture
def model_env(monkeypatch):
    """Point EMOGENE_MODEL_DIR at ../shared/models."""
    need_shared()
    monkeypatch.setenv("EMOGENE_MODEL_DIR", str(MODELS))
    return MODELS


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty artifact store in a temporary folder (also set as EMOGENE_HOME)."""
    from emogene_cli.store import Store

    monkeypatch.setenv("EMOGENE_HOME", str(tmp_path / "home"))
    return Store(tmp_path / "home")
