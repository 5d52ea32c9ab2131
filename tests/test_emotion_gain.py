"""Emotion-strength calibration (:mod:`emogene_cli.emotion.gain`)."""

from __future__ import annotations

import os
import types

import numpy as np
import pytest

from emogene_cli.emotion.gain import GAIN_MAX, measure_emotion_gain, solve_gain


def test_solve_gain_interpolates_and_only_ever_strengthens():
    assert solve_gain(0.4, 0.7, target=1.0, gain_max=2.0) == pytest.approx(2.0)  # falls short: the cap
    assert solve_gain(0.4, 1.6, target=1.0, gain_max=2.0) == pytest.approx(1.5)  # halfway along the line
    assert solve_gain(1.2, 1.8, target=1.0, gain_max=2.0) == 1.0  # already as strong as the actors
    assert solve_gain(0.3, 0.2, target=1.0, gain_max=2.0) == 1.0  # does not grow with the motion
    assert solve_gain(float("nan"), 0.9) == 1.0 and solve_gain(0.3, float("nan")) == 1.0


def _fake_chain(response):
    """A renderer + tracker pair: a frame's pixel value is the displacement's mean size, and the
    'blendshapes' read it through ``response`` (blendshape 0), blendshape 1 stays put."""

    def render(displacement):
        size = float(np.abs(displacement).mean())
        return np.full((len(displacement), 4, 4, 3), size, np.float32)

    def blendshapes(frames):
        size = frames[:, 0, 0, 0]
        bs = np.zeros((len(frames), 52), np.float32)
        bs[:, 0] = response(size)
        bs[:, 1] = 0.3
        return bs, np.ones(len(frames), bool)

    return render, blendshapes


def test_measured_strengths_give_the_gain_that_reaches_the_actors():
    """Emotion 0's blendshape grows linearly with the motion: at gain 1 it shows 0.4 of the actors'
    change and 0.4 × GAIN_MAX at the cap, so its gain is the cap; emotion 1 grows twice as fast
    and reaches the target inside the range; emotion 2 has no real change and keeps 1."""
    render, blendshapes = _fake_chain(lambda size: size)
    disp = np.zeros((3, 5, 68, 3), np.float32)
    disp[0] += 0.04
    disp[1] += 0.08
    disp[2] += 0.05
    real = np.zeros((3, 52), np.float32)
    real[0, 0] = real[1, 0] = 0.1  # the actors' change: +0.1 on blendshape 0
    calls = []
    out = measure_emotion_gain(render, disp, real, blendshapes, gain_max=GAIN_MAX, target=1.0,
                               progress=lambda *a: calls.append(a))
    assert out.strength[0, 0] == pytest.approx(0.4, rel=1e-4) and out.strength[1, 0] == pytest.approx(0.4 * GAIN_MAX, rel=1e-4)
    assert out.gain[0] == pytest.approx(GAIN_MAX)
    assert out.strength[0, 1] == pytest.approx(0.8, rel=1e-4)
    assert out.gain[1] == pytest.approx(1.25, rel=1e-3)  # 0.8 * 1.25 = 1.0
    assert out.gain[2] == 1.0 and np.isnan(out.strength[:, 2]).all()
    assert calls[-1] == ("emotion gain", 5, 5) and out.frames == 5


def test_an_emotion_that_shows_only_past_a_threshold_is_strengthened_and_no_face_is_an_error():
    """A face whose blendshape stays at 0 until the motion passes a threshold (a resting frown that
    a brow raise must first cancel) gets more than gain 1; neutral renders without a face are an error."""
    render, blendshapes = _fake_chain(lambda size: np.maximum(size - 0.03, 0.0) * 4)
    disp = np.full((1, 4, 68, 3), 0.04, np.float32)
    real = np.zeros((1, 52), np.float32)
    real[0, 0] = 0.1
    out = measure_emotion_gain(render, disp, real, blendshapes, gain_max=1.5, target=1.0)
    assert out.strength[0, 0] == pytest.approx(0.4, rel=1e-3) and out.gain[0] > 1.0

    def blind(frames):
        return np.zeros((len(frames), 52), np.float32), np.zeros(len(frames), bool)

    with pytest.raises(ValueError, match="no face"):
        measure_emotion_gain(render, disp, real, blind)


def test_speak_scales_each_emotion_by_its_gain():
    """emotional_motion multiplies each emotion's weight by the identity's gain before the LDM."""
    import torch

    from emogene_cli import geometry
    from emogene_cli.emotion.motion_to_emotion import emotional_motion
    from emogene_cli.emotions import EMOTIONS
    from emogene_cli.models.ldm import LandmarkDeformationModel, LDMConfig

    rng = np.random.default_rng(0)
    T = 20
    bank = (rng.normal(size=(60, 68, 3)) * 0.01).astype(np.float32)
    lift_w = np.zeros((478 * 3, 68 * 3), np.float32)
    lift_w[(geometry.LM68_FROM_LM478[:, None] * 3 + np.arange(3)).ravel(), np.arange(68 * 3)] = 1.0
    ldm = LandmarkDeformationModel(LDMConfig())
    with torch.no_grad():
        ldm.lift.copy_(torch.from_numpy(lift_w))
        for p in ldm.mlp.parameters():
            p.zero_()
        ldm.mlp[-1].bias.fill_(0.04)
    gain = np.ones(len(EMOTIONS), np.float32)
    gain[EMOTIONS.index("surprised")] = 1.5
    out = {}
    for emotion in ("surprised", "happy"):
        weights = np.zeros((T, len(EMOTIONS)), np.float32)
        weights[:, EMOTIONS.index(emotion)] = 1.0
        for g in (None, gain):
            speaker = types.SimpleNamespace(bank_motion=bank, lift=(lift_w, None), tracker_gain=None, emotion_gain=g, mouth_gain=1.0, mouth_rest=None)
            emotional, _, _, _ = emotional_motion(speaker, bank[:T].copy(), weights, ldm=ldm)
            out[emotion, g is None] = emotional - bank[:T]
    assert np.allclose(out["surprised", False], 1.5 * out["surprised", True], atol=1e-5)
    assert np.allclose(out["happy", False], out["happy", True])


def test_speak_widens_the_mouth_s_spread_by_the_identity_s_mouth_gain_about_its_mean_posture():
    from emogene_cli import geometry
    from emogene_cli.emotion.motion_to_emotion import emotional_motion
    from emogene_cli.emotions import EMOTIONS
    from emogene_cli.motion import mouth_rest
    from emogene_cli.render.speaker import _mouth_gain

    rng = np.random.default_rng(4)
    T = 60
    bank = np.zeros((200, 68, 3), np.float32)
    bank[:, 66, 1] = np.abs(rng.normal(size=200)) * 0.05  # the lower inner lip opens, never above the upper one
    mean68 = np.zeros((68, 3), np.float32)
    lift_w = np.zeros((478 * 3, 68 * 3), np.float32)
    lift_w[(geometry.LM68_FROM_LM478[:, None] * 3 + np.arange(3)).ravel(), np.arange(68 * 3)] = 1.0
    rest = mouth_rest(bank, mean68, 1.0)
    pivot = bank.mean(0)
    neutral = pivot + 0.5 * (bank[:T] - pivot)  # a model that regresses halfway to the identity's mean
    spread, typical = {}, {}
    for gain in (1.0, 1.5):
        speaker = types.SimpleNamespace(bank_motion=bank, lift=(lift_w, None), tracker_gain=None,
                                        emotion_gain=None, mouth_gain=gain, mouth_rest=rest)
        weights = np.zeros((T, len(EMOTIONS)), np.float32)
        weights[:, EMOTIONS.index("neutral")] = 1.0
        _, motion68, _, _ = emotional_motion(speaker, neutral, weights, ldm=None)
        spread[gain] = geometry.mouth_opening(motion68).std()
        typical[gain] = geometry.mouth_opening(motion68).mean()
    assert spread[1.5] == pytest.approx(1.5 * spread[1.0], rel=0.02)
    assert typical[1.5] == pytest.approx(typical[1.0], rel=0.02)  # about the mean: the typical opening stays
    assert _mouth_gain({"mouth_gain": "1.2500"}) == 1.25 and _mouth_gain({}) == 1.0  # older files: no gain


def test_a_stored_calibration_is_used_until_the_renderer_the_ldm_the_tracker_gain_or_the_cap_changes(tmp_path, monkeypatch):
    """identity_emotion_gain loads the stored gains; refitting the renderer, a new LDM, another
    tracker gain or another cap measures again."""
    import torch

    from emogene_cli.emotion import gain as eg
    from emogene_cli.store import Store, save_artifact

    store = Store(tmp_path)
    for path in (store.dataset_path("may"), store.renderer_path("may")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    ldm = torch.nn.Linear(2, 2)
    speaker = types.SimpleNamespace(name="may", renderer=types.SimpleNamespace(config=types.SimpleNamespace(resolution=256)),
                                    tracker_gain=np.ones((478, 3), np.float32))
    measured = []

    def fake_calibrate(store_, name, speaker_, ldm_, progress=None):
        measured.append(name)
        gain = np.full(8, 1.2, np.float32)
        save_artifact(eg.emotion_gain_path(store_, name), {"gain": gain}, producer="test",
                      extra={"calibrated_for": eg._calibration_stamp(store_, name, ldm_, 256, speaker_.tracker_gain)})
        return types.SimpleNamespace(gain=gain)

    monkeypatch.setattr(eg, "calibrate_emotion_gain", fake_calibrate)
    told = []
    assert eg.identity_emotion_gain(store, speaker, ldm, on_measure=lambda: told.append(1))[0] == pytest.approx(1.2)
    assert eg.identity_emotion_gain(store, speaker, ldm, on_measure=lambda: told.append(1))[0] == pytest.approx(1.2)
    assert len(measured) == 1 and told == [1]  # stored: not measured again
    os.utime(store.renderer_path("may"), (1, 1))  # fitted again
    eg.identity_emotion_gain(store, speaker, ldm)
    assert len(measured) == 2
    with torch.no_grad():
        ldm.weight.add_(1.0)  # another LDM
    eg.identity_emotion_gain(store, speaker, ldm)
    assert len(measured) == 3
    speaker.tracker_gain = speaker.tracker_gain * 0.8  # another tracker gain
    eg.identity_emotion_gain(store, speaker, ldm)
    assert len(measured) == 4
    monkeypatch.setattr(eg, "GAIN_MAX", 2.0)
    eg.identity_emotion_gain(store, speaker, ldm)
    eg.identity_emotion_gain(store, speaker, ldm)
    assert len(measured) == 5
