"""Shared test fixtures: the ../shared test data and model files, a temporary store, and one
session-scoped run of the command chain (preprocess -> fit-identity tiny -> train-ldm -> speak)
through the real CLI in subprocesses, with the helpers that check its one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
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


def run_cli(*args: str, home: Path, timeout: int = 900, prefix: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``emogene --home HOME ARGS`` in a subprocess (``prefix``: e.g. a command that drops
    privileges; ``env``: variables to set on top of the test environment)."""
    env = {**os.environ, "EMOGENE_MODEL_DIR": str(MODELS), "HF_HUB_OFFLINE": "1", "GLOG_minloglevel": "2", "COLUMNS": "200", **(env or {})}
    env.pop("EMOGENE_HOME", None)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "emogene_cli", "--home", str(home), *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )


def assert_clean_error(proc: subprocess.CompletedProcess, *phrases: str) -> str:
    """Exit code 2, an ``error:`` line containing every phrase, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    """Run all four commands once into a fresh store; return (home, outputs)."""
    need_shared()
    home = tmp_path_factory.mktemp("store")
    out = tmp_path_factory.mktemp("out")
    results = {}
    results["preprocess"] = run_cli("preprocess", str(DATA / "video" / "may_5s.mp4"), "--name", "may", "--size", "128", "--audio-features", "mel", home=home)
    results["fit"] = run_cli("fit-identity", "may", "--preset", "tiny", "--device", "cpu", home=home)
    results["ldm"] = run_cli("train-ldm", str(DATA / "mead"), "--epochs", "150", "--device", "cpu", home=home)
    results["speak"] = run_cli(
        "speak", str(DATA / "speech" / "radio31_8s.wav"), "--emotion", "happy", "-o", str(out / "happy.mp4"), "--preview", home=home
    )
    results["list"] = run_cli("list", home=home)
    return home, out, results
