"""A recording's audio-video offset: found by the generic model, corrected before a person's model trains."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from emogene_cli.motion import training
from emogene_cli.motion.corpus import AugmentConfig
from emogene_cli.motion.sync import SyncOffset, estimate_offset, paired_frames


def _smooth_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal(n + 8)
    return np.convolve(x, np.ones(5) / 5, mode="same")[4:-4]


@pytest.mark.parametrize("k", [-4, -2, 0, 3, 5])
def test_estimate_offset_finds_how_early_the_mouth_moves(k):
    rng = np.random.default_rng(0)
    sound = _smooth_noise(rng, 400)  # what the audio says the mouth should do, frame by frame
    # the video's mouth at frame t does what the sound asks at frame t + k (k > 0: the mouth moves early)
    real = np.array([sound[min(max(t + k, 0), 399)] for t in range(400)]) + 0.1 * rng.standard_normal(400)
    found = estimate_offset(sound, real)
    assert found.offset == k and found.milliseconds == 40 * k
    assert found.corr > 0.9
    assert (found.corr - found.corr0 >= 0.05) if k else found.corr == found.corr0


def test_estimate_offset_keeps_zero_without_a_clear_gain_and_for_constant_series():
    rng = np.random.default_rng(1)
    sound = _smooth_noise(rng, 300)
    assert estimate_offset(sound, sound + 0.05 * rng.standard_normal(300)).offset == 0
    flat = estimate_offset(sound, np.zeros(300))
    assert flat.offset == 0 and not np.isfinite(flat.corr0)
    # a 1-frame lag on a slow signal gains less than the 0.05 the offset must win by
    slow = np.sin(np.linspace(0, 6, 300))
    assert estimate_offset(slow, np.roll(slow, 1)).offset == 0


@pytest.mark.parametrize("start, stop, offset, total, audio, video", [
    (0, 10, 0, 20, (0, 10), (0, 10)),
    (0, 10, 3, 20, (3, 13), (0, 10)),
    (15, 20, 3, 20, (18, 20), (15, 17)),  # the last frames have no sound left to pair with
    (0, 10, -2, 20, (0, 8), (2, 10)),  # the first frames have no sound before them
    (15, 20, -2, 20, (13, 18), (15, 20)),
    (0, 3, 9, 10, (9, 10), (0, 1)),
    (5, 8, 9, 10, (14, 14), (5, 5)),  # nothing pairs: empty, never negative
])
def test_paired_frames_pairs_video_t_with_audio_t_plus_offset(start, stop, offset, total, audio, video):
    a, v = paired_frames(start, stop, offset, total)
    assert (a.start, a.stop) == audio and (v.start, v.stop) == video
    assert a.stop - a.start == v.stop - v.start >= 0


def test_fit_person_a2m_trains_on_realigned_pairs(monkeypatch):
    """A recording whose mouth moves 3 frames before its sound: the person's model trains on audio
    frame t + 3 paired with video frame t, and the offset is reported with the held-out figures."""
    rng = np.random.default_rng(2)
    T, k = 300, 3
    sound = _smooth_noise(rng, T + k)  # the mouth the audio asks for
    motion = np.zeros((T, 68, 3), np.float32)
    motion[:, 66, 1] = 0.05 * sound[k : T + k]  # video frame t shows what the sound asks at t + k
    features = np.repeat(sound[:T, None], 2, 0).astype(np.float32).repeat(4, 1)  # [2T, 4] at 50 Hz, marks each frame
    data = SimpleNamespace(frames=T, audio_features=features, f0=np.zeros(T, np.float32), motion=motion,
                           audio=np.zeros(T * 640, np.float32), feature_kind="mel", mean_shape=np.zeros((478, 3), np.float32), iod=1.0)
    judge = SimpleNamespace(config=None)  # stands for the generic model

    def fake_predict(model, feats, f0, **_):
        out = np.zeros((len(f0), 68, 3), np.float32)
        out[:, 66, 1] = 0.05 * feats[::2, 0]  # the generic model: mouth follows its sound exactly
        return out

    seen = {}

    def fake_train(clips, config, settings, **kw):
        seen["utt"] = clips[0][0]
        seen["init"] = kw.get("init")
        return judge

    temperatures = []

    def recording_predict(model, feats, f0, temperature=0.0, **kw):
        temperatures.append(temperature)
        return fake_predict(model, feats, f0)

    def fake_gain(pred, real, bank, mean68, iod):
        seen["gain"] = {"pred": pred, "real": real, "bank": bank, "temperature": temperatures[-1]}
        return 1.23

    monkeypatch.setattr(training, "_generic_for", lambda store, kind, device: judge)
    monkeypatch.setattr(training, "predict_motion", recording_predict)
    monkeypatch.setattr(training, "measure_mouth_gain", fake_gain)
    monkeypatch.setattr(training, "train_a2m_clips", fake_train)
    monkeypatch.setattr(training.A2MConfig, "preset", classmethod(lambda cls, *a, **kw: None))
    r = training.fit_person_a2m(data, "finetune", "tiny", training.A2MTraining(steps=1), store=None, augment=AugmentConfig(variants=0))
    assert r.sync.offset == k and r.sync.corr > 0.95 > r.sync.corr0
    assert seen["init"] is judge
    utt = seen["utt"]
    n = r.train_frames
    assert len(utt.motion) == n - k and len(utt.f0) == n - k and len(utt.features) == 2 * (n - k)
    np.testing.assert_array_equal(utt.features, features[2 * k : 2 * n])  # audio frames k..n
    np.testing.assert_array_equal(utt.motion, motion[: n - k])  # video frames 0..n-k
    # scored on the realigned held-out pairs: the judge's mouth matches the video exactly there
    assert r.errors["mouth_open_corr"] > 0.999 and abs(r.errors["mouth_open_sd_ratio"] - 1.0) < 1e-3
    gain_args = seen["gain"]  # the mouth gain: measured on the realigned held-out pairs, sampled as speak samples
    np.testing.assert_array_equal(gain_args["real"], motion[n : T - k])
    np.testing.assert_array_equal(gain_args["bank"], motion[:n])
    assert gain_args["temperature"] == training.SPEAK_TEMPERATURE and len(gain_args["pred"]) == T - k - n
    assert r.errors["mouth_gain"] == 1.23


def test_without_a_generic_model_of_these_features_nothing_is_moved(monkeypatch):
    T = 200
    data = SimpleNamespace(frames=T, audio_features=np.zeros((2 * T, 4), np.float32), f0=np.zeros(T, np.float32),
                           motion=np.zeros((T, 68, 3), np.float32), audio=np.zeros(T * 640, np.float32), feature_kind="mel",
                           mean_shape=np.zeros((478, 3), np.float32), iod=1.0)
    seen = {}
    monkeypatch.setattr(training, "_generic_for", lambda store, kind, device: None)
    monkeypatch.setattr(training, "predict_motion", lambda model, feats, f0, **_: np.zeros((len(f0), 68, 3), np.float32))
    monkeypatch.setattr(training, "train_a2m_clips", lambda clips, *a, **kw: seen.setdefault("utt", clips[0][0]))
    monkeypatch.setattr(training.A2MConfig, "preset", classmethod(lambda cls, *a, **kw: None))
    r = training.fit_person_a2m(data, "scratch", "tiny", training.A2MTraining(steps=1), store=None, augment=AugmentConfig(variants=0))
    assert r.sync == SyncOffset() and len(seen["utt"].motion) == r.train_frames


@pytest.mark.parametrize("k, noted", [(6, True), (-5, True), (2, False), (0, False)])
def test_an_out_of_sync_reference_is_reported_beyond_the_lags_evaluate_searches(k, noted):
    """``evaluate --reference``: a reference whose sound is k frames late (k > 0) or early gets a note from 4 frames on."""
    from emogene_cli.pipelines.reference import reference_offset_figures

    rng = np.random.default_rng(1)
    sound = _smooth_noise(rng, 200)  # the driving mouth, from the reference's sound
    speaker = np.array([sound[min(max(t + k, 0), 199)] for t in range(200)]) + 0.1 * rng.standard_normal(200)
    figures = reference_offset_figures(estimate_offset(sound, speaker), frames=200)
    assert figures["frames"] == k and figures["ms"] == 40 * k and figures["r_at_offset"] > 0.9
    assert ("note" in figures) == noted
    if noted:
        assert f"sound is {abs(k)} frames ({40 * abs(k)} ms) {'behind' if k > 0 else 'ahead of'} its picture" in figures["note"]
        assert "note" not in reference_offset_figures(estimate_offset(sound, speaker), frames=50)  # too short to warn
        # a judge that follows the speaker nowhere (r under 0.3 even at its best lag) cannot tell an offset
        assert "note" not in reference_offset_figures(SyncOffset(k, -0.5, 0.1), frames=200)
