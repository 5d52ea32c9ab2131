"""The renderer's mouth against the head pose (emogene_cli.render.pose_gain) and how speak applies it."""

from __future__ import annotations

import types

import numpy as np
import pytest

from emogene_cli import geometry
from emogene_cli.motion import amplify_mouth, mouth_rest
from emogene_cli.render.pose_gain import FACTOR_RANGE, PoseGainError, PoseMouthGain, head_pitch, measure_pose_mouth_gain

UPPER, LOWER = geometry.LM68_FROM_LM478[62], geometry.LM68_FROM_LM478[66]


def pitched(deg: float) -> np.ndarray:
    """A camera-from-head pose nodding by ``deg`` degrees (scale 2, some translation)."""
    return geometry.vector_to_pose(np.array([np.radians(deg), 0, 0, 100, 120, 0, np.log(2.0)]))


def closed_face(seed: int = 0) -> np.ndarray:
    """A ``[478, 3]`` mean shape whose inner lips touch."""
    shape = np.random.default_rng(seed).normal(size=(478, 3)) * 10
    shape[LOWER] = shape[UPPER]
    return shape


def test_head_pitch_reads_the_nod_of_a_pose():
    poses = np.stack([pitched(d) for d in (-5.0, 0.0, 12.0)])
    np.testing.assert_allclose(head_pitch(poses), [-5.0, 0.0, 12.0], atol=1e-6)


def test_factors_undo_the_measured_ratio_between_the_poses_flat_beyond_and_clipped():
    gain = PoseMouthGain(pitch=np.array([-2.0, 2.0, 10.0], np.float32), log_ratio=np.array([0.1, 0.0, -0.2], np.float32), frames=24)
    f = gain.factors(np.stack([pitched(d) for d in (2.0, 6.0, 10.0, 20.0, -2.0, -30.0)]))
    np.testing.assert_allclose(f, np.exp([0.0, 0.1, 0.2, 0.2, -0.1, -0.1]), rtol=1e-5)  # 6°: halfway to 10°
    steep = PoseMouthGain(pitch=np.array([0.0, 10.0], np.float32), log_ratio=np.array([0.0, -2.0], np.float32), frames=24)
    assert steep.factors(pitched(10.0)[None])[0] == pytest.approx(FACTOR_RANGE[1])
    assert gain.tied and gain.end_factors() == pytest.approx((np.exp(-0.1), np.exp(0.2)))  # what fit-identity's summary shows
    assert steep.end_factors()[1] == pytest.approx(FACTOR_RANGE[1])
    flat = PoseMouthGain(pitch=np.array([0.0, 10.0], np.float32), log_ratio=np.zeros(2, np.float32), frames=24, slope=1e-4, slope_se=2e-3)
    assert not flat.tied and flat.end_factors() == (1.0, 1.0)


def test_fit_identity_s_summary_says_what_the_pose_calibration_found():
    from emogene_cli.commands.fit_identity import _pose_gain_text

    tied = PoseMouthGain(pitch=np.array([-2.4, 10.4], np.float32), log_ratio=np.array([0.07, -0.17], np.float32), frames=24,
                         slope=-0.0193, slope_se=0.0029)
    assert _pose_gain_text(tied) == ("slope -0.0193 per degree (standard error 0.0029); speak opens the renderer's mouth by 0.93 at "
                                     "-2.4° to 1.19 at 10.4° of pitch, so it opens as planned at every pose")
    flat = PoseMouthGain(pitch=np.array([0.0, 10.0], np.float32), log_ratio=np.zeros(2, np.float32), frames=24, slope=-0.0003, slope_se=0.0025)
    assert _pose_gain_text(flat).startswith("no tie: slope -0.0003 per degree")


def fake_renderer(mean: np.ndarray, ratio_at: callable):
    """``render`` opens each frame's mouth ``ratio_at(pitch)`` times as wide as asked; ``detect``
    reads it back as landmarks at that pose. The frames carry the rendered gap (inter-ocular units)."""
    iod = geometry.interocular_distance(mean)

    def render(poses: np.ndarray, motion: np.ndarray) -> np.ndarray:
        return motion[:, LOWER, 1] * ratio_at(head_pitch(poses)) + np.zeros(len(motion))

    def detect(gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shapes = np.repeat(mean[None], len(gaps), 0)
        shapes[:, LOWER, 1] += gaps * iod
        landmarks = geometry.transform_points(np.repeat(pitched(3.0)[None], len(gaps), 0), shapes)
        return landmarks, np.ones(len(gaps), bool)

    return render, detect


def open_mouths(rng: np.random.Generator, n: int, low: float = 0.08, high: float = 0.16) -> tuple[np.ndarray, np.ndarray]:
    """``(driving gaps [n], dense motion [n, 478, 3])``: the lower inner lip lowered by the gap."""
    driving = rng.uniform(low, high, size=n) if high > low else np.full(n, low)
    motion = np.zeros((n, 478, 3))
    motion[:, LOWER, 1] = driving
    return driving, motion


def test_measure_recovers_how_the_rendered_opening_falls_with_the_pitch():
    mean = closed_face()
    rng = np.random.default_rng(1)
    driving, motion = open_mouths(rng, 24)
    render, detect = fake_renderer(mean, lambda p: np.exp(0.05 - 0.02 * p))  # narrower when pitched
    jitter = rng.uniform(-1.0, 1.0, size=24)
    groups = [np.stack([pitched(d + j) for j in jitter - jitter.mean()]) for d in (10.0, -2.0, 6.0, 1.5, 0.0)]  # any order
    gain = measure_pose_mouth_gain(motion, driving, np.stack(groups), render, detect, mean)
    np.testing.assert_allclose(gain.pitch, [-2.0, 10.0], atol=1e-4)  # the groups' range
    np.testing.assert_allclose(gain.log_ratio, -0.02 * (gain.pitch - 1.5), atol=1e-4)  # 0 at the median group's pitch
    assert gain.frames == 24 and gain.slope == pytest.approx(-0.02, abs=1e-6)
    # driven by the factors, the same renderer opens the mouth as far as asked at every pitch
    for deg in (-2.0, 4.0, 10.0):
        f = gain.factors(pitched(deg)[None])[0]
        assert f * np.exp(0.05 - 0.02 * deg) == pytest.approx(np.exp(0.05 - 0.02 * 1.5), rel=1e-3)


def test_a_slope_within_the_scatter_of_the_renders_counts_as_no_tie():
    mean = closed_face()
    rng = np.random.default_rng(2)
    driving, motion = open_mouths(rng, 24)

    def ratio_at(p: np.ndarray) -> np.ndarray:  # ±20 % per render, no trend; a weak trend under it
        return np.exp(rng.normal(0.0, 0.2, size=np.shape(p)) - 0.002 * np.asarray(p))

    render, detect = fake_renderer(mean, ratio_at)
    poses = np.stack([pitched(d) for d in (-3.0, 0.0, 2.0, 5.0, 9.0)])
    gain = measure_pose_mouth_gain(motion, driving, poses, render, detect, mean)
    assert abs(gain.slope) < 3 * gain.slope_se
    np.testing.assert_array_equal(gain.log_ratio, [0.0, 0.0])
    np.testing.assert_array_equal(gain.factors(np.stack([pitched(d) for d in (-3.0, 9.0)])), [1.0, 1.0])


def test_measure_fails_when_the_renders_are_not_tracked_with_an_open_mouth():
    mean = closed_face()
    driving, motion = open_mouths(np.random.default_rng(0), 10, 0.1, 0.1)
    render, detect = fake_renderer(mean, lambda p: 0.0)  # a closed mouth whatever is asked
    with pytest.raises(PoseGainError, match="0 of 10 renders"):
        measure_pose_mouth_gain(motion, driving, np.stack([pitched(0.0), pitched(5.0)]), render, detect, mean)


def test_amplify_mouth_takes_one_gain_per_frame_and_keeps_closures_closed():
    rng = np.random.default_rng(3)
    T = 50
    bank = np.zeros((T, 68, 3), np.float32)
    bank[:, 66, 1] = np.clip(rng.normal(size=T), 0, None) * 0.05
    rest = mouth_rest(bank, np.zeros((68, 3), np.float32), 1.0)
    g = np.linspace(0.8, 1.3, T).astype(np.float32)
    out = amplify_mouth(bank, rest, g)
    np.testing.assert_allclose(out[:, 66, 1], g * bank[:, 66, 1], atol=1e-6)
    closed = bank[:, 66, 1] == 0
    assert closed.any() and np.all(out[closed] == bank[closed])
    assert amplify_mouth(bank, rest, np.ones(T)) is bank
    with pytest.raises(ValueError, match="3 per-frame mouth gains for 50 frames"):
        amplify_mouth(bank, rest, np.ones(3))


def test_the_factors_drive_the_renderer_but_not_the_planned_landmarks():
    from emogene_cli.emotion.motion_to_emotion import emotional_motion
    from emogene_cli.emotions import EMOTIONS

    rng = np.random.default_rng(4)
    T = 40
    bank = np.zeros((200, 68, 3), np.float32)
    bank[:, 66, 1] = np.abs(rng.normal(size=200)) * 0.05
    lift_w = np.zeros((478 * 3, 68 * 3), np.float32)
    lift_w[(geometry.LM68_FROM_LM478[:, None] * 3 + np.arange(3)).ravel(), np.arange(68 * 3)] = 1.0
    speaker = types.SimpleNamespace(bank_motion=bank, lift=(lift_w, None), tracker_gain=None, emotion_gain=None, mouth_gain=1.0,
                                    mouth_rest=mouth_rest(bank, np.zeros((68, 3), np.float32), 1.0))
    weights = np.zeros((T, len(EMOTIONS)), np.float32)
    weights[:, EMOTIONS.index("neutral")] = 1.0
    neutral = bank[:T].copy()
    neutral[2:8, 66, 1] = -0.05  # lips pressed past the closed posture for a while
    _, plain68, plain, _ = emotional_motion(speaker, neutral, weights, ldm=None)
    factors = np.where(np.arange(T) < 20, 1.25, 1.0).astype(np.float32)
    _, motion68, dense, code = emotional_motion(speaker, neutral, weights, ldm=None, render_mouth_gain=factors)
    np.testing.assert_array_equal(motion68, plain68)  # what the rendered mouth is measured against
    lower = geometry.LM68_FROM_LM478[66]
    rest_y = speaker.mouth_rest[66, 1]
    pressed = plain[:20, lower, 1] < rest_y
    assert pressed[2:8].all()
    np.testing.assert_allclose(dense[:20][~pressed, lower, 1] - rest_y, 1.25 * (plain[:20][~pressed, lower, 1] - rest_y), atol=1e-6)
    np.testing.assert_array_equal(dense[:20][pressed], plain[:20][pressed])  # not pressed further (the floor)
    np.testing.assert_array_equal(dense[20:], plain[20:])
    np.testing.assert_array_equal(code, dense)  # no LDM: the code follows the same motion
    speaker.mouth_rest = None
    with pytest.raises(ValueError, match="mouth_rest"):
        emotional_motion(speaker, neutral, weights, ldm=None, render_mouth_gain=factors)


def test_a_calibration_is_measured_once_per_dataset_and_renderer_even_when_it_fails(tmp_path, monkeypatch):
    import os

    from emogene_cli.render import pose_gain
    from emogene_cli.store import Store

    store = Store(tmp_path)
    for path in (store.dataset_path("ann"), store.renderer_path("ann")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    calls = []
    result = PoseMouthGain(pitch=np.array([0.0, 5.0], np.float32), log_ratio=np.array([0.0, -0.1], np.float32), frames=20)

    def calibrate(store_, name, renderer, device="cpu", progress=None, data=None):
        calls.append(name)
        if len(calls) == 1:
            raise PoseGainError("3 of 24 renders at pitch 0.0° re-tracked with an open mouth")
        pose_gain.save_artifact(pose_gain.pose_gain_path(store_, name), {"pitch": result.pitch, "log_ratio": result.log_ratio},
                                producer="pose-mouth-gain", extra={"calibrated_for": pose_gain._stamp(store_, name), "frames": "20"})
        return result

    monkeypatch.setattr(pose_gain, "calibrate_pose_mouth_gain", calibrate)
    told = []
    assert pose_gain.identity_pose_mouth_gain(store, "ann", None, on_measure=lambda: told.append(1)) is None
    assert pose_gain.identity_pose_mouth_gain(store, "ann", None, on_measure=lambda: told.append(1)) is None  # stored: not again
    assert len(calls) == 1 and len(told) == 1
    renderer = store.renderer_path("ann")
    renderer.write_bytes(b"refit")
    os.utime(renderer, (renderer.stat().st_mtime + 5,) * 2)
    gain = pose_gain.identity_pose_mouth_gain(store, "ann", None)  # a new renderer: measured again
    assert len(calls) == 2 and gain is not None
    np.testing.assert_array_equal(pose_gain.load_pose_mouth_gain(store, "ann").log_ratio, result.log_ratio)
