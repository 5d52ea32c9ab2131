import numpy as np
import pytest

from emogene_cli import geometry as g


def random_rotation(rng):
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(rng.normal(size=3) * 0.3).as_matrix()


def test_umeyama_recovers_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(40, 3))
    R = random_rotation(rng)
    dst = 2.5 * src @ R.T + np.array([10.0, -3.0, 7.0])
    s, r, t = g.umeyama(src, dst)
    assert s == pytest.approx(2.5)
    np.testing.assert_allclose(r, R, atol=1e-9)
    np.testing.assert_allclose(t, [10.0, -3.0, 7.0], atol=1e-9)


def test_umeyama_batched_and_reflection_free():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(5, 30, 3))
    dst = src * np.array([-1.0, 1.0, 1.0])  # a reflection cannot be matched by a rotation
    s, r, t = g.umeyama(src, dst)
    assert r.shape == (5, 3, 3)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)


def test_pose_vector_round_trip():
    rng = np.random.default_rng(2)
    pose = g.compose_pose(np.array([1.7, 0.4]), np.stack([random_rotation(rng) for _ in range(2)]), rng.normal(size=(2, 3)))
    np.testing.assert_allclose(g.vector_to_pose(g.pose_to_vector(pose)), pose, atol=1e-9)
    s, r, t = g.decompose_pose(pose)
    np.testing.assert_allclose(s, [1.7, 0.4])


def test_poses_canonical_and_motion_of_a_posed_mean_shape():
    rng = np.random.default_rng(3)
    mean = rng.normal(size=(478, 3)) * 30
    mean -= mean[g.RIGID_LM478].mean(0)
    poses = g.compose_pose(np.array([1.0, 1.2, 0.8]), np.stack([random_rotation(rng) for _ in range(3)]), rng.normal(size=(3, 3)) * 50)
    frames = g.transform_points(poses, np.broadcast_to(mean, (3, 478, 3)))
    frames[1, g.LM68_FROM_LM478[62]] += 0.0  # unchanged
    est = g.estimate_poses(frames, mean)
    np.testing.assert_allclose(est, poses, atol=1e-6)
    canon = g.to_canonical(frames, est)
    np.testing.assert_allclose(canon, np.broadcast_to(mean, canon.shape), atol=1e-6)
    motion = g.motion68(canon, mean, g.interocular_distance(mean))
    assert motion.shape == (3, 68, 3) and np.abs(motion).max() < 1e-6


def test_mean_shape_is_pose_invariant():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(478, 3)) * 30
    poses = g.compose_pose(rng.uniform(0.8, 1.2, 10), np.stack([random_rotation(rng) for _ in range(10)]), rng.normal(size=(10, 3)) * 20)
    frames = g.transform_points(poses, np.broadcast_to(base, (10, 478, 3)))
    mean = g.mean_shape(frames)
    s, r, t = g.umeyama(mean, base)
    np.testing.assert_allclose(s * mean @ r.T + t, base, atol=1e-6)


def test_lm68_subset_is_68_unique_points():
    assert len(g.LM68_FROM_LM478) == 68 and len(set(g.LM68_FROM_LM478.tolist())) == 68
    assert g.LM68_FROM_LM478.max() < 478


def test_lift_recovers_a_linear_dense_map_and_keeps_the_68_points():
    rng = np.random.default_rng(0)
    sparse = rng.normal(size=(400, 68, 3)).astype(np.float32)
    true_w = rng.normal(size=(478 * 3, 68 * 3)) * 0.1
    dense = (sparse.reshape(400, -1) @ true_w.T + 0.5).reshape(400, 478, 3)
    dense[:, g.LM68_FROM_LM478] = sparse
    w, b = g.fit_lift(sparse, dense, ridge=1e-6)
    test = rng.normal(size=(5, 68, 3)).astype(np.float32)
    out = g.apply_lift(test, w, b)
    expect = (test.reshape(5, -1) @ true_w.T + 0.5).reshape(5, 478, 3)
    keep = np.setdiff1d(np.arange(478), g.LM68_FROM_LM478)
    np.testing.assert_allclose(out[:, keep], expect[:, keep], atol=1e-3)
    np.testing.assert_array_equal(out[:, g.LM68_FROM_LM478], test)


def test_pose_free_mouth_opening_does_not_change_with_the_head_pose():
    """The same lip gap under nods and turns: the image measure varies, the pose-free one does not."""
    rng = np.random.default_rng(5)
    mean = rng.normal(size=(478, 3)) * 30
    mean -= mean[g.RIGID_LM478].mean(0)
    upper, lower = g.LM68_FROM_LM478[62], g.LM68_FROM_LM478[66]
    mean[lower] = mean[upper] + np.array([0.0, 4.0, 6.0])  # the lower lip below and in front of the upper one
    gaps = np.linspace(0.0, 20.0, 12)
    shapes = np.repeat(mean[None], len(gaps), 0)
    shapes[:, lower, 1] += gaps  # the jaw opens
    poses = g.compose_pose(rng.uniform(0.8, 1.3, len(gaps)), np.stack([random_rotation(rng) for _ in gaps]),
                           rng.normal(size=(len(gaps), 3)) * 40)
    frames = g.transform_points(poses, shapes)
    truth = np.linalg.norm(shapes[:, upper] - shapes[:, lower], axis=-1) / g.interocular_distance(mean)
    np.testing.assert_allclose(g.mouth_opening_pose_free(frames, mean), truth, atol=1e-9)
    # the face's own mean shape when none is given: the scale cancels in the ratio
    np.testing.assert_allclose(g.mouth_opening_pose_free(frames), truth, atol=1e-6)
    image = g.mouth_opening_iod(frames[:, g.LM68_FROM_LM478])
    assert np.abs(image - truth).max() > 0.05  # foreshortening mixes the pose into the image measure
    # frames without a face (all zeros) give NaN, the others their gap
    frames[3] = 0.0
    got = g.mouth_opening_pose_free(frames, mean)
    assert np.isnan(got[3]) and np.allclose(np.delete(got, 3), np.delete(truth, 3), atol=1e-9)
    assert np.isnan(g.mouth_opening_pose_free(np.zeros((4, 478, 3)))).all()
