"""Tracker-gain calibration: the warp moves image content as told, the gain is recovered."""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest

from emogene_cli.emotion.tracker_gain import (
    REGIONS68, apply_gain, blend_field, measure_tracker_gain, region_of_landmarks, warp_by_landmarks,
)


def _face(size: int = 160, seed: int = 0):
    """A textured image and a 478-point 'mesh': a jittered grid over the middle of the image.

    Landmark 33 and 263 (the eye corners the calibration measures the face size by) are
    placed 60 px apart.
    """
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (size // 4, size // 4, 3)).astype(np.float32)
    image = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    g = np.stack(np.meshgrid(np.linspace(40, 120, 22), np.linspace(40, 120, 22)), -1).reshape(-1, 2)[:478]
    pts = g + rng.normal(0, 0.5, g.shape)
    pts[33], pts[263] = (50.0, 70.0), (110.0, 70.0)
    mean_shape = np.concatenate([pts, np.zeros((478, 1))], 1)
    return image, pts, mean_shape


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b))
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 9, 5, 5, 1.1, 0)


def test_warp_moves_the_content_at_the_landmarks_and_leaves_far_pixels():
    image, pts, _ = _face()
    disp = np.zeros_like(pts)
    group = np.linalg.norm(pts - (80, 80), axis=1) < 15
    disp[group] = (0.0, -3.0)  # up by 3 px
    out = warp_by_landmarks(image, pts, disp, sigma=3.0)
    flow = _flow(image, out)
    moved = flow[78:83, 78:83].reshape(-1, 2).mean(0)
    assert moved[1] == pytest.approx(-3.0, abs=0.4) and abs(moved[0]) < 0.4
    assert np.array_equal(out[:30, :30], image[:30, :30])  # far from the moved landmarks: untouched
    assert np.array_equal(warp_by_landmarks(image, pts, np.zeros_like(pts), 3.0), image)


def test_blend_field_reproduces_a_uniform_displacement_between_landmarks():
    _, pts, _ = _face()
    disp = np.tile([1.5, -2.0], (len(pts), 1))
    inner = blend_field(np.array([[80.0, 80.0], [61.3, 97.1]]), pts, disp, sigma=3.0)
    assert np.allclose(inner, [1.5, -2.0], atol=0.05)


def test_blend_field_is_the_normalised_gaussian_blend_far_from_the_origin_too():
    rng = np.random.default_rng(1)
    pts = rng.uniform(900, 1100, (478, 2))  # a face in the corner of a large frame: big coordinates
    disp = rng.normal(0, 3, (478, 2))
    query = rng.uniform(880, 1120, (3000, 2))
    sigma = 4.0
    w = np.exp(-((query[:, None] - pts[None]) ** 2).sum(-1) / (2 * sigma**2))  # float64, the definition
    expected = w @ disp / (w.sum(1, keepdims=True) + np.exp(-4.5))
    np.testing.assert_allclose(blend_field(query, pts, disp, sigma), expected, atol=2e-3)


def test_the_gain_of_a_tracker_that_reads_part_of_the_motion_is_recovered():
    """A fake tracker reads the motion of the image content (optical flow) at every landmark
    and reports half of it on the 'brows' region and all of it elsewhere."""
    image, pts, mean_shape = _face()
    region = region_of_landmarks(mean_shape, iod=60.0)
    brows = list(REGIONS68).index("brows")
    assert (region == brows).any()
    true_gain = np.where(region == brows, 0.5, 1.0)[:, None]
    landmarks = np.concatenate([pts, np.zeros((478, 1))], 1)[None]

    def detect(rgb):
        f = _flow(image, rgb)
        xy = np.clip(np.round(pts).astype(int), 0, image.shape[0] - 1)
        seen = pts + true_gain * f[xy[:, 1], xy[:, 0]]
        return np.concatenate([seen, np.zeros((478, 1))], 1)

    # one pattern: every point 0.05 inter-ocular distances (3 px) down, one 0.03 left
    patterns = np.zeros((1, 2, 478, 3))
    patterns[0, 0, :, 1] = 0.05
    patterns[0, 1, :, 0] = -0.03
    pose = np.eye(4)
    gain = measure_tracker_gain(image[None], landmarks, pose[None], region, patterns, 60.0, detect)
    gx, gy = gain.regions["brows"]
    assert gy == pytest.approx(0.5, abs=0.1) and gx == pytest.approx(0.5, abs=0.12)
    others = [v for k, v in gain.regions.items() if k != "brows" and (region == list(REGIONS68).index(k)).any()]
    assert others and all(v[1] == pytest.approx(1.0, abs=0.12) for v in others)
    assert gain.frames == 1
    per = gain.per_landmark
    assert per.shape == (478, 3) and np.all(per[:, 2] == 1.0)
    assert np.allclose(per[region == brows, :2], [gx, gy]) and np.all(per[region < 0] == 1.0)


def test_a_region_that_does_not_move_keeps_gain_one_and_no_face_is_an_error():
    image, pts, mean_shape = _face()
    region = region_of_landmarks(mean_shape, iod=60.0)
    landmarks = np.concatenate([pts, np.zeros((478, 1))], 1)[None]
    still = np.zeros((1, 1, 478, 3))
    gain = measure_tracker_gain(image[None], landmarks, np.eye(4)[None], region, still, 60.0, lambda rgb: landmarks[0])
    assert all(v == (1.0, 1.0) for v in gain.regions.values())
    with pytest.raises(ValueError, match="no face"):
        measure_tracker_gain(image[None], landmarks, np.eye(4)[None], region, still, 60.0, lambda rgb: None)


def test_apply_gain_turns_tracked_motion_into_pixel_motion():
    disp = np.ones((4, 478, 3), np.float32)
    gain = np.ones((478, 3), np.float32)
    gain[:10, 1] = 0.5
    out = apply_gain(disp, gain)
    assert np.allclose(out[:, :10, 1], 2.0) and np.allclose(out[:, 10:], 1.0) and np.allclose(out[:, :, 0], 1.0)
    assert apply_gain(disp, None) is disp


def test_speak_divides_the_emotion_by_the_gain_and_keeps_the_emotion_out_of_the_lid_code():
    """emotional_motion: the lifted emotional displacement is divided by the identity's gain;
    the renderer's code motion is the same dense motion except at the eyelids and the mouth
    corners, where it keeps the neutral motion."""
    import torch

    from emogene_cli import geometry
    from emogene_cli.emotion.motion_to_emotion import CODE_FROM_NEUTRAL_68, emotional_motion
    from emogene_cli.emotions import EMOTIONS
    from emogene_cli.models.ldm import LandmarkDeformationModel, LDMConfig

    rng = np.random.default_rng(0)
    T = 30
    bank = (rng.normal(size=(80, 68, 3)) * 0.01).astype(np.float32)
    lift_w = np.zeros((478 * 3, 68 * 3), np.float32)
    lift_w[(geometry.LM68_FROM_LM478[:, None] * 3 + np.arange(3)).ravel(), np.arange(68 * 3)] = 1.0  # 68 points only
    ldm = LandmarkDeformationModel(LDMConfig())
    with torch.no_grad():
        ldm.lift.copy_(torch.from_numpy(lift_w))
        for p in ldm.mlp.parameters():
            p.zero_()
        ldm.mlp[-1].bias.fill_(0.05)  # every emotion: +0.05 on every coordinate
    gain = np.ones((478, 3), np.float32)
    gain[:, 1] = 0.5
    weights = np.zeros((T, len(EMOTIONS)), np.float32)
    weights[:, EMOTIONS.index("surprised")] = 1.0
    neutral = bank[:T].copy()
    outs = {}
    for g in (None, gain):
        speaker = types.SimpleNamespace(bank_motion=bank, lift=(lift_w, None), tracker_gain=g, emotion_gain=None, mouth_gain=1.0, mouth_rest=None)
        outs[g is None] = emotional_motion(speaker, neutral, weights, ldm=ldm)
    _, _, dense_raw, _ = outs[True]
    _, _, dense, code = outs[False]
    idx = geometry.LM68_FROM_LM478
    base = geometry.apply_lift(outs[False][1] - 0.05, lift_w)  # the post-processed neutral, lifted
    d_raw, d = dense_raw[:, idx] - base[:, idx], dense[:, idx] - base[:, idx]
    assert np.allclose(d_raw, 0.05, atol=0.02)
    assert np.allclose(d[..., 1], 2 * d_raw[..., 1], atol=1e-4) and np.allclose(d[..., 0], d_raw[..., 0], atol=1e-4)
    lids = idx[CODE_FROM_NEUTRAL_68]
    others = np.setdiff1d(np.arange(478), lids)
    assert np.allclose(code[:, others], dense[:, others]) and not np.allclose(code[:, lids], dense[:, lids])
    assert np.allclose(code[:, lids], base[:, lids], atol=1e-4)


def test_a_stored_gain_is_used_until_the_ldm_the_dataset_or_the_size_changes(tmp_path, monkeypatch):
    """identity_tracker_gain loads the stored calibration; a new LDM, a re-preprocessed dataset or
    another size measures again."""
    import os

    import torch

    from emogene_cli.emotion import tracker_gain as tg
    from emogene_cli.store import Store, save_artifact

    store = Store(tmp_path)
    store.dataset_path("may").parent.mkdir(parents=True)
    store.dataset_path("may").write_bytes(b"frames")
    ldm = torch.nn.Linear(2, 2)
    measured = []

    def fake_calibrate(store_, name, ldm_, *, size, progress=None):
        measured.append(size)
        gain = np.full((478, 3), 0.5, np.float32)
        save_artifact(tg.tracker_gain_path(store_, name), {"per_landmark": gain}, producer="test",
                      extra={"calibrated_for": tg.calibration_stamp(store_, name, ldm_, size)})
        return types.SimpleNamespace(per_landmark=gain)

    monkeypatch.setattr(tg, "calibrate_identity", fake_calibrate)
    assert tg.identity_tracker_gain(store, "may", ldm, size=256)[0, 0] == 0.5 and measured == [256]
    tg.identity_tracker_gain(store, "may", ldm, size=256)
    assert measured == [256]  # stored: not measured again
    tg.identity_tracker_gain(store, "may", ldm, size=512)
    assert measured == [256, 512]
    with torch.no_grad():
        ldm.weight.add_(1.0)
    tg.identity_tracker_gain(store, "may", ldm, size=512)
    assert measured == [256, 512, 512]
    os.utime(store.dataset_path("may"), (1, 1))  # preprocessed again
    tg.identity_tracker_gain(store, "may", ldm, size=512)
    assert measured == [256, 512, 512, 512]
