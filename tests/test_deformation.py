"""The landmark-driven deformation of the head NeRF: known answers and an unseen expression."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emogene_cli import geometry
from emogene_cli.models.renderer import LandmarkDeformation, RendererConfig, head_box
from emogene_cli.render.fitting import train_renderer


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _face(n: int = 478, seed: int = 0) -> np.ndarray:
    """A curved sheet of 478 points, 20 x 24 units, like a face's front (z towards the back at the sides)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform([-10, -12], [10, 12], size=(n, 2))
    z = 0.04 * (xy ** 2).sum(-1)
    return np.concatenate([xy, z[:, None]], -1)


def _deformation(ms: np.ndarray, iod: float = 8.0, **kw) -> LandmarkDeformation:
    cfg = dataclasses.replace(RendererConfig.preset("tiny"), **kw)
    lo, hi = head_box(ms, cfg)
    return LandmarkDeformation(ms, lo, hi, iod, cfg)


def test_a_pure_translation_of_the_face_moves_points_on_it_back_by_the_translation():
    ms = _face()
    deform = _deformation(ms)
    shift = np.array([0.8, -0.5, 0.2])
    disp = torch.tensor(np.tile(shift, (478, 1)), dtype=torch.float32)[None]
    # points on the observed face: landmarks and points between them
    q_mesh = torch.tensor(ms[:468] + shift, dtype=torch.float32)
    from scipy.spatial import cKDTree

    _, nn_idx = cKDTree(ms[:468]).query(ms[:468], k=2)
    mid = torch.tensor((ms[:468] + ms[nn_idx[:, 1]]) / 2 + shift, dtype=torch.float32)  # between neighbours
    inner = mid[(mid[:, :2].abs() < 8).all(1)]  # away from the sheet's border
    for q in (q_mesh, inner):
        np.testing.assert_allclose(deform(q, disp).numpy(), (q - torch.tensor(shift, dtype=torch.float32)).numpy(), atol=1e-4)


def test_a_mouth_corner_displacement_moves_the_corner_and_leaves_the_forehead_still():
    ms = _face()
    ms[61] = [-5.0, 8.0, 1.0]  # MediaPipe's left mouth corner; y points down
    ms[10] = [0.0, -11.0, 4.8]  # forehead
    deform = _deformation(ms)
    # the corner and the skin around it go out and up (a smile), fading over 3 units
    r = np.linalg.norm(ms[:, :2] - ms[61, :2], axis=-1)
    disp = (np.clip(1.0 - r / 3.0, 0.0, None)[:, None] * np.array([-1.0, -0.8, 0.0]))[None].astype(np.float32)
    q = torch.tensor(np.stack([ms[61] + disp[0, 61], ms[10]]), dtype=torch.float32)
    out = deform(q, torch.from_numpy(disp)).numpy()
    np.testing.assert_allclose(out[0], ms[61], atol=0.15)  # the observed corner maps to the neutral corner
    np.testing.assert_allclose(out[1], ms[10], atol=1e-6)  # the forehead does not move
    far = torch.tensor([[0.0, -20.0, 30.0]])  # above the face (hair): rigid
    np.testing.assert_allclose(deform(far, torch.from_numpy(disp)).numpy(), far.numpy(), atol=1e-6)


def test_the_rendering_map_matches_the_exact_deformation():
    ms = _face()
    deform = _deformation(ms, deform_map=160)
    rng = np.random.default_rng(3)
    r = np.linalg.norm(ms[:, :2] - np.array([-4.0, 6.0]), axis=-1)
    disp = torch.tensor((np.clip(1 - r / 4, 0, None)[:, None] * [0.8, -1.2, 0.3])[None], dtype=torch.float32)  # a smile-like bulge
    q = torch.tensor(ms[:468] + rng.normal(scale=0.3, size=(468, 3)), dtype=torch.float32)
    exact = deform(q, disp)
    mapped = deform.apply_map(q, deform.displacement_map(disp[0]))
    assert (mapped - exact).abs().max() < 0.05  # units of a 20-unit face: a few hundredths of a pixel at 256 px


def test_training_looks_each_point_up_in_its_own_frames_map():
    ms = _face()
    deform = _deformation(ms, deform_map=160)
    rng = np.random.default_rng(4)
    r = np.linalg.norm(ms[:, :2] - np.array([-4.0, 6.0]), axis=-1)
    bulge = np.clip(1 - r / 4, 0, None)[:, None]
    disp = torch.tensor(np.stack([bulge * [0.8, -1.2, 0.3], bulge * [-0.5, 0.9, 0.0], np.zeros((478, 3))]), dtype=torch.float32)
    maps = deform.displacement_maps(disp)  # [3, m, m, 3]
    assert maps.shape == (3, 160, 160, 3)
    q = torch.tensor(ms[rng.integers(0, 468, 600)] + rng.normal(scale=0.3, size=(600, 3)), dtype=torch.float32)
    q = torch.cat([q, torch.tensor([[0.0, -40.0, 0.0], [40.0, 40.0, 1.0]])])  # outside the map: its border
    frame = torch.tensor(rng.integers(0, 3, len(q)))
    looked_up = deform.apply_maps(q, maps, frame)
    for f in range(3):  # the same bilinear look-up as rendering's grid_sample in that frame's map
        sel = frame == f
        np.testing.assert_allclose(looked_up[sel].numpy(), deform.apply_map(q[sel], maps[f].permute(2, 0, 1)).numpy(), atol=1e-5)
    assert (looked_up - deform(q, disp, frame)).abs().max() < 0.05  # and close to the exact deformation
    assert torch.equal(deform.apply_maps(q, maps, None), deform.apply_maps(q, maps, torch.zeros_like(frame)))


def test_per_point_frames_pick_their_own_displacement():
    ms = _face()
    deform = _deformation(ms)
    disp = torch.zeros(2, 478, 3)
    disp[1] += torch.tensor([0.5, 0.0, 0.0])
    q = torch.tensor(ms[:2], dtype=torch.float32)
    out = deform(q + torch.tensor([[0.0, 0, 0], [0.5, 0, 0]]), disp, torch.tensor([0, 1]))
    np.testing.assert_allclose(out.numpy(), q.numpy(), atol=1e-4)


# ---- a renderer trained on one expression renders a larger, unseen one -------------------


SIZE = 32


def _jaw_clip(openings: np.ndarray) -> SimpleNamespace:
    """A flat grey "face" with a dark horizontal "mouth" bar on its lower half, over a blue background.

    The 478 landmarks cover the face; in each frame the lower half (y > 0 in the head frame)
    moves down by ``openings[t]`` pixels, like a jaw, and the image shows the bar moved with it.
    """
    rng = np.random.default_rng(1)
    xy = rng.uniform([-9, -9], [9, 9], size=(478, 2))
    ms = np.concatenate([xy, 0.05 * (xy ** 2).sum(-1, keepdims=True)], -1)
    iod = 8.0
    centre = np.array([SIZE / 2, SIZE / 2 - 3, 0.0])
    bg = np.zeros((SIZE, SIZE, 3), np.uint8)
    bg[...] = (40, 60, 160)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    images, labels, canonical = [], [], []
    for m in openings:
        img, lab = bg.copy(), np.zeros((SIZE, SIZE), np.uint8)
        y0 = yy - centre[1]
        lower = y0 > 0
        src_y = np.where(lower, y0 - m, y0)  # where each pixel's surface came from in the neutral face
        face = (np.abs(xx - centre[0]) < 9) & (src_y > -9) & (src_y < 9) & ~(lower & (y0 < m))
        img[face] = (200, 200, 200)
        bar = face & (np.abs(src_y - 4.0) < 1.0) & (np.abs(xx - centre[0]) < 5)
        img[bar] = (30, 20, 20)
        lab[face] = 2
        images.append(img)
        labels.append(lab)
        c = ms.copy()
        c[c[:, 1] > 0, 1] += m
        canonical.append(c)
    pose = geometry.compose_pose(1.0, np.eye(3), centre)
    return SimpleNamespace(images=np.stack(images), labels=np.stack(labels), background=bg,
                           poses=np.repeat(pose[None], len(openings), 0), canonical=np.stack(canonical).astype(np.float32),
                           mean_shape=ms, iod=iod)


def _bar_row(image: np.ndarray) -> float:
    """Row (pixels) of the dark bar's centre in the middle columns."""
    strip = image[:, SIZE // 2 - 2: SIZE // 2 + 2].astype(np.float64)
    dark = np.clip(150.0 - strip.mean(-1), 0, None) * (strip[..., 2] < 110)  # dark, and not the blue background
    dark = dark.mean(1)
    return float((dark * (np.arange(SIZE) + 0.5)).sum() / dark.sum())


def test_a_tiny_renderer_moves_an_unseen_larger_expression(tmp_path):
    openings = np.random.default_rng(2).uniform(0.0, 0.8, 60)  # small jaw motion only
    data = _jaw_clip(openings)
    cfg = dataclasses.replace(RendererConfig.preset("tiny"), resolution=SIZE, rays_per_batch=1024, steps=300,
                              occupancy_warmup=100, box_bottom=0.5)
    model, _ = train_renderer(data, cfg, checkpoint=tmp_path / "ckpt.safetensors")
    unseen = _jaw_clip(np.array([0.0, 4.0]))  # 5x the largest opening it was trained on
    motion = geometry.dense_motion(unseen.canonical, unseen.mean_shape, unseen.iod)
    rest, wide = list(model.render_frames(unseen.poses, motion, unseen.background))
    assert abs(_bar_row(rest) - _bar_row(unseen.images[0])) < 1.0  # sanity: it learned the face
    moved = _bar_row(wide) - _bar_row(rest)
    assert moved > 2.5, f"the mouth bar moved {moved:.2f} px for a 4 px jaw displacement"
