"""A newcomer's machine: no ../shared beside the clone, an empty store, the models bundled in
the package, the model files in one folder (standing in for the first-use download), and
`emogene doctor` telling what is there."""

from __future__ import annotations

import csv
import os
import shutil
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import DATA, MODELS, REPO, assert_clean_error, need_shared, run_cli

MODEL_FILES = ("face_landmarker.task", "selfie_segmentation.tflite", "whisper-base")


def _offline_env(tmp_path: Path, model_dir: Path) -> dict[str, str]:
    """No downloads, an empty Hugging Face cache, model files only from ``model_dir``."""
    return {"EMOGENE_MODEL_DIR": str(model_dir), "EMOGENE_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(tmp_path / "hf"), "EMOGENE_WHISPER": "", "EMOGENE_HUBERT": ""}


def _flat(text: str) -> str:
    """``text`` without white space and table borders (rich wraps long paths across lines)."""
    return re.sub(r"[\s│┃]", "", text)


def _files(home: Path) -> dict[str, int]:
    """Every file under ``home`` with its modification time (ns)."""
    return {str(p): p.stat().st_mtime_ns for p in home.rglob("*") if p.is_file()} if home.exists() else {}


def test_doctor_with_and_without_model_files(tmp_path):
    need_shared()
    home = tmp_path / "home"
    ready = run_cli("doctor", home=home, env=_offline_env(tmp_path, MODELS))
    assert ready.returncode == 0, ready.stdout + ready.stderr
    out = ready.stdout
    for line in ("face_landmarker.task", "selfie_segmentation.tflite"):
        assert _flat(f"{MODELS / line} (from $EMOGENE_MODEL_DIR)") in _flat(out), out
    assert str(MODELS / "whisper-base") in out
    assert "bundled with emogene" in out and "ldm.safetensors" in out and "a2m_generic.safetensors" in out
    assert "created on first write, writable" in out and "ready:" in out
    assert not home.exists(), "doctor must write nothing"

    empty = tmp_path / "empty"
    empty.mkdir()
    missing = run_cli("doctor", home=home, env=_offline_env(tmp_path, empty))
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "not ready: face_landmarker.task" in missing.stdout and "EMOGENE_MODEL_DIR" in missing.stdout
    assert "downloads are off" in missing.stdout
    whisper_row = next(ln for ln in missing.stdout.splitlines() if "Whisper encoder" in ln)
    assert "missing" in whisper_row and "not found" in whisper_row
    assert "Traceback" not in missing.stderr

    # a store model takes precedence over the bundled one, and the table says so
    from emogene_cli.store import BUNDLED_LDM, Store

    Store(home).models_dir.mkdir(parents=True)
    shutil.copy(BUNDLED_LDM, Store(home).ldm_path)
    table = run_cli("doctor", home=home, env=_offline_env(tmp_path, MODELS)).stdout
    assert _flat(f"the store: {Store(home).ldm_path}") in _flat(table), table


def test_offline_without_model_files_each_command_says_what_is_missing(tmp_path, chain):
    """No MediaPipe file, no download: one line naming the file and how to provide it, exit 2,
    nothing written (the chain's store keeps every file as it was)."""
    chain_home, _, _ = chain
    empty = tmp_path / "empty"
    empty.mkdir()
    env = _offline_env(tmp_path, empty)
    before = _files(chain_home)
    fresh = tmp_path / "fresh"
    cases = [
        (("preprocess", str(DATA / "video" / "may_5s.mp4")), fresh),
        (("train-ldm", str(DATA / "mead")), fresh),
        (("train-a2m", str(DATA / "talking" / "chan_7s.mp4"), str(DATA / "talking" / "kim_7s.mp4")), fresh),
        (("preprocess", str(DATA / "video" / "may_5s.mp4"), "--name", "may"), chain_home),
        (("evaluate", "may", "--reference", str(DATA / "talking" / "kim_7s.mp4"), "--emotions", "neutral"), chain_home),
    ]
    for args, home in cases:
        line = assert_clean_error(run_cli(*args, home=home, env=env), "face_landmarker.task")
        assert "EMOGENE_MODEL_DIR" in line and "--model-dir" in line, line
    assert _files(fresh) == {}
    assert _files(chain_home) == before


def _clone_without_shared(tmp_path: Path) -> Path:
    """The repository's tracked and untracked (not ignored) files, copied where no ../shared is."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True)
    clone = tmp_path / "emogene"
    for rel in filter(None, listed.stdout.decode().split("\0")):
        src = REPO / rel
        if src.is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / rel)
    assert not (clone.parent / "shared").exists()
    return clone


@pytest.mark.slow
def test_run_all_on_own_files_with_bundled_models(tmp_path):
    """`run_all.sh VIDEO SPEECH happy tiny` in a fresh clone with no ../shared and an empty store:
    it installs, preprocesses, fits and speaks with the bundled LDM; then --emotion all, a blend
    and a track; then `pip install .` (not editable) and speak finds the bundled models in
    site-packages; with the model files gone, speak ends with one line and writes nothing."""
    need_shared()
    clone = _clone_without_shared(tmp_path)
    models = tmp_path / "model_files"
    models.mkdir()
    for name in MODEL_FILES:
        (shutil.copytree if (MODELS / name).is_dir() else shutil.copy)(MODELS / name, models / name)
    video = tmp_path / "me talking.mp4"
    speech = tmp_path / "memo.wav"
    shutil.copy(DATA / "video" / "may_5s.mp4", video)
    shutil.copy(DATA / "speech" / "arctic_a0007_4s.wav", speech)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "EMOGENE_MODEL_DIR", "PYTHONPATH")}
    env.update(_offline_env(tmp_path, models), EMOGENE_HOME=str(home), COLUMNS="200",
               PATH=os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(REPO))))
    run = subprocess.run(["bash", str(clone / "examples" / "run_all.sh"), str(video), str(speech), "happy", "tiny"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    video_out = clone / "out" / "me_talking_happy.mp4"
    from emogene_cli.media import probe

    info = probe(video_out)
    assert info.has_video and info.has_audio and info.duration > 3.5, info
    assert "bundled with emogene" in run.stdout

    emogene = [str(clone / ".venv" / "bin" / "emogene")]
    track = tmp_path / "track.csv"
    with open(track, "w", newline="") as f:
        csv.writer(f).writerows([["start", "end", "emotion", "intensity"], [0, 1.5, "sad", 1], [1.5, 4, "surprised:0.5,fear:0.5", 1]])
    for extra, out in ((["--emotion", "all"], "all.mp4"), (["--emotion", "happy:0.6,angry:0.4"], "blend.mp4"),
                       (["--emotion-track", str(track)], "track.mp4")):
        proc = subprocess.run([*emogene, "speak", str(speech), *extra, "-o", str(tmp_path / out)], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert probe(tmp_path / out).has_audio

    # not editable: the package data travels with the wheel and speak finds it in site-packages
    pip = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(clone)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    where = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c", "import emogene_cli.store as s; print(s.BUNDLED_LDM)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert "site-packages" in where and Path(where).is_file(), where
    proc = subprocess.run([*emogene, "speak", str(speech), "--emotion", "sad", "-o", str(tmp_path / "sad.mp4")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _flat(where) in _flat(proc.stdout), proc.stdout

    # offline with no model files: speak needs the Whisper encoder, and says so in one line
    empty = tmp_path / "empty"
    empty.mkdir()
    env.update(_offline_env(tmp_path, empty))
    before = _files(home)
    proc = subprocess.run([*emogene, "speak", str(speech), "--emotion", "happy", "-o", str(tmp_path / "none.mp4")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert_clean_error(proc, "Whisper", "--whisper", "EMOGENE_WHISPER")
    assert not (tmp_path / "none.mp4").exists() and _files(home) == before
