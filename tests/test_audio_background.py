"""Audio features in a second process (preprocess computes them beside face tracking)."""

import pickle
import time

import numpy as np
import pytest

from emogene_cli import audio
from emogene_cli.errors import EmogeneError, InputError, NotFoundError

from .conftest import DATA, need_shared


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


def test_an_error_in_the_child_arrives_as_itself(tmp_path):
    missing = tmp_path / "nothing.wav"
    with pytest.raises(NotFoundError) as err:
        audio.AudioFeaturesInBackground(missing, num_frames=10, kind="mel").result()
    assert err.value.path == str(missing) and "nothing.wav" in str(err.value)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(InputError) as err:
        audio.AudioFeaturesInBackground(text, num_frames=10, kind="mel").result()
    assert err.value.path == str(text)


def test_closing_ends_the_child_at_once(tmp_path):
    need_shared()
    pending = audio.AudioFeaturesInBackground(DATA / "speech" / "radio31_8s.wav", num_frames=200, kind="mel")
    start = time.monotonic()
    pending.close()
    assert pending._proc.poll() is not None and time.monotonic() - start < 5
    pending.close()  # twice is harmless


def test_user_errors_pickle_with_their_path():
    for cls in (EmogeneError, InputError, NotFoundError):
        err = pickle.loads(pickle.dumps(cls("no audio track", path="clip.mp4")))
        assert type(err) is cls and err.message == "no audio track" and err.path == "clip.mp4"
        assert str(err) == "clip.mp4: no audio track"
