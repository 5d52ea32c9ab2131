import time

import numpy as np
import pytest

from emogene_cli import audio
from emogene_cli.errors import InputError, NotFoundError

from .conftest import DATA, need_shared


def tone(seconds=2.0, sr=16000, freq=150.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_mel_features_are_two_per_video_frame():
    a = tone(2.0)
    T = audio.frames_for(a)
    assert T == 50
    f = audio.compute_audio_features(a, kind="mel")
    assert f.kind == "mel" and f.features.shape == (100, 80) and f.f0.shape == (50,)
    voiced = f.f0[f.f0 > 0]
    assert len(voiced) > 30 and np.median(voiced) == pytest.approx(150, rel=0.05)


def test_resampling_and_downmix_of_48k_stereo():
    need_shared()
    a = audio.load_audio(DATA / "speech" / "macron_12s_48k_stereo.wav")
    assert a.dtype == np.float32 and a.ndim == 1
    assert len(a) / 16000 == pytest.approx(11.9, abs=0.1)


def test_voice_activity_is_per_segment():
    sr = 16000
    speech, silence = tone(1.0), np.zeros(sr, np.float32)
    a = np.concatenate([speech, silence, speech])
    va = audio.voice_activity(a, audio.frames_for(a))
    assert va[:20].all() and not va[32:45].any() and va[55:].all()


def tiny_hubert(path):
    from transformers import HubertConfig, HubertModel

    cfg = HubertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    )
    HubertModel(cfg).save_pretrained(path)
    return path


def test_hubert_path_through_from_pretrained(tmp_path):
    src = tiny_hubert(tmp_path / "tiny-hubert")
    a = tone(1.5)
    f = audio.compute_audio_features(a, kind="hubert", hubert=str(src))
    assert f.kind == "hubert:tiny-hubert"
    assert f.features.shape == (2 * audio.frames_for(a), 32) and np.isfinite(f.features).all()
    # asking for that exact kind again (as speak does for a fitted model) works
    again = audio.compute_audio_features(a, kind="hubert:tiny-hubert", hubert=str(src))
    np.testing.assert_allclose(again.features, f.features, atol=1e-5)


def test_missing_hubert_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("EMOGENE_MODEL_DIR", "EMOGENE_WHISPER", "EMOGENE_HUBERT"):
        monkeypatch.delenv(var, raising=False)
    start = time.perf_counter()
    with pytest.raises(NotFoundError):
        audio.load_hubert(str(tmp_path / "nothing-here"))
    assert time.perf_counter() - start < 5.0
    f = audio.compute_audio_features(tone(1.0), kind="auto", hubert=str(tmp_path / "nothing-here"))
    assert f.kind == "mel" and "no Whisper or HuBERT weights" in f.note


def test_audio_errors(tmp_path):
    with pytest.raises(NotFoundError, match="file not found"):
        audio.load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(InputError, match="unreadable"):
        audio.load_audio(bad)
