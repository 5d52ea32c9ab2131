"""Audio work in a second process: the features beside preprocess's face tracking, f0 and voice activity beside speak's speech encoder."""

import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from emogene_cli import audio
from emogene_cli.audio import background
from emogene_cli.errors import EmogeneError, InputError, NotFoundError
from emogene_cli.pipelines import preprocess
from emogene_cli.store import Store, load_artifact

from .conftest import DATA, MODELS, need_shared


def long_noise(path: Path, seconds: float = 90.0) -> Path:
    """A wav long enough that pYIN keeps the child busy for well over ten seconds."""
    rng = np.random.default_rng(0)
    wavfile.write(path, 16000, (rng.normal(size=int(seconds * 16000)) * 3000).astype(np.int16))
    return path


def gone(pid: int) -> bool:
    """The process has exited (no such process, or a zombie nobody reaped yet)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def test_background_features_match_in_line_ones_and_trim_to_the_same_rows():
    need_shared()
    wav = DATA / "speech" / "spanish_4s.wav"
    a = audio.load_audio(wav)
    T = audio.frames_for(a)
    with audio.AudioFeaturesInBackground(wav, num_frames=T + 10, kind="mel") as pending:
        got_audio, got = pending.result()
    want = audio.compute_audio_features(a, num_frames=T, kind="mel")
    np.testing.assert_array_equal(got_audio, a)
    assert got.kind == "mel" and got.features.shape == (2 * (T + 10), audio.N_MELS) and got.f0.shape == (T + 10,)
    np.testing.assert_array_equal(got.features[: 2 * T], want.features)
    np.testing.assert_array_equal(got.f0[:T], want.f0)


def test_a_user_error_in_the_child_arrives_as_itself(tmp_path):
    missing = tmp_path / "nothing.wav"
    with pytest.raises(NotFoundError) as err:
        audio.AudioFeaturesInBackground(missing, num_frames=10, kind="mel").result()
    assert err.value.path == str(missing) and "nothing.wav" in str(err.value)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(InputError) as err:
        audio.AudioFeaturesInBackground(text, num_frames=10, kind="mel").result()
    assert err.value.path == str(text)


def test_other_errors_carry_the_child_traceback_and_unpicklable_ones_their_text():
    with pytest.raises(RuntimeError, match=r"ValueError: bad frame count[\s\S]*Traceback \(child\)") as err:
        background._raise_child_error(*background._portable(ValueError("bad frame count"), "Traceback (child)"))
    assert isinstance(err.value.__cause__, ValueError)

    class Stubborn(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}/{b}")

    exc, _ = background._portable(Stubborn(1, 2), "")
    assert type(exc) is RuntimeError and str(exc) == "Stubborn: 1/2"


def test_a_garbled_answer_is_a_one_line_error_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(background, "_child_command",
                        lambda: [sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'\\x80\\x04garbage')"])
    clip = tmp_path / "clip.wav"
    with pytest.raises(EmogeneError, match="audio-feature process ended without a result") as err:
        audio.AudioFeaturesInBackground(clip, num_frames=10).result()
    assert err.value.path == str(clip) and "\n" not in str(err.value)


def test_closing_ends_a_busy_child_at_once(tmp_path):
    pending = audio.AudioFeaturesInBackground(long_noise(tmp_path / "long.wav"), num_frames=2250, kind="mel")
    time.sleep(1.0)
    start = time.monotonic()
    pending.close()
    assert time.monotonic() - start < 5 and pending._proc.returncode != 0  # killed, not finished
    pending.close()  # twice is harmless


def test_the_child_exits_when_its_parent_is_killed(tmp_path):
    script = (
        "import sys, time\n"
        "from emogene_cli.audio import AudioFeaturesInBackground\n"
        f"p = AudioFeaturesInBackground({str(long_noise(tmp_path / 'long.wav'))!r}, num_frames=2250, kind='mel')\n"
        "print(p._proc.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(child)


def test_user_errors_pickle_with_their_path():
    for cls in (EmogeneError, InputError, NotFoundError):
        err = pickle.loads(pickle.dumps(cls("no audio track", path="clip.mp4")))
        assert type(err) is cls and err.message == "no audio track" and err.path == "clip.mp4"
        assert str(err) == "clip.mp4: no audio track"


@pytest.fixture
def children(monkeypatch):
    """Every AudioFeaturesInBackground that preprocess starts."""
    made = []

    class Recorded(audio.AudioFeaturesInBackground):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(preprocess, "AudioFeaturesInBackground", Recorded)
    monkeypatch.setenv("EMOGENE_MODEL_DIR", str(MODELS))
    return made


def test_preprocess_takes_the_encoder_features_from_the_second_process(tmp_path, children):
    need_shared()
    video = DATA / "video" / "may_5s.mp4"
    store = Store(tmp_path)
    result = preprocess.preprocess_video(video, store=store, name="may", size=64, audio_features="whisper")
    assert len(children) == 1 and gone(children[0]._proc.pid)
    data = load_artifact(store.dataset_path("may"), what="dataset")
    T = result.frames
    want = audio.compute_audio_features(audio.load_audio(video), num_frames=T, kind=result.feature_kind,
                                        store_dir=store.third_party_dir)
    assert data.tensors["audio_features"].shape == (2 * T, want.features.shape[1])
    np.testing.assert_allclose(data.tensors["audio_features"], want.features, atol=1e-4)
    np.testing.assert_array_equal(data.tensors["f0"], want.f0)


def test_preprocess_ends_the_second_process_when_no_face_is_found(tmp_path, children):
    need_shared()
    noface = tmp_path / "noface.mp4"
    from emogene_cli import media
    subprocess.run([media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "color=c=gray:s=128x128:d=3:r=25", "-f", "lavfi", "-i", "sine=d=3",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(noface)], check=True)
    with pytest.raises(InputError, match="no face found"):
        preprocess.preprocess_video(noface, store=Store(tmp_path / "store"), size=64, audio_features="whisper")
    assert len(children) == 1 and children[0]._proc.returncode is not None and gone(children[0]._proc.pid)


def test_background_pitch_matches_in_line_and_never_imports_torch():
    need_shared()
    a = audio.load_audio(DATA / "speech" / "spanish_4s.wav")
    T = audio.frames_for(a)
    with audio.PitchInBackground(a, num_frames=T) as pending:
        f0, active = pending.result()
    np.testing.assert_array_equal(f0, audio.pitch(a, T))
    np.testing.assert_array_equal(active, audio.voice_activity(a, T))
    assert f0.shape == (T,) and active.dtype == bool and (f0 > 0).any() and active.any()
    # what the child runs, in a fresh interpreter: librosa's part only
    code = ("import sys, numpy as np; from emogene_cli.audio.background import _pitch_job; "
            "_pitch_job(np.zeros(16000, np.float32), 25); print('torch' in sys.modules, 'librosa' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_features_take_f0_from_elsewhere_after_the_encoder(monkeypatch):
    a = np.zeros(16000, np.float32)
    order = []
    monkeypatch.setattr(audio.features, "mel_features", lambda x, T: order.append("encoder") or np.zeros((2 * T, 80), np.float32))
    monkeypatch.setattr(audio.features, "pitch", lambda x, T: pytest.fail("pitch computed although given"))

    def f0():
        order.append("f0")
        return np.full(25, 100.0)

    got = audio.compute_audio_features(a, num_frames=25, kind="mel", f0=f0)
    assert order == ["encoder", "f0"] and got.f0.dtype == np.float32 and (got.f0 == 100).all()
    with pytest.raises(ValueError, match="f0 of shape"):
        audio.compute_audio_features(a, num_frames=25, kind="mel", f0=np.zeros(24))


def test_a_pitch_child_that_fails_names_the_audio(monkeypatch):
    monkeypatch.setattr(background, "_child_command", lambda: [sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(EmogeneError, match="pitch process ended without a result .exit code 3") as err:
        audio.PitchInBackground(np.zeros(16000, np.float32), num_frames=25, path="speech.wav").result()
    assert err.value.path == "speech.wav" and "\n" not in str(err.value)


def test_the_request_is_written_beside_the_caller_and_closing_mid_write_ends_at_once(monkeypatch):
    """A request larger than the pipe (the audio) does not hold up the caller while the child has not read
    it, and close() during the write neither hangs nor leaves the writing thread behind."""
    monkeypatch.setattr(background, "_child_command", lambda: [sys.executable, "-c", "import time; time.sleep(60)"])
    start = time.monotonic()
    pending = audio.PitchInBackground(np.zeros(16000 * 60, np.float32), num_frames=1500)  # 3.8 MB, never read
    assert time.monotonic() - start < 5 and pending._writer.is_alive()
    pending.close()
    assert time.monotonic() - start < 10 and pending._proc.returncode != 0 and not pending._writer.is_alive()
    assert pending._proc.stdin.closed and pending._proc.stdout.closed
