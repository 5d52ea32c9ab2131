import numpy as np
import pytest

from emogene_cli.geometry import LM68_UPPER_LID, compose_pose, mouth_opening
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


def test_lle_project_reconstructs_from_the_k_nearest_frames():
    rng = np.random.default_rng(3)
    bank = rng.normal(size=(40, 68, 3))
    motion = rng.normal(size=(6, 68, 3))
    x, b = motion.reshape(6, -1), bank.reshape(40, -1)
    nearest = np.argsort(((x[:, None] - b[None]) ** 2).sum(-1), axis=1)[:, :4]  # brute force
    w = pp.lle_weights(x, b[nearest])
    expected = 0.5 * x + 0.5 * np.einsum("tk,tkd->td", w, b[nearest])
    np.testing.assert_allclose(pp.lle_project(motion, bank, k=4, blend=0.5).reshape(6, -1), expected, atol=1e-5)
    one = pp.lle_project(motion, bank, k=1, blend=1.0).reshape(6, -1)  # k = 1: the nearest frame itself
    np.testing.assert_allclose(one, b[nearest[:, 0]], atol=1e-5)
    few = pp.lle_project(motion, bank[:3], k=10, blend=0.5).reshape(6, -1)  # k beyond the bank: all of it
    all3 = np.repeat(b[None, :3], 6, 0)
    expected = 0.5 * x + 0.5 * np.einsum("tk,tkd->td", pp.lle_weights(x, all3), all3)
    np.testing.assert_allclose(few, expected, atol=1e-5)


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


def opening_motion(rng, T=300):
    """Motion ``[T, 68, 3]`` whose inner lips open by a smooth ``a_t >= 0`` (lower lip and chin move
    down) while a brow point moves on its own; the mean shape has the lips closed (iod 1)."""
    from scipy.ndimage import gaussian_filter1d

    a = np.clip(gaussian_filter1d(rng.normal(size=T), 3.0) * 3.0, 0.0, None) * 0.05
    motion = np.zeros((T, 68, 3), np.float32)
    motion[:, 66, 1] = a
    motion[:, 57, 1] = a
    motion[:, 8, 1] = 0.8 * a  # the chin
    motion[:, 19, 1] = 0.01 * rng.normal(size=T)  # a brow: not the mouth's
    return motion, a


def test_amplify_mouth_scales_the_opening_about_the_closed_posture_and_nothing_else():
    rng = np.random.default_rng(0)
    bank, a = opening_motion(rng)
    mean68 = np.zeros((68, 3), np.float32)
    rest = pp.mouth_rest(bank, mean68, 1.0)
    assert rest[66, 1] == pytest.approx(0.0, abs=1e-6)  # the most closed frames: lips together
    out = pp.amplify_mouth(bank, rest, 1.5)
    np.testing.assert_allclose(out[:, 66, 1], 1.5 * a, atol=1e-6)
    np.testing.assert_allclose(out[:, 8, 1], 1.5 * 0.8 * a, atol=1e-6)
    np.testing.assert_array_equal(out[:, 19], bank[:, 19])  # the brow does not move
    closed = a == 0
    assert closed.any() and np.all(out[closed] == bank[closed])  # a "p"/"b"/"m" stays closed
    assert pp.amplify_mouth(bank, rest, 1.0) is bank
    with pytest.raises(ValueError, match="mouth_rest"):
        pp.postprocess_neutral(bank, bank, mouth_gain=1.5)


def test_amplify_mouth_about_the_mean_keeps_the_typical_opening_and_stops_at_the_closed_posture():
    rng = np.random.default_rng(2)
    bank, a = opening_motion(rng)
    rest = pp.mouth_rest(bank, np.zeros((68, 3), np.float32), 1.0)
    pivot = bank.mean(0)
    motion = bank.copy()
    motion[5, 66, 1] = -0.01  # a frame whose lips already press past the closed posture
    free = pp.amplify_mouth(motion, pivot, 1.5)
    out = pp.amplify_mouth(motion, pivot, 1.5, closed=rest)
    gap = out[:, 66, 1] - out[:, 62, 1]
    assert (free[:, 66, 1] - free[:, 62, 1]).min() < -0.01  # unbounded, the lips would cross
    assert gap[np.arange(len(gap)) != 5].min() >= rest[66, 1] - rest[62, 1] - 1e-7  # bounded: never closer than at rest
    np.testing.assert_array_equal(out[5], motion[5])  # already closer: left as it was
    wide = (a > pivot[66, 1]) & (np.arange(len(a)) != 5)  # above the mean: 1.5 times as far from it, the chin along
    np.testing.assert_allclose(out[wide, 66, 1], pivot[66, 1] + 1.5 * (a[wide] - pivot[66, 1]), atol=1e-6)
    np.testing.assert_allclose(out[wide, 8, 1], pivot[8, 1] + 1.5 * (0.8 * a[wide] - pivot[8, 1]), atol=1e-6)
    np.testing.assert_array_equal(out[:, 19], motion[:, 19])
    # frames that scaling would close past the floor land on it, the whole mouth moved by the same fraction
    floored = (free[:, 66, 1] < 0) & (a > 0) & (np.arange(len(a)) != 5)
    assert floored.any()
    np.testing.assert_allclose(gap[floored], 0.0, atol=1e-6)
    t = (out[floored, 66, 1] - motion[floored, 66, 1]) / (free[floored, 66, 1] - motion[floored, 66, 1])
    t8 = (out[floored, 8, 1] - motion[floored, 8, 1]) / (free[floored, 8, 1] - motion[floored, 8, 1])
    assert np.all((t > 0) & (t < 1)) and np.allclose(t8, t, atol=1e-5)


def test_a_mouth_gain_below_one_narrows_about_the_closed_posture_and_keeps_closures():
    rng = np.random.default_rng(3)
    bank, a = opening_motion(rng)
    rest = pp.mouth_rest(bank, np.zeros((68, 3), np.float32), 1.0)
    out = pp.postprocess_neutral(bank, bank, pp.PostConfig(blinks=False), mouth_gain=0.8, mouth_rest=rest)
    plain = pp.postprocess_neutral(bank, bank, pp.PostConfig(blinks=False))
    np.testing.assert_allclose(out[:, 66, 1], rest[66, 1] + 0.8 * (plain[:, 66, 1] - rest[66, 1]), atol=1e-6)


def test_measure_mouth_gain_is_the_real_over_the_predicted_spread_after_post_processing():
    rng = np.random.default_rng(1)
    bank, _ = opening_motion(rng, 600)
    real = bank[400:]  # frames of the identity's own range
    mean68 = np.zeros((68, 3), np.float32)
    rest = pp.mouth_rest(bank, mean68, 1.0)
    narrow = rest + 0.8 * (real - rest)  # a model that opens the mouth 0.8 times as wide
    gain = pp.measure_mouth_gain(narrow, real, bank, mean68, 1.0)
    assert 1.25 <= gain <= 1.45  # 1 / 0.8, and a little more for the smoothing of the chain itself
    assert pp.measure_mouth_gain(rest + 0.3 * (real - rest), real, bank, mean68, 1.0) == pp.MOUTH_GAIN_RANGE[1]
    assert pp.measure_mouth_gain(np.zeros_like(real), real, bank, mean68, 1.0) == 1.0  # a still prediction
    # speak's chain with that gain opens the mouth as wide as the real one
    base, _ = pp.postprocess(narrow, np.zeros_like(narrow), bank, pp.PostConfig(blinks=False), mouth_gain=gain, mouth_rest=rest)
    plain, _ = pp.postprocess(narrow, np.zeros_like(narrow), bank, pp.PostConfig(blinks=False))
    opening = [mouth_opening(m).std() for m in (base, plain, real)]  # the mean shape is 0, iod 1
    assert opening[1] < 0.8 * opening[2] and opening[0] == pytest.approx(opening[2], rel=0.05)


def test_deepen_closures_stretches_the_low_tail_of_the_lip_gap_toward_the_closed_posture():
    rng = np.random.default_rng(4)
    bank, a = opening_motion(rng, 400)
    part = 0.03 * rng.random(len(bank)).astype(np.float32)  # lips that part a little, by varying amounts, at rest
    bank[:, 66, 1] += part
    bank[:, 57, 1] += part
    rest = pp.mouth_rest(bank, np.zeros((68, 3), np.float32), 1.0)
    motion = bank[:200].copy()
    motion[7, 66, 1] = rest[66, 1] - 0.005  # a frame already closer than the closed posture
    out = pp.deepen_closures(motion, bank, rest, quantile=0.25, slope=1.5)
    gap, new = motion[:, 66, 1] - motion[:, 62, 1], out[:, 66, 1] - out[:, 62, 1]
    start, closed = np.quantile(bank[:, 66, 1] - bank[:, 62, 1], 0.25), rest[66, 1] - rest[62, 1]
    assert start > closed + 0.005
    high = gap >= start
    np.testing.assert_array_equal(out[high], motion[high])  # above the lower quartile: untouched
    np.testing.assert_array_equal(out[7], motion[7])  # past the closed posture already: untouched
    low = (gap < start) & (gap > closed)
    assert low.sum() >= 10
    np.testing.assert_allclose(new[low], np.maximum(start - 1.5 * (start - gap[low]), closed), atol=1e-6)
    assert (new[low] < gap[low]).all() and new.min() >= min(closed, gap.min()) - 1e-7
    # the lips and the chin move toward the closed posture by one fraction; the brow stays
    s66 = (out[low, 66, 1] - rest[66, 1]) / (motion[low, 66, 1] - rest[66, 1])
    s8 = (out[low, 8, 1] - rest[8, 1]) / (motion[low, 8, 1] - rest[8, 1])
    np.testing.assert_allclose(s8, s66, atol=1e-4)
    np.testing.assert_array_equal(out[:, 19], motion[:, 19])
    order = np.argsort(gap[low], kind="stable")  # a monotone map: the opening's order in time is kept
    assert np.all(np.diff(new[low][order]) >= -1e-7)
    assert pp.deepen_closures(motion, bank, rest, slope=1.0) is motion
    # speak's chain applies it with the identity's closed posture, and not without one
    cfg = pp.PostConfig(blinks=False)
    deep = pp.postprocess_neutral(motion, bank, cfg, mouth_rest=rest)
    flat = pp.postprocess_neutral(motion, bank, pp.PostConfig(blinks=False, closure_slope=1.0), mouth_rest=rest)
    plain = pp.postprocess_neutral(motion, bank, cfg)
    p5 = [np.percentile(m[:, 66, 1] - m[:, 62, 1], 5) for m in (deep, flat, plain)]
    assert p5[0] < p5[1] - 0.001 and p5[1] == pytest.approx(p5[2], abs=1e-7)
