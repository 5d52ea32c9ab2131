"""Stopping cleanly on SIGINT / SIGTERM: checkpoints at the interrupted step, resuming to the
same result, the one-line message and exit codes of the CLI; images and audio given as videos.

The signals are real (``os.kill`` on this process or on a CLI subprocess); the unit tests
send them from inside a training loop, where Ctrl-C would arrive.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from emogene_cli import interrupt
from emogene_cli.errors import InputError, MismatchError
from emogene_cli.interrupt import Interrupted, held, interruptible, kept_so_far, note_kept, recording, signals_raise

from .conftest import DATA, MODELS, REPO, need_shared
from .test_renderer import _cfg, _disc_clip


def _kill_self(signum: int = signal.SIGINT) -> None:
    os.kill(os.getpid(), signum)


@pytest.fixture(autouse=True)
def _handlers_restored():
    """Every helper leaves the process's signal handlers as it found them."""
    before = {s: signal.getsignal(s) for s in interrupt.SIGNALS}
    yield
    assert {s: signal.getsignal(s) for s in interrupt.SIGNALS} == before


# ---- the helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_finishes_the_step_then_checkpoints_and_stops(signum, code):
    ran, saved = [], []
    with signals_raise(), pytest.raises(Interrupted) as info:
        for step in interruptible(range(10), saved.append, what="toy"):
            ran.append(("start", step))
            if step == 3:
                _kill_self(signum)
            ran.append(("end", step))  # the rest of the step still runs
    assert ran[-2:] == [("start", 3), ("end", 3)]
    assert saved == [4]  # four steps done: the checkpoint to continue from
    assert info.value.signum == signum and info.value.exit_code == code
    assert isinstance(info.value, KeyboardInterrupt)
    assert "toy after step 4 of 10" in str(info.value)


def test_without_a_signal_the_loop_runs_through():
    saved = []
    assert list(interruptible(range(2, 6), saved.append)) == [2, 3, 4, 5]
    assert saved == []


def test_a_second_signal_stops_at_once_without_a_checkpoint():
    ran, saved = [], []
    with pytest.raises(Interrupted) as info:
        for step in interruptible(range(10), saved.append):
            _kill_self()
            ran.append(step)
            _kill_self(signal.SIGTERM)  # a second signal in the same step
            ran.append("not reached")
    assert ran == [0] and saved == []
    assert info.value.signum == signal.SIGTERM


def test_held_block_delivers_the_signal_after_it():
    done = []
    with signals_raise():
        with pytest.raises(Interrupted) as info:
            with held():
                _kill_self(signal.SIGTERM)
                done.append("rest of the block")
            done.append("not reached")
    assert done == ["rest of the block"] and info.value.exit_code == 143


def test_held_as_decorator_and_inside_a_loop():
    """A signal while a checkpoint is written waits for the write, then stops the loop as usual."""
    written = []

    @held()
    def save(done):
        _kill_self()
        written.append(done)

    with pytest.raises(Interrupted):
        for step in interruptible(range(10), save):
            if step == 1:
                save(-1)  # a periodic save; the signal inside it is the loop's first
    assert written == [-1, 2]


def test_notes_are_kept_only_while_recording():
    note_kept("x", "dropped")
    assert kept_so_far() == []
    with recording():
        note_kept("ckpt", "checkpoint at step 1", "/a")
        note_kept("cache", "3 clips", then="rerun")
        note_kept("ckpt", "checkpoint at step 2", "/a")
        kept = kept_so_far()
    assert [(k.what, k.then) for k in kept] == [("checkpoint at step 2", "resume"), ("3 clips", "rerun")]
    assert kept[0].path == Path("/a") and kept_so_far() == []
    with pytest.raises(ValueError):
        note_kept("y", "z", then="later")


# ---- training loops ---------------------------------------------------------------------------


def test_renderer_interrupted_checkpoints_that_step_and_resume_gives_the_same_model(tmp_path):
    from emogene_cli.render.fitting import train_renderer

    data = _disc_clip()
    cfg = _cfg(steps=30, checkpoint_every=25, occupancy_warmup=16, occupancy_every=8)
    straight, _ = train_renderer(data, cfg, checkpoint=tmp_path / "a.safetensors")

    def ctrl_c_at_20(step, total, metrics):
        if step == 20:
            _kill_self()

    ckpt = tmp_path / "b.safetensors"
    with recording() as notes, signals_raise(), pytest.raises(Interrupted) as info:  # (a stray signal fails, too)
        train_renderer(data, cfg, checkpoint=ckpt, progress=ctrl_c_at_20)
    kept = list(notes.values())
    assert info.value.exit_code == 130 and "renderer after step 20 of 30" in str(info.value)
    assert json.loads(ckpt.with_suffix(".json").read_text())["step"] == 20  # not the periodic 0 / 25
    assert [k.what for k in kept] == ["renderer checkpoint at step 20 of 30"] and kept[0].path == ckpt

    resumed, stats = train_renderer(data, cfg, checkpoint=ckpt, resume=True)
    assert stats["start_step"] == 20 and stats["steps"] == 30
    assert json.loads(ckpt.with_suffix(".json").read_text())["step"] == 30
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name


def _a2m_data():
    rng = np.random.default_rng(0)
    T = 120
    feats = rng.normal(size=(2 * T, 8)).astype(np.float32)
    f0 = rng.uniform(0, 200, T).astype(np.float32)
    motion = (rng.normal(size=(T, 68, 3)) * 0.05).astype(np.float32)
    return feats, f0, motion, 108


def test_a2m_interrupted_checkpoints_that_step_and_resume_gives_the_same_model(tmp_path):
    from emogene_cli.models.a2m import A2MConfig
    from emogene_cli.motion.training import A2MTraining, train_a2m

    feats, f0, motion, n_train = _a2m_data()
    cfg = A2MConfig.preset("tiny", audio_dim=8)
    training = A2MTraining(steps=40, window=16, batch=4)
    straight = train_a2m(feats, f0, motion, n_train, cfg, training, seed=3)

    def ctrl_c_at_21(label, done, total, **fields):
        if done == 21:
            _kill_self(signal.SIGTERM)

    ckpt = tmp_path / "a2m.safetensors"
    with recording(), signals_raise(), pytest.raises(Interrupted) as info:
        train_a2m(feats, f0, motion, n_train, cfg, training, seed=3, progress=ctrl_c_at_21, checkpoint=ckpt)
    assert info.value.exit_code == 143 and ckpt.is_file()
    torch.manual_seed(123)  # whatever happens to the global generator in between
    resumed = train_a2m(feats, f0, motion, n_train, cfg, training, seed=3, checkpoint=ckpt, resume=True)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    with pytest.raises(MismatchError, match="differs in: training"):
        train_a2m(feats, f0, motion, n_train, cfg, dataclasses.replace(training, steps=50), seed=3, checkpoint=ckpt, resume=True)


def test_a2m_checkpoint_step_is_the_interrupted_one(tmp_path):
    from emogene_cli.models.a2m import A2MConfig
    from emogene_cli.motion.training import A2MTraining, train_a2m

    feats, f0, motion, n_train = _a2m_data()

    def ctrl_c_at_11(label, done, total, **fields):
        if done == 11:
            _kill_self()

    ckpt = tmp_path / "a2m.safetensors"
    with recording() as notes, signals_raise(), pytest.raises(Interrupted):
        train_a2m(feats, f0, motion, n_train, A2MConfig.preset("tiny", audio_dim=8), A2MTraining(steps=40, window=16, batch=4),
                  progress=ctrl_c_at_11, checkpoint=ckpt)
    assert [k.what for k in notes.values()] == ["audio-to-motion checkpoint at step 11 of 40"]
    assert notes["audio-to-motion"].path == ckpt and notes["audio-to-motion"].then == "resume"


# ---- inputs that are not talking videos ----------------------------------------------------------


@pytest.fixture(scope="module")
def stills(tmp_path_factory):
    need_shared()
    from emogene_cli.media import ffmpeg_exe

    out = tmp_path_factory.mktemp("stills")
    for name in ("face.png", "face.jpg"):
        subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(DATA / "video" / "may_5s.mp4"), "-frames:v", "1", str(out / name)],
                       check=True)
    shutil.copy(out / "face.png", out / "renamed.mp4")  # an image whatever its name
    return out


@pytest.mark.parametrize("name", ["face.png", "face.jpg", "renamed.mp4"])
def test_an_image_is_named_as_such(stills, name, tmp_path):
    from emogene_cli import media
    from emogene_cli.pipelines.preprocess import preprocess_video
    from emogene_cli.store import Store

    assert media.probe(stills / name).is_image
    with pytest.raises(InputError, match="is an image, not a video"):
        list(media.read_frames(stills / name))
    with pytest.raises(InputError, match="is an image, not a video"):
        preprocess_video(stills / name, store=Store(tmp_path / "home"))
    with pytest.raises(InputError, match="is an image, not audio"):
        media.read_audio(stills / name)
    assert not (tmp_path / "home" / "identities").exists()


def test_videos_and_audio_are_not_images():
    need_shared()
    from emogene_cli import media

    video = media.probe(DATA / "video" / "may_5s.mp4")
    audio = media.probe(DATA / "speech" / "arctic_a0007_4s.wav")
    assert not video.is_image and not audio.is_image
    assert "mp4" in video.container and audio.container == "wav"


def test_audio_given_to_preprocess_points_to_speak(tmp_path):
    need_shared()
    from emogene_cli.pipelines.preprocess import preprocess_video
    from emogene_cli.store import Store

    with pytest.raises(InputError) as info:
        preprocess_video(DATA / "speech" / "arctic_a0007_4s.wav", store=Store(tmp_path / "home"))
    message = info.value.one_line()
    assert "arctic_a0007_4s.wav: is an audio file, not a video" in message
    assert "emogene speak" in message and "takes audio" in message


# ---- the command line ----------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ, EMOGENE_MODEL_DIR=str(MODELS), HF_HUB_OFFLINE="1", GLOG_minloglevel="2", COLUMNS="200",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("EMOGENE_HOME", None)
    return env


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emogene_cli", *args], capture_output=True, text=True, env=_env(), timeout=timeout)


def test_cli_names_images_and_audio(stills, tmp_path):
    home = str(tmp_path / "home")
    for name in ("face.png", "face.jpg"):
        proc = _cli("--home", home, "preprocess", str(stills / name))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.strip() == f"error: {stills / name}: is an image, not a video: a video of the person talking is needed (mp4, mov, mkv, ...)"
    wav = DATA / "speech" / "arctic_a0007_4s.wav"
    proc = _cli("--home", home, "preprocess", str(wav))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"error: {wav}: is an audio file, not a video") and "`emogene speak AUDIO" in proc.stderr


@pytest.fixture(scope="module")
def may_home(tmp_path_factory):
    """A store with ``may`` preprocessed small (64 px, mel features): enough to fit the tiny preset."""
    need_shared()
    home = tmp_path_factory.mktemp("may_home")
    proc = _cli("--home", str(home), "preprocess", str(DATA / "video" / "may_5s.mp4"), "--name", "may", "--size", "64",
                "--audio-features", "mel")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home


# Runs the real CLI in a child process whose renderer progress callback sends SIGINT to the
# child itself at a chosen step: Ctrl-C at an exact step, through the real signal path.
_CTRL_C_AT = textwrap.dedent("""
    import os, signal, sys
    from emogene_cli import cli
    from emogene_cli.pipelines import fit
    stop_at, train = int(sys.argv[1]), fit.train_renderer
    def train_with_ctrl_c(*args, progress, **kwargs):
        def progress_then_ctrl_c(step, total, info):
            progress(step, total, info)
            if step == stop_at:
                os.kill(os.getpid(), signal.SIGINT)
        return train(*args, progress=progress_then_ctrl_c, **kwargs)
    fit.train_renderer = train_with_ctrl_c
    sys.exit(cli.main(sys.argv[2:]))
""")


@pytest.mark.slow
def test_cli_ctrl_c_during_fit_keeps_the_step_and_resume_finishes(may_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(may_home, home)
    ckpt = home / "identities" / "may" / "checkpoints" / "renderer.safetensors"
    args = ["--home", str(home), "fit-identity", "may", "--preset", "tiny", "--device", "cpu"]
    proc = subprocess.run([sys.executable, "-c", _CTRL_C_AT, "150", *args], capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("interrupted")]
    assert len(lines) == 1, proc.stderr
    expected_resume = shlex.join(["emogene", *args, "--resume"])
    assert lines[0] == (f"interrupted (SIGINT): kept renderer checkpoint at step 150 of 300 ({ckpt}). "
                        f"Continue with: {expected_resume}")
    assert json.loads(ckpt.with_suffix(".json").read_text())["step"] == 150  # periodic ones are at 100, 200
    assert not (home / "identities" / "may" / "renderer.safetensors").exists()
    assert not list(ckpt.parent.glob(".*.tmp"))

    resume = shlex.split(lines[0].split("Continue with: ")[1])
    assert resume[0] == "emogene"
    proc = _cli(*resume[1:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"renderer steps\s*│\s*300 \(resumed at step 150\)", proc.stdout), proc.stdout
    assert json.loads(ckpt.with_suffix(".json").read_text())["step"] == 300
    assert (home / "identities" / "may" / "renderer.safetensors").is_file()


@pytest.mark.slow
def test_cli_sigterm_from_outside_and_nothing_written(may_home, tmp_path):
    """SIGTERM from another process at some moment of the renderer's training: exit 143, the
    checkpoint the line names is the one on disk; a stop before any training writes nothing."""
    import time

    home = tmp_path / "home"
    shutil.copytree(may_home, home)
    ckpt = home / "identities" / "may" / "checkpoints" / "renderer.safetensors"
    args = ["--home", str(home), "fit-identity", "may", "--preset", "tiny", "--device", "cpu"]
    child = subprocess.Popen([sys.executable, "-m", "emogene_cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=_env())
    deadline = time.monotonic() + 300
    while not ckpt.with_suffix(".json").is_file() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first periodic checkpoint (step 100 of 300): training is under way
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 143, err[-3000:]
    assert "Traceback" not in err + out
    line = [ln for ln in err.splitlines() if ln.startswith("interrupted")]
    assert len(line) == 1, err
    step = int(re.search(r"interrupted \(SIGTERM\): kept renderer checkpoint at step (\d+) of 300", line[0]).group(1))
    assert 100 <= step < 300
    assert json.loads(ckpt.with_suffix(".json").read_text())["step"] == step
    assert line[0].endswith(shlex.join(["emogene", *args, "--resume"]))

    # stopped while loading, before anything was trained: nothing written, nothing to continue
    shutil.rmtree(ckpt.parent)
    before = sorted(p.relative_to(home) for p in home.rglob("*"))
    child = subprocess.Popen([sys.executable, "-c", "import sys, os, signal; from emogene_cli import cli; from emogene_cli.pipelines import fit\n"
                              "fit.load_identity = lambda *a, **k: os.kill(os.getpid(), signal.SIGINT)\n"
                              "sys.exit(cli.main(sys.argv[1:]))", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=_env())
    out, err = child.communicate(timeout=300)
    assert child.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted (SIGINT): nothing was written; the store is as it was before this command"
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before
