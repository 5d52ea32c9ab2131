"""Odd inputs as users produce them: each works, or ends in one line naming the file, exit 2.

Made with ffmpeg from ../shared/data: a truncated mp4, an empty and a 0.1 s wav, a video of
one frame, a portrait phone video, two people in view, a face that leaves the frame, 8 kHz
telephone speech, file names with spaces and accents, and a read-only store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from .conftest import DATA, assert_clean_error, need_shared, run_cli

pytestmark = pytest.mark.slow

MAY = DATA / "video" / "may_5s.mp4"
SPEECH = DATA / "speech" / "radio31_8s.wav"


def ffmpeg(*args: str) -> None:
    from emogene_cli.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def duration(path: Path) -> float:
    from emogene_cli.media import probe

    return probe(path).duration


def _no_identity(home: Path, name: str) -> bool:
    return not (home / "identities" / name).exists()


def test_truncated_mp4(tmp_path):
    need_shared()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(MAY.read_bytes()[: MAY.stat().st_size // 2])
    assert_clean_error(run_cli("preprocess", str(cut), home=tmp_path / "h"), "cut.mp4", "unreadable")
    assert _no_identity(tmp_path / "h", "cut")


def test_video_of_one_frame(tmp_path):
    need_shared()
    one = tmp_path / "one.mp4"
    ffmpeg("-i", str(MAY), "-frames:v", "1", "-t", "0.04", "-c:v", "libx264", "-c:a", "aac", str(one))
    assert_clean_error(run_cli("preprocess", str(one), home=tmp_path / "h"), "one.mp4", "too short")
    assert _no_identity(tmp_path / "h", "one")


def test_face_that_leaves_the_frame_names_when(tmp_path):
    need_shared()
    gone = tmp_path / "gone.mp4"
    ffmpeg("-i", str(MAY), "-vf", "drawbox=enable='between(t,1,3)':x=0:y=0:w=iw:h=ih:color=black:t=fill",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(gone))
    assert_clean_error(run_cli("preprocess", str(gone), "--size", "64", "--audio-features", "mel", home=tmp_path / "h"),
                       "gone.mp4", "a face was found in only", "1.0-3.0 s")
    assert _no_identity(tmp_path / "h", "gone")


def test_portrait_phone_video_and_an_accented_file_name(tmp_path):
    """1080x1920 with the person in the upper half; the name is made from 'Ñoño en el móvil'."""
    need_shared()
    video = tmp_path / "Ñoño en el móvil.mp4"
    ffmpeg("-i", str(MAY), "-vf", "scale=1080:-2,pad=1080:1920:0:300,setsar=1", "-t", "3",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(video))
    proc = run_cli("preprocess", str(video), "--size", "64", "--audio-features", "mel", home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr[-2000:]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "h" / "identities" / "Nono_en_el_movil" / "dataset.safetensors"), "np") as f:
        box = f.get_tensor("crop_box")
        assert f.get_tensor("face_found").mean() > 0.9
    x, y, side, _ = box.tolist()
    assert 300 <= y and y + side <= 300 + 1080 + side // 2, box  # on the person, not the padding


def test_two_faces_follows_the_larger_and_says_so(tmp_path):
    need_shared()
    both = tmp_path / "both.mp4"
    ffmpeg("-i", str(MAY), "-i", str(DATA / "talking" / "noem_18s.mp4"), "-filter_complex",
           "[0:v]scale=320:320,setsar=1[a];[1:v]scale=200:200,pad=200:320:0:60,setsar=1[b];[a][b]hstack[v]",
           "-map", "[v]", "-map", "0:a", "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(both))
    proc = run_cli("preprocess", str(both), "--size", "64", "--audio-features", "mel", home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "faces in view" in proc.stdout and "the largest is used" in proc.stdout
    from safetensors import safe_open

    with safe_open(str(tmp_path / "h" / "identities" / "both" / "dataset.safetensors"), "np") as f:
        x, _, side, _ = f.get_tensor("crop_box").tolist()
    assert x + side / 2 < 320, "the crop is not centred on the larger face (the left one)"


def test_odd_audio_for_speak(chain, tmp_path):
    """Empty wav: one line. 0.1 s, 8 kHz telephone speech, and names with spaces and accents: a video."""
    home, _, _ = chain
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert_clean_error(run_cli("speak", str(empty), "--emotion", "happy", home=home), "empty.wav", "empty file")

    short = tmp_path / "short clip.wav"
    ffmpeg("-i", str(SPEECH), "-t", "0.1", str(short))
    phone = tmp_path / "llamada de José.wav"
    ffmpeg("-i", str(SPEECH), "-t", "3", "-ar", "8000", "-ac", "1", "-af", "highpass=f=300,lowpass=f=3400", str(phone))
    for audio in (short, phone):
        out = tmp_path / f"vídeo {audio.stem}.mp4"
        proc = run_cli("speak", str(audio), "--emotion", "happy", "-o", str(out), home=home)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert abs(duration(out) - duration(audio)) < 0.1, (audio.name, duration(out))


def _as_nobody(tmp_root: Path) -> tuple[str, ...]:
    """A prefix that runs a command as an unprivileged user (root ignores file permissions)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made")
    return (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")


def test_read_only_store(chain):
    """preprocess into a store that cannot be written: one line naming it, nothing written."""
    root = Path(tempfile.mkdtemp(prefix="emogene-ro-"))
    try:
        home = root / "store"
        shutil.copytree(chain[0] / "identities" / "may", home / "identities" / "may")
        os.chmod(root, 0o755)
        for folder, dirs, files in os.walk(root):
            os.chmod(folder, 0o555)
            for f in files:
                os.chmod(Path(folder) / f, 0o444)
        before = sorted(p.relative_to(home) for p in home.rglob("*"))
        proc = run_cli("preprocess", str(MAY), "--name", "may2", home=home, prefix=_as_nobody(root))
        assert_clean_error(proc, str(home), "not writable", "--home")
        proc = run_cli("fit-identity", "may", "--preset", "tiny", home=home, prefix=_as_nobody(root))
        assert_clean_error(proc, str(home), "not writable")
        assert sorted(p.relative_to(home) for p in home.rglob("*")) == before
    finally:
        for folder, _, _ in os.walk(root):
            os.chmod(folder, 0o755)
        shutil.rmtree(root, ignore_errors=True)


def test_pitch_of_long_audio_in_stretches_matches_one_pass():
    """pYIN in 4 s stretches (as 60 s ones on long audio) gives the f0 of one pass over 24 s."""
    need_shared()
    from emogene_cli.audio import load_audio
    from emogene_cli.audio.features import pitch

    audio = np.tile(load_audio(SPEECH), 3)
    T = len(audio) // 640
    whole = pitch(audio, T, chunk_frames=10**9)
    stretches = pitch(audio, T, chunk_frames=100)
    assert whole.shape == stretches.shape == (T,)
    assert (whole > 0).mean() > 0.3
    np.testing.assert_allclose(stretches, whole, rtol=1e-3, atol=0.5)
