"""The evaluation metrics on inputs with known answers (fast, no models)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from emogene_cli.emotions import EMOTIONS
from emogene_cli.evaluation import metrics
from emogene_cli.face.tracking import BLENDSHAPE_NAMES
from emogene_cli.geometry import LM68_MOUTH, compose_pose


def _image(seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_identical_frames_give_infinite_psnr_and_ssim_one():
    a = _image()
    assert metrics.psnr(a, a.copy()) == math.inf
    assert metrics.ssim(a, a.copy()) == pytest.approx(1.0)


def test_psnr_of_a_known_error():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a + 10  # MSE 100 -> 10 log10(255^2 / 100)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert metrics.psnr_from_mse(0.01, 1.0) == pytest.approx(20.0)
    assert math.isnan(metrics.psnr_from_mse(float("nan")))


def test_masked_psnr_only_counts_the_mask():
    a = _image(1)
    b = a.copy()
    b[:, :16] = 255 - b[:, :16]  # ruin the left half
    mask = np.zeros(a.shape[:2], bool)
    mask[:, 16:] = True
    assert metrics.psnr(a, b, mask=mask) == math.inf
    assert metrics.psnr(a, b) < 10
    with pytest.raises(ValueError):
        metrics.psnr(a, b, mask=np.zeros_like(mask))


def test_ssim_drops_with_noise_and_handles_small_crops():
    a = _image(2)
    noise = np.random.default_rng(3).integers(-60, 61, a.shape)
    light = np.clip(a.astype(int) + noise // 4, 0, 255).astype(np.uint8)
    heavy = np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)
    assert 0 < metrics.ssim(a, heavy) < metrics.ssim(a, light) < 1
    assert metrics.ssim(a[:5, :5], a[:5, :5]) == pytest.approx(1.0)  # smaller than the 7x7 window


def test_face_region_box_is_padded_and_clipped():
    pts = np.array([[10, 20], [30, 40]], float)
    assert metrics.padded_box(pts, (64, 64), pad=0.1) == (8, 18, 32, 42)
    assert metrics.padded_box(pts, (35, 35), pad=0.5) == (0, 10, 35, 35)
    img = np.arange(64 * 64).reshape(64, 64)
    assert metrics.crop(img, (8, 18, 32, 42)).shape == (24, 24)


def _landmarks(T: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 100, (T, 68, 3))


def test_identical_landmarks_give_zero_lmd():
    lm = _landmarks()
    assert metrics.m_lmd(lm, lm.copy()) == 0.0
    assert metrics.f_lmd(lm, lm.copy(), align="none") == 0.0


def test_shifted_landmarks_give_the_shift_without_alignment_and_zero_with_it():
    real = _landmarks()
    shifted = real + np.array([3.0, 4.0, 7.0])  # z is not compared
    assert metrics.f_lmd(shifted, real, align="none") == pytest.approx(5.0)
    assert metrics.m_lmd(shifted, real, align="none") == pytest.approx(5.0)
    assert metrics.f_lmd(shifted, real, align="mean") == pytest.approx(0.0, abs=1e-9)
    assert metrics.m_lmd(shifted, real, align="mean") == pytest.approx(0.0, abs=1e-9)


def test_mouth_lmd_sees_only_the_mouth():
    real = _landmarks()
    pred = real.copy()
    pred[:, 60:68, 1] += 2.0  # open the inner lips by 2 px (8 of the 20 mouth points)
    mouth = metrics.m_lmd(pred, real, align="none")
    assert mouth == pytest.approx(2.0 * 8 / 20)
    assert metrics.f_lmd(pred, real, align="none") == pytest.approx(2.0 * 8 / 68)
    eyes_only = real.copy()
    eyes_only[:, 36:48] += 5.0
    assert metrics.landmark_distance(eyes_only, real, LM68_MOUTH, align="none") == 0.0


def test_lmd_valid_frames_and_bad_input():
    real = _landmarks(T=3)
    pred = real.copy()
    pred[1] += np.array([3.0, 4.0, 0.0])
    assert metrics.f_lmd(pred, real, align="none") == pytest.approx(5.0 / 3)
    assert metrics.f_lmd(pred, real, align="none", valid=np.array([True, False, True])) == 0.0
    assert math.isnan(metrics.f_lmd(pred, real, valid=np.zeros(3, bool)))
    with pytest.raises(ValueError):
        metrics.landmark_distance(pred, real[:, :10])
    with pytest.raises(ValueError):
        metrics.landmark_distance(pred, real, align="procrustes")


def _speech_like(T: int = 200, seed: int = 0) -> np.ndarray:
    """A smooth positive signal like a syllable-rate loudness envelope (25 fps)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 25.0
    return 1.0 + np.sin(2 * np.pi * 4.0 * t + 0.3) * np.abs(np.sin(2 * np.pi * 0.7 * t)) + 0.1 * rng.standard_normal(T)


def test_a_mouth_signal_correlates_with_its_own_envelope_at_lag_zero():
    env = _speech_like()
    corr, lag = metrics.lipsync_correlation(2.5 * env + 1.0, env, max_lag=5)
    assert corr == pytest.approx(1.0) and lag == 0


@pytest.mark.parametrize("delay", [3, -2])
def test_a_delayed_mouth_signal_is_found_at_its_lag(delay):
    env = _speech_like(seed=1)
    mouth = np.roll(env, delay)  # mouth[t] = env[t - delay]: the mouth is late by `delay` frames
    corr, lag = metrics.lipsync_correlation(mouth, env, max_lag=5)
    assert lag == delay and corr > 0.95


def test_lipsync_of_constant_signals_is_undefined():
    corr, lag = metrics.lipsync_correlation(np.ones(20), np.arange(20.0))
    assert math.isnan(corr) and lag == 0


def _rotating_poses(T: int, speed: float, axis=(0.0, 1.0, 0.0)) -> np.ndarray:
    axis = np.asarray(axis) / np.linalg.norm(axis)
    rot = Rotation.from_rotvec(np.outer(np.arange(T) * speed, axis)).as_matrix()
    return compose_pose(np.full(T, 2.0), rot, np.tile([50.0, 60.0, 0.0], (T, 1)))


def test_a_constant_pose_has_zero_velocity_and_acceleration():
    out = metrics.pose_velocity_acceleration(_rotating_poses(20, 0.0), face_size=80.0)
    assert out["velocity_mean"] == pytest.approx(0.0, abs=1e-12)
    assert out["acceleration_mean"] == pytest.approx(0.0, abs=1e-12)
    assert out["frames"] == 20


def test_a_constant_speed_rotation_has_that_velocity_and_no_acceleration():
    out = metrics.pose_velocity_acceleration(_rotating_poses(30, 0.02), face_size=80.0)
    assert out["velocity_mean"] == pytest.approx(0.02, rel=1e-6)
    assert out["velocity_std"] == pytest.approx(0.0, abs=1e-9)
    assert out["acceleration_mean"] == pytest.approx(0.0, abs=1e-9)


def test_pose_statistics_use_only_the_masked_stretch():
    poses = _rotating_poses(30, 0.0)
    poses[15:, :3, 3] += np.arange(15)[:, None] * np.array([4.0, 0.0, 0.0])  # moves 4 px/frame from frame 15 on
    silent = np.zeros(30, bool)
    silent[:15] = True
    still = metrics.pose_velocity_acceleration(poses, silent, face_size=80.0)
    moving = metrics.pose_velocity_acceleration(poses, ~silent, face_size=80.0)
    assert still["velocity_mean"] == pytest.approx(0.0, abs=1e-12)
    assert moving["velocity_mean"] == pytest.approx(4.0 / 80.0)  # translation in face heights
    none = metrics.pose_velocity_acceleration(poses, np.zeros(30, bool))
    assert math.isnan(none["velocity_mean"]) and none["frames"] == 0


def test_blendshape_deltas_score_the_relevant_blendshapes():
    neutral = np.zeros((10, len(BLENDSHAPE_NAMES)))
    happy = neutral.copy()
    for name in ("mouthSmileLeft", "mouthSmileRight"):
        happy[:, BLENDSHAPE_NAMES.index(name)] = 0.6
    happy[:, BLENDSHAPE_NAMES.index("browDownLeft")] = 0.9  # not a happy blendshape
    out = metrics.blendshape_deltas(happy, neutral, BLENDSHAPE_NAMES, "happy")
    assert out["deltas"]["mouthSmileLeft"] == pytest.approx(0.6)
    assert out["score"] == pytest.approx(0.3)  # smiles +0.6 x 2, cheek squints 0 x 2
    assert "browDownLeft" not in out["deltas"]
    assert math.isnan(metrics.blendshape_deltas(happy, neutral, BLENDSHAPE_NAMES, "neutral")["score"])
    assert set(metrics.EMOTION_BLENDSHAPES) | {"neutral"} == set(EMOTIONS)
    assert all(n in BLENDSHAPE_NAMES for names in metrics.EMOTION_BLENDSHAPES.values() for n in names)


def test_emotion_strength_is_zero_for_identical_clips_and_the_ratio_for_a_known_change():
    rng = np.random.default_rng(0)
    real = np.zeros(52)
    real[[23, 24]] = 0.4  # e.g. mouthSmile left / right of a real actor
    clip = rng.uniform(0, 1, size=(30, 52))
    assert metrics.emotion_strength(clip.mean(0) - clip.mean(0), real) == 0.0
    assert metrics.emotion_strength(0.25 * real, real) == pytest.approx(0.25)
    other = np.zeros(52)
    other[5] = 0.3  # a change orthogonal to the real one does not count
    assert metrics.emotion_strength(0.5 * real + other, real) == pytest.approx(0.5)
    assert np.isnan(metrics.emotion_strength(real, np.zeros(52)))


def test_nearest_emotion_picks_the_most_similar_real_change():
    real = {"happy": np.eye(52)[23] + np.eye(52)[24], "surprised": np.eye(52)[2] + np.eye(52)[20], "sad": np.eye(52)[0]}
    assert metrics.nearest_emotion(0.1 * real["surprised"] + 0.01 * real["happy"], real) == "surprised"
    assert metrics.nearest_emotion(np.zeros(52), real) is None


def test_mouth_agreement_known_answers():
    rng = np.random.default_rng(0)
    real = np.convolve(rng.normal(size=300), np.ones(5) / 5, mode="same")
    same = metrics.mouth_agreement(real, real)
    assert same["r_lag0"] == pytest.approx(1.0) and same["best_lag"] == 0 and same["std_ratio"] == pytest.approx(1.0)
    half = metrics.mouth_agreement(0.5 * real + 3.0, real)
    assert half["r_lag0"] == pytest.approx(1.0) and half["std_ratio"] == pytest.approx(0.5)
    late = metrics.mouth_agreement(np.concatenate([np.zeros(2), real[:-2]]), real)
    assert late["best_lag"] == 2 and late["r_best"] > 0.99 > late["r_lag0"]
    noise = metrics.mouth_agreement(rng.normal(size=300), real)
    assert abs(noise["r_lag0"]) < 0.2
    valid = np.ones(300, bool)
    valid[100:120] = False
    gaps = metrics.mouth_agreement(np.where(valid, real, 99.0), real, valid=valid)
    assert gaps["frames"] == 280 and gaps["r_lag0"] == pytest.approx(1.0)
    assert math.isnan(metrics.mouth_agreement(np.ones(10), real[:10])["r_lag0"])


def test_largest_changes_put_what_moved_beside_what_should_have():
    names = [f"b{i}" for i in range(52)]
    change, reference = np.zeros(52), np.zeros(52)
    change[[3, 7, 9]] = [0.5, -0.3, 0.1]  # a smile-like move the reference does not make
    reference[[20, 7, 30]] = [0.4, -0.2, 0.05]
    rows = metrics.largest_changes(change, reference, names, k=2)
    assert [r["name"] for r in rows] == ["b3", "b7", "b20"]  # the render's two largest, then the reference's new one
    assert rows[0] == {"name": "b3", "rendered": 0.5, "reference": 0.0}
    assert rows[2]["rendered"] == 0.0 and rows[2]["reference"] == pytest.approx(0.4)
