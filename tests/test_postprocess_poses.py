import numpy as np
import pytest

from emogene_cli.geometry import LM68_UPPER_LID, compose_pose
from emogene_cli.motion import postprocessing as pp
from emogene_cli.motion.poses import find_idle_segments, pose_speed, sample_poses


def test_lle_weights_sum_to_one_and_reconstruct_points_in_the_span():
    rng = np.random.default_rng(0)
    nbrs = rng.normal(size=(4, 5, 6))
    w_true = rng.dirichlet(np.ones(5), size=4)
    x = np.einsum("tk,tkd->td", w_true, nbrs)
    w = pp.lle_weights(x, nbrs, reg=1e-9)
    np.testing.assert_allclose(w.sum(1), 1.0)
    np.testing.assert_allclose(np.einsum("tk,tkd->td", w, nbrs), x, atol=1e-6)


def test_lle_project_blend_limits():
    rng = np.random.default_rng(1)
    bank = rng.normal(size=(50, 68, 3)).astype(np.float32)
    motion = bank[:5] + 0.0
    np.testing.assert_allclose(pp.lle_project(motion, bank, k=5, blend=1.0), motion, atol=0.05)  # points on the manifold stay (up to regularisation)
    far = rng.normal(size=(3, 68, 3)).astype(np.float32) * 5
    np.testing.assert_allclose(pp.lle_project(far, bank, blend=0.0), far, atol=1e-6)


def test_one_euro_removes_jitter_at_rest_and_lags_less_with_beta():
    rng = np.random.default_rng(2)
    jitter = 1.0 + rng.normal(scale=0.1, size=200)
    out = pp.one_euro_filter(jitter, min_cutoff=1.0, beta=0.0)
    assert np.std(out[25:]) < 0.5 * np.std(jitter[25:])
    ramp = np.arange(100) * 0.2  # a fast, steady move
    lag_plain = np.abs(pp.one_euro_filter(ramp, min_cutoff=1.0, beta=0.0) - ramp)[50:].mean()
    lag_beta = np.abs(pp.one_euro_filter(ramp, min_cutoff=1.0, beta=1.0) - ramp)[50:].mean()
    assert lag_beta < 0.5 * lag_plain
    const = np.full((30, 2), 3.0)
    np.testing.assert_allclose(pp.one_euro_filter(const), const)


def test_zero_phase_one_euro_does_not_lag_and_keeps_a_short_closure():
    """Forwards then backwards: a bump's peak stays where it is (the causal filter moves it later),
    and a 3-frame dip to zero (lips closing on a "p") keeps more of its depth at the speak default."""
    t = np.arange(100, dtype=float)
    bump = np.exp(-0.5 * ((t - 50) / 4) ** 2)
    causal = pp.one_euro_filter(bump, min_cutoff=1.5, beta=0.0)
    both = pp.one_euro_filter(bump, min_cutoff=1.5, beta=0.0, zero_phase=True)
    assert np.argmax(causal) >= 52 and abs(int(np.argmax(both)) - 50) <= 1
    speech = np.full(60, 0.1)
    speech[30:33] = 0.0
    cfg = pp.PostConfig()
    kept = pp.one_euro_filter(speech, min_cutoff=cfg.euro_min_cutoff, beta=cfg.euro_beta, zero_phase=True)
    old = pp.one_euro_filter(speech, min_cutoff=1.5, beta=0.5)
    assert np.argmin(kept) == 31 and np.argmin(old) >= 32  # the causal filter closes late...
    assert kept.min() < 0.6 * old.min()  # ...and not as far


def test_emotion_keeps_its_size_and_the_lips_keep_the_neutral_dynamics():
    T = 100
    rng = np.random.default_rng(0)
    bank = rng.normal(scale=0.01, size=(200, 68, 3)).astype(np.float32)  # a mostly still, neutral identity
    neutral = np.zeros((T, 68, 3), np.float32)
    neutral[:, 66, 1] = 0.02 * np.sin(np.arange(T) / 2)  # lips move fast
    disp = np.zeros((T, 68, 3), np.float32)
    disp[:, 48, 1] = -0.1  # a raised corner, far outside the bank's range
    disp[:, 66, 1] = 0.05 * np.sin(np.arange(T) / 2 + 1.0)  # fast lip noise from the LDM
    base, smooth = pp.postprocess(neutral, disp, bank, pp.PostConfig(blinks=False))
    motion = base + smooth
    assert motion[:, 48, 1].mean() == pytest.approx(-0.1, abs=0.01)  # LLE and the clamp did not pull it back
    assert np.corrcoef(motion[10:-10, 66, 1], neutral[10:-10, 66, 1])[0, 1] > 0.5
    assert np.abs(smooth[10:-10, 66, 1]).max() < 0.02  # the LDM's fast lip motion is filtered out


def test_blinks_close_the_upper_lids_periodically():
    motion = np.zeros((250, 68, 3), np.float32)
    motion[:, [41, 40, 47, 46], 1] = 0.1  # lower lids below the upper lids
    out = pp.add_blinks(motion, period=2.0)
    closing = out[:, LM68_UPPER_LID, 1].mean(1)
    assert closing.max() > 0.05 and (closing > 0.01).sum() >= 7 * 3


def test_postprocess_chain_shapes_and_clamping():
    rng = np.random.default_rng(3)
    bank = rng.normal(scale=0.05, size=(100, 68, 3)).astype(np.float32)
    em = rng.normal(scale=0.05, size=(40, 68, 3)).astype(np.float32) + 10.0  # absurd values
    out, disp = pp.postprocess(em, np.zeros_like(em), bank, pp.PostConfig(blinks=False))
    assert np.all(disp == 0)
    assert out.shape == (40, 68, 3) and out.dtype == np.float32
    span = bank.max(0) - bank.min(0)
    assert np.all(out <= bank.max(0) + 0.5 * span + 1e-5)


def still_then_moving_poses():
    T = 120
    rot = np.tile(np.eye(3), (T, 1, 1))
    t = np.zeros((T, 3))
    t[60:, 0] = np.cumsum(np.full(60, 2.0))  # moves from frame 60 on
    t[60:, 1] = 5 * np.sin(np.arange(60) / 3)
    return compose_pose(np.ones(T), rot, t)


def test_idle_segments_find_the_still_stretch():
    poses = still_then_moving_poses()
    segs = find_idle_segments(poses, face_size=100.0, min_frames=15)
    start, end = segs[0]
    assert end - start >= 15 and end <= 64


def test_sampled_poses_rest_during_silence():
    poses = still_then_moving_poses()
    active = np.ones(150, bool)
    active[50:100] = False
    out = sample_poses(poses, active, face_size=100.0)
    assert out.shape == (150, 4, 4)
    speed = pose_speed(out, 100.0)
    assert speed[60:100].mean() < 0.2 * speed[:50].mean()
