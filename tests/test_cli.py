"""End-to-end: the four commands on ../shared/data through the real CLI, and bad input.

One session-scoped run of preprocess -> fit-identity (tiny preset) -> train-ldm -> speak
feeds several tests. Errors are checked in subprocesses, as a user sees them: exit code 2,
one line on stderr naming the file, no traceback.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import DATA, assert_clean_error, need_shared, run_cli

pytestmark = pytest.mark.slow


def test_chain_commands_succeed(chain):
    home, out, results = chain
    for name, proc in results.items():
        assert proc.returncode == 0, (name, proc.stdout[-3000:], proc.stderr[-3000:])
    assert "held-out PSNR" in results["fit"].stdout
    assert "happy" in results["ldm"].stdout and "surprised" in results["ldm"].stdout
    assert "may" in results["list"].stdout and "ldm" in results["list"].stdout
    for rel in ("identities/may/dataset.safetensors", "identities/may/renderer.safetensors", "identities/may/a2m.safetensors", "models/ldm.safetensors"):
        assert (home / rel).is_file(), rel
    from emogene_cli.render import load_speaker
    from emogene_cli.store import Store, load_artifact

    gain = float(load_artifact(home / "identities/may/a2m.safetensors").metadata["mouth_gain"])
    assert 0.8 <= gain <= 1.6 and "mouth gain" in results["fit"].stdout
    assert load_speaker(Store(home), "may").mouth_gain == pytest.approx(gain)  # what speak applies


def test_speak_output_is_playable_with_audio_of_the_right_length(chain):
    from emogene_cli import media

    _, out, results = chain
    assert results["speak"].returncode == 0, results["speak"].stderr[-3000:]
    info = media.probe(out / "happy.mp4")
    assert info.has_video and info.has_audio and info.fps == pytest.approx(25, abs=0.01)
    frames = list(media.read_frames(out / "happy.mp4"))
    assert abs(len(frames) - 8.0 * 25) <= 1  # as long as the audio, within one frame
    assert frames[0].shape == (64, 64, 3) and frames[len(frames) // 2].std() > 5  # not a blank frame
    prev = media.probe(out / "happy_preview.mp4")
    assert prev.width == 2 * prev.height


def test_emotion_reaches_the_face(chain):
    """On the LDM trained from ../shared/data/mead: happy raises the mouth corners, surprised the brows."""
    from emogene_cli.emotions import EMOTIONS
    from emogene_cli.models.ldm import LandmarkDeformationModel, LDMConfig
    from emogene_cli.store import Store, load_artifact, load_model

    home, _, results = chain
    assert results["ldm"].returncode == 0, results["ldm"].stderr[-3000:]
    ldm, _ = load_model(Store(home).ldm_path, LandmarkDeformationModel, LDMConfig, what="ldm")
    # neutral motion of a real person (the fitted identity), as speak feeds it
    neutral = torch.from_numpy(load_artifact(Store(home).dataset_path("may")).tensors["motion"][::5].copy())
    happy = ldm.deform(neutral, EMOTIONS.index("happy")).numpy()
    surprised = ldm.deform(neutral, EMOTIONS.index("surprised")).numpy()
    base = neutral.numpy()
    # image y points down: "raised" means a smaller y
    corner_rise = (base[:, [48, 54], 1] - happy[:, [48, 54], 1]).mean()
    brow_rise = (base[:, 17:27, 1] - surprised[:, 17:27, 1]).mean()
    assert corner_rise > 0.01, corner_rise  # inter-ocular units: > 1% of the eye distance
    assert brow_rise > 0.01, brow_rise
    # and the neutral emotion leaves the face alone
    np.testing.assert_array_equal(ldm.deform(neutral, EMOTIONS.index("neutral")).numpy(), base)
    # the real actors' blendshape change (the yardstick of evaluate's emotion strength): they smile when happy
    from emogene_cli.face.tracking import BLENDSHAPE_NAMES
    from emogene_cli.geometry import LM68_FROM_LM478, apply_lift

    real = ldm.real_blendshape_change.numpy()
    smile = [BLENDSHAPE_NAMES.index(n) for n in ("mouthSmileLeft", "mouthSmileRight")]
    assert real[EMOTIONS.index("happy"), smile].mean() > 0.1
    assert not real[EMOTIONS.index("neutral")].any()
    # the dense lift spreads a happy displacement over the cheeks around the mouth corners
    disp = happy - base
    dense = apply_lift(disp, ldm.lift.numpy())
    np.testing.assert_allclose(dense[:, LM68_FROM_LM478], disp, atol=1e-6)
    cheeks = [205, 425]  # MediaPipe cheek points beside the mouth corners, not among the 68
    assert (np.abs(dense[:, cheeks]).sum(-1) > 0.005).all()


def _frames_and_audio(path: Path) -> tuple[int, tuple[int, int], bool]:
    from emogene_cli import media

    info = media.probe(path)
    assert info.has_video and info.fps == pytest.approx(25, abs=0.01)
    return sum(1 for _ in media.read_frames(path)), (info.width, info.height), info.has_audio


def test_speak_blend(chain, tmp_path):
    home, _, _ = chain
    out = tmp_path / "blend.mp4"
    proc = run_cli("speak", str(DATA / "speech" / "radio31_8s.wav"), "--emotion", "happy:0.7,surprise:0.3", "-o", str(out), home=home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "happy 0.70 + surprised 0.30" in proc.stdout
    n, size, has_audio = _frames_and_audio(out)
    assert has_audio and size == (64, 64) and abs(n - 8.0 * 25) <= 1


def test_speak_emotion_track(chain, tmp_path):
    """Three rows (neutral -> happy -> sad), the last running past the 8 s audio: cut with a warning."""
    home, _, _ = chain
    track = tmp_path / "track.csv"
    track.write_text("start,end,emotion,intensity\n0,2,neutral,1\n2,5,happy,1\n5,9.5,sad,0.8\n")
    out = tmp_path / "track.mp4"
    proc = run_cli("speak", str(DATA / "speech" / "radio31_8s.wav"), "--emotion-track", str(track), "-o", str(out), home=home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning:" in proc.stderr and "cut to the audio" in proc.stderr
    table = proc.stdout[proc.stdout.index("emotion track"):]
    for cell in ("0.00", "2.00", "5.00", "8.00", "neutral", "happy", "sad", "0.8", "line 4"):
        assert cell in table, table
    sad_rows = [line for line in table.splitlines() if "sad" in line]  # the track as used, cut to the audio
    assert sad_rows and all("8.00" in line and "9.5" not in line for line in sad_rows), table
    n, size, has_audio = _frames_and_audio(out)
    assert has_audio and abs(n - 8.0 * 25) <= 1


def test_speak_all_emotions_grid(chain, tmp_path):
    """One video, the eight emotions as a 4x2 grid over one plan of motion and poses, with the audio."""
    from emogene_cli import media

    home, _, _ = chain
    out = tmp_path / "all.mp4"
    proc = run_cli("speak", str(DATA / "speech" / "arctic_a0007_4s.wav"), "--emotion", "all", "-o", str(out), home=home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n, size, has_audio = _frames_and_audio(out)
    assert has_audio and size == (4 * 64, 2 * 64)
    seconds = len(media.read_audio(DATA / "speech" / "arctic_a0007_4s.wav")) / 16000
    assert abs(n - seconds * 25) <= 1
    frame = next(iter(media.read_frames(out))).astype(np.int16)
    tiles = [frame[r * 64:(r + 1) * 64 - 16, c * 64:(c + 1) * 64] for r in range(2) for c in range(4)]  # above the labels
    assert all(t.std() > 5 for t in tiles)  # every cell rendered
    # the same head pose everywhere: the cells differ by expression, not by where the head is
    neutral = tiles[5]
    assert max(np.abs(t - neutral).mean() for t in tiles) < 40
    assert any(np.abs(t - neutral).max() > 0 for i, t in enumerate(tiles) if i != 5)


# ---- bad input ------------------------------------------------------------------------


def test_missing_and_unreadable_video(tmp_path):
    need_shared()
    assert_clean_error(run_cli("preprocess", str(tmp_path / "nope.mp4"), home=tmp_path / "h"), "nope.mp4", "file not found")
    bad = tmp_path / "text.mp4"
    bad.write_text("this is not a video")
    assert_clean_error(run_cli("preprocess", str(bad), home=tmp_path / "h"), "text.mp4", "unreadable")


def test_video_without_audio_and_invalid_name(tmp_path):
    need_shared()
    from emogene_cli.media import ffmpeg_exe

    silent = tmp_path / "silent.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(DATA / "video" / "may_5s.mp4"), "-t", "3", "-an", "-c:v", "libx264", str(silent)], check=True)
    assert_clean_error(run_cli("preprocess", str(silent), home=tmp_path / "h"), "silent.mp4", "no audio track", "speech")
    assert_clean_error(run_cli("preprocess", str(DATA / "video" / "may_5s.mp4"), "--name", "bad name!", home=tmp_path / "h"), "invalid identity name")


def test_failed_preprocess_keeps_the_earlier_identity(chain, tmp_path):
    """A run that fails (no face) under an existing name leaves the existing dataset intact."""
    from emogene_cli.media import ffmpeg_exe

    home, _, _ = chain
    dataset = home / "identities" / "may" / "dataset.safetensors"
    before = hashlib.sha256(dataset.read_bytes()).hexdigest()
    noface = tmp_path / "noface.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=128x128:d=3", "-f", "lavfi", "-i", "sine=d=3",
         "-shortest", "-c:v", "libx264", "-c:a", "aac", str(noface)], check=True,
    )
    assert_clean_error(run_cli("preprocess", str(noface), "--name", "may", home=home), "noface.mp4", "no face")
    assert hashlib.sha256(dataset.read_bytes()).hexdigest() == before


def test_speak_errors(chain, tmp_path):
    home, _, _ = chain
    wav = str(DATA / "speech" / "arctic_a0007_4s.wav")
    line = assert_clean_error(run_cli("speak", wav, "--emotion", "joyful", home=home), "unknown emotion 'joyful'")
    assert "surprised" in line and "contempt" in line
    assert_clean_error(run_cli("speak", str(tmp_path / "none.wav"), "--emotion", "happy", home=home), "none.wav", "not found")
    assert_clean_error(run_cli("speak", wav, "--emotion", "sad", "--identity", "ghost", home=home), "ghost", "not preprocessed")
    assert_clean_error(run_cli("speak", wav, "--emotion", "sad", home=tmp_path / "empty"), "no fitted identity")


def test_fit_errors(tmp_path):
    need_shared()
    assert_clean_error(run_cli("fit-identity", "ghost", "--preset", "tiny", home=tmp_path / "h"), "ghost", "not preprocessed")
    assert_clean_error(run_cli("fit-identity", "../etc", home=tmp_path / "h"), "invalid identity name")


def test_mead_without_neutral_clip(tmp_path):
    need_shared()
    root = tmp_path / "mead"
    clip = root / "M030" / "video" / "front" / "happy" / "level_3"
    clip.mkdir(parents=True)
    shutil.copy(DATA / "mead" / "M030" / "video" / "front" / "happy" / "level_3" / "001.mp4", clip / "001.mp4")
    assert_clean_error(run_cli("train-ldm", str(root), home=tmp_path / "h"), "M030", "no neutral clip")
    assert_clean_error(run_cli("train-ldm", str(tmp_path / "nothing"), home=tmp_path / "h"), "nothing", "not found")
