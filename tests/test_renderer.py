"""Tests of the talking-head renderer and its training (fast, CPU)."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emogene_cli import geometry
from emogene_cli.dataset import heldout_frames, split_frames
from emogene_cli.errors import MismatchError
from emogene_cli.models.renderer import (
    RendererConfig, TalkingHeadRenderer, composite, generate_rays, head_box, intersect_aabb, sample_stratified, volume_render,
)
from emogene_cli.render.fitting import evaluate_renderer, train_renderer
from emogene_cli.store import save_artifact


def _pose(scale: float = 1.0, rotvec=(0.0, 0.0, 0.0), t=(0.0, 0.0, 0.0)) -> torch.Tensor:
    vec = np.array([*rotvec, *t, math.log(scale)])
    return torch.as_tensor(geometry.vector_to_pose(vec), dtype=torch.float32)[None]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one intra-op thread is as fast, and it does not stall when
    another process keeps the other cores busy (OpenMP threads spin-waiting on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


UNIT_LO = torch.tensor([-1.0, -1.0, -1.0])
UNIT_HI = torch.tensor([1.0, 1.0, 1.0])


# ---- rays and box ----------------------------------------------------------------------


def test_ray_through_box_centre_identity_pose():
    o, d = generate_rays(torch.tensor([[0.0, 0.0]]), _pose())
    near, far, hit = intersect_aabb(o, d, UNIT_LO, UNIT_HI)
    assert hit.item()
    assert near.item() == pytest.approx(-1.0)
    assert far.item() == pytest.approx(1.0)


def test_scale_two_halves_the_head_frame_extent():
    pose = _pose(scale=2.0, t=(10.0, 20.0, 5.0))
    pixels = torch.tensor([[10.0, 20.0], [11.5, 20.0], [12.5, 20.0], [10.0, 17.6]])
    o, d = generate_rays(pixels, pose)
    near, far, hit = intersect_aabb(o, d, UNIT_LO, UNIT_HI)
    assert hit.tolist() == [True, True, False, False]
    # the unit box appears with half-size 2 in pixels: depth from 5 - 2 to 5 + 2
    assert near[0].item() == pytest.approx(3.0)
    assert far[0].item() == pytest.approx(7.0)
    assert d.norm(dim=-1)[0].item() == pytest.approx(0.5)


def test_rotated_pose_maps_ray_points_back_to_pixels():
    pose = _pose(scale=1.5, rotvec=(0.2, -0.4, 0.3), t=(30.0, 40.0, 0.0))
    pixels = torch.tensor([[30.5, 40.5], [31.0, 39.0]])
    o, d = generate_rays(pixels, pose)
    near, far, hit = intersect_aabb(o, d, UNIT_LO, UNIT_HI)
    assert hit.all()
    for tau in (near, far):
        q = o + tau[:, None] * d  # head-frame entry/exit points
        assert (q.abs().amax(-1) - 1.0).abs().max() < 1e-4  # on the box surface
        p = q @ pose[0, :3, :3].T + pose[0, :3, 3]  # back to camera pixels
        assert torch.allclose(p[:, :2], pixels, atol=1e-4)
        assert torch.allclose(p[:, 2], tau, atol=1e-4)


def test_head_box_contains_mean_shape_with_margins():
    rng = np.random.default_rng(0)
    ms = rng.normal(size=(478, 3)) * [50, 60, 30]
    cfg = RendererConfig.preset("tiny")
    lo, hi = head_box(ms, cfg)
    ext = ms.max(0) - ms.min(0)
    assert np.all(lo < ms.min(0)) and np.all(hi > ms.max(0))
    assert lo[1] == pytest.approx(ms.min(0)[1] - cfg.box_top * ext[1], rel=1e-5)  # hair room above


def test_stratified_samples_stay_in_their_bins():
    near, far = torch.tensor([-1.0, 2.0]), torch.tensor([1.0, 6.0])
    t, deltas = sample_stratified(near, far, 8, perturb=True, generator=torch.Generator().manual_seed(0))
    assert t.shape == (2, 8)
    assert torch.all(t >= near[:, None]) and torch.all(t <= far[:, None])
    assert torch.all(t[:, 1:] > t[:, :-1])
    assert torch.allclose(deltas.sum(1), far - near)


# ---- volume rendering and compositing ---------------------------------------------------


@pytest.mark.parametrize("n_samples", [2, 16])  # rendering's groups of samples and training's whole rays
def test_volume_render_weights_sum_to_alpha(n_samples):
    g = torch.Generator().manual_seed(0)
    sigma = torch.rand(64, n_samples, generator=g) * 3
    rgb = torch.rand(64, n_samples, 3, generator=g)
    deltas = torch.full((64, n_samples), 0.1)
    out = volume_render(sigma, rgb, deltas)
    assert torch.allclose(out["weights"].sum(1), out["alpha"], atol=1e-6)
    assert torch.allclose(out["rgb"], (out["weights"][..., None] * rgb).sum(1), atol=1e-6)
    assert torch.allclose(out["alpha"], 1 - torch.exp(-(sigma * deltas).sum(1)), atol=1e-5)
    assert torch.all(out["alpha"] <= 1.0) and torch.all(out["alpha"] >= 0.0)
    assert torch.all(out["rgb"] <= out["alpha"][:, None] + 1e-6)  # premultiplied


def test_dense_field_is_opaque_and_shows_its_first_sample():
    rgb = torch.rand(4, 8, 3)
    out = volume_render(torch.full((4, 8), 1e4), rgb, torch.full((4, 8), 0.1))
    assert torch.allclose(out["alpha"], torch.ones(4))
    assert torch.allclose(out["rgb"], rgb[:, 0], atol=1e-5)
    empty = volume_render(torch.zeros(4, 8), rgb, torch.full((4, 8), 0.1))
    assert torch.all(empty["alpha"] == 0)


def test_composite():
    head, torso, bg = torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]), torch.tensor([0, 0, 1.0])
    one, zero, half = torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.5)
    assert torch.allclose(composite(head, one, torso, one, bg), head)
    assert torch.allclose(composite(head, zero, torso, one, bg), torso)
    assert torch.allclose(composite(head, zero, torso, zero, bg), bg)
    assert torch.allclose(composite(head, half, torso, half, bg), torch.tensor([0.5, 0.25, 0.25]))


# ---- the model ---------------------------------------------------------------------------


def _tiny_model(seed: int = 0, size: int = 32) -> tuple[TalkingHeadRenderer, np.ndarray]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ms = rng.normal(size=(478, 3)) * 3.0
    cfg = dataclasses.replace(RendererConfig.preset("tiny"), resolution=size)
    model = TalkingHeadRenderer(cfg, ms, 5.0)
    return model.eval(), ms


def test_head_field_matches_the_mlp_on_concatenated_features():
    """Both evaluations (training, feature-major inference) are the MLP of [e(x), a(x) * code]."""
    from emogene_cli.models.renderer.fields import HeadField

    torch.manual_seed(0)
    field = HeadField(RendererConfig.preset("tiny"))
    x = torch.rand(300, 3) * 2 - 1
    code = torch.randn(300, field.attention.out_features)

    def reference(x, code):
        enc = field.encoding(x)
        h = field.trunk(field.input_features(enc) + field.input_code(torch.sigmoid(field.attention(enc)) * code))
        return torch.nn.functional.softplus(field.density(h)[:, 0] + field.density_bias), torch.sigmoid(field.color(h))

    sigma_ref, rgb_ref = reference(x, code)
    sigma, rgb = field(x, code)  # autograd on: the training path
    assert torch.allclose(sigma, sigma_ref, atol=1e-5) and torch.allclose(rgb, rgb_ref, atol=1e-6)
    with torch.no_grad():  # the feature-major inference path
        sigma, rgb = field(x, code)
        sigma_only, none = field(x, code[:1], with_color=False)  # one code for all points
    assert torch.allclose(sigma, sigma_ref, atol=1e-5) and torch.allclose(rgb, rgb_ref, atol=1e-6)
    assert none is None and torch.allclose(sigma_only, reference(x, code[:1].expand(300, -1))[0], atol=1e-5)


def test_render_image_matches_render_rays():
    model, _ = _tiny_model()
    pose = _pose(t=(16.0, 16.0, 0.0))[0]
    motion = torch.zeros(478, 3)  # render_image samples the deformation from a map; exact for no motion
    bg = torch.rand(32, 32, 3)
    img = model.render_image(pose, motion, bg, chunk=100)
    ys, xs = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    pixels = torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5
    with torch.no_grad():
        rays = model.render_rays(pixels, pose[None], motion[None], model.pose_vectors(pose[None]), bg.reshape(-1, 3))
    assert torch.allclose(img["rgb"].reshape(-1, 3), rays["rgb"].clamp(0, 1), atol=1e-5)
    assert torch.allclose(img["head_alpha"].reshape(-1), rays["head_alpha"], atol=1e-5)
    assert img["head_alpha"].max() > 0 and img["head_alpha"][0, 0] == 0  # the corner misses the head box


def test_training_maps_render_as_the_exact_deformation_and_fall_back_beyond_the_budget(monkeypatch):
    from emogene_cli.models.renderer import LandmarkDeformation
    from emogene_cli.render import fitting

    model, _ = _tiny_model()

    class Probe(torch.nn.Module):  # an opaque head whose colour says where in the canonical box a sample landed
        def forward(self, x, code, with_color=True):
            return torch.full((len(x),), 50.0), torch.sin(5.0 * x) * 0.5 + 0.5

    model.head = Probe()
    g = torch.Generator().manual_seed(1)
    motion = torch.zeros(2, 478, 3)  # inter-ocular units: frame 0 at rest, frame 1 shifted right and up
    motion[1] = torch.tensor([0.3, -0.2, 0.0]) + 0.02 * torch.randn(478, 3, generator=g)
    pose = _pose(t=(16.0, 16.0, 0.0))
    ys, xs = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    pixels = torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5
    frame = torch.arange(len(pixels)) % 2
    bg = torch.rand(len(pixels), 3, generator=g)
    maps = fitting._deformation_maps(model, motion)
    assert maps is not None and maps.shape == (2, model.config.deform_map, model.config.deform_map, 3)
    exact_calls = []
    blend = LandmarkDeformation.forward
    monkeypatch.setattr(LandmarkDeformation, "forward", lambda *a, **k: exact_calls.append(1) or blend(*a, **k))
    args = (pixels, pose, motion, model.pose_vectors(pose), bg, frame)
    with torch.no_grad():
        mapped = model.render_rays(*args, maps=maps)
        assert not exact_calls  # the look-up only
        exact = model.render_rays(*args)
        at_rest = model.render_rays(*args[:5], torch.zeros_like(frame), maps=maps)
    assert exact_calls and exact["head_alpha"].max() > 0.1
    assert (at_rest["rgb"] - exact["rgb"]).abs().max() > 0.1  # frame 1's rays see their own deformation
    assert (mapped["rgb"] - exact["rgb"]).abs().max() < 0.06  # the map's bilinear error, where the nearest landmarks switch
    assert (mapped["head_alpha"] - exact["head_alpha"]).abs().max() < 0.02
    monkeypatch.setattr(fitting, "MAP_BUDGET", maps.numel() * 4 - 1)
    assert fitting._deformation_maps(model, motion) is None  # training keeps the exact blend


def test_eye_weight_is_one_at_the_eyes_and_zero_away_from_them():
    from emogene_cli.models.renderer.model import EYE_CODE_FADE, EYE_CODE_RADIUS

    model, ms = _tiny_model()
    eyes = ms[geometry.LM68_FROM_LM478[geometry.LM68_EYES]]
    centres = torch.as_tensor(np.stack([eyes[:6].mean(0), eyes[6:].mean(0)]), dtype=torch.float32)
    iod = float(model.iod)
    far = centres[0] + torch.tensor([0.0, 1.0, 0.0]) * 100.0
    w = model.eye_weight(torch.cat([centres, far[None]]))
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 0.0]))
    q = torch.randn(2000, 3) * 6.0
    w = model.eye_weight(q)
    d = torch.cdist(q, centres).min(-1).values / iod
    assert torch.all(w[d <= EYE_CODE_RADIUS] == 1) and torch.all(w[d >= EYE_CODE_RADIUS + EYE_CODE_FADE] == 0)
    mid = (d > EYE_CODE_RADIUS) & (d < EYE_CODE_RADIUS + EYE_CODE_FADE)
    assert mid.any() and torch.all((w[mid] > 0) & (w[mid] < 1))


def test_eyelids_of_the_driving_motion_reach_the_code_only_around_the_eyes(monkeypatch):
    """speak keeps an emotion's lids out of the code (code_motion); around the eyes they still apply."""
    from emogene_cli.models.renderer.model import EYE_CODE_FADE, EYE_CODE_RADIUS

    model, ms = _tiny_model(seed=2)
    with torch.no_grad():  # make the code matter: a strong code input
        model.head.input_code.weight.mul_(20.0)
    pose = _pose(t=(16.0, 16.0, 0.0))[0]
    bg = torch.rand(32, 32, 3)
    neutral = torch.zeros(478, 3)
    wide = neutral.clone()
    lids = geometry.LM68_FROM_LM478[np.concatenate([geometry.LM68_UPPER_LID, geometry.LM68_LOWER_LID])]
    upper = geometry.LM68_FROM_LM478[geometry.LM68_UPPER_LID]
    wide[upper, 1] = -0.1  # upper lids up by 0.1 inter-ocular distances: wide eyes
    assert lids.size and torch.equal(model.render_image(pose, wide, bg, code_motion=wide)["rgb"],
                                     model.render_image(pose, wide, bg)["rgb"])
    new = model.render_image(pose, wide, bg, code_motion=neutral)["rgb"]
    monkeypatch.setattr(model, "eye_weight", lambda q: q.new_zeros(q.shape[0]))
    old = model.render_image(pose, wide, bg, code_motion=neutral)["rgb"]  # the code from code_motion everywhere
    # orthographic camera, unit scale: pixel (u, v) sees the head-frame line x = u - 16, y = v - 16
    eyes = ms[geometry.LM68_FROM_LM478[geometry.LM68_EYES]]
    centres = np.stack([eyes[:6].mean(0), eyes[6:].mean(0)])[:, :2] + 16.0
    ys, xs = np.mgrid[0:32, 0:32] + 0.5
    dist = np.min([np.hypot(xs - cx, ys - cy) for cx, cy in centres], axis=0) / float(model.iod)
    away = dist > EYE_CODE_RADIUS + EYE_CODE_FADE + 0.2  # + the deformation's reach
    diff = (new - old).abs().amax(-1).numpy()
    assert away.sum() > 500 and diff[away].max() == 0  # the collar, the mouth, the rest: as before
    assert diff[dist < EYE_CODE_RADIUS].max() > 1e-3  # the eyes: the wide lids' code


def test_empty_occupancy_grid_renders_no_head():
    model, _ = _tiny_model()
    model.occupied.zero_()
    out = model.render_image(_pose(t=(16.0, 16.0, 0.0))[0], torch.zeros(478, 3), torch.rand(32, 32, 3))
    assert torch.all(out["head_alpha"] == 0)
    with pytest.raises(MismatchError):
        model.render_image(_pose()[0], torch.zeros(478, 3), torch.rand(16, 16, 3))  # not the fitted resolution


def test_rendering_samples_only_cells_with_density_and_training_keeps_the_dilated_grid(monkeypatch):
    model, _ = _tiny_model()
    assert torch.equal(model.inference_grid(), model.occupied)  # never updated: every cell, as in training
    codes = model.motion_code(torch.randn(4, 478, 3) * 0.1)
    with pytest.MonkeyPatch.context() as mp:  # density in a ball only
        mp.setattr(model.head, "forward", lambda x, code, with_color: ((x.norm(dim=-1) < 0.5).float() * 100.0, None))
        model.update_occupancy(codes.detach(), generator=torch.Generator().manual_seed(0))
    tight = model.inference_grid()
    assert torch.equal(tight, model.occupancy > model.sigma_threshold)
    assert 0 < tight.sum() < model.occupied.sum() and not (tight & ~model.occupied).any()
    border = model.occupied & ~tight  # the dilation's cells
    pose = _pose(t=(16.0, 16.0, 0.0))[0]
    seen = []
    infer, forward = model.head._infer, model.head.forward
    monkeypatch.setattr(model.head, "_infer", lambda x, code, with_color: (seen.append(x.clone()), infer(x, code, with_color))[1])
    model.render_image(pose, torch.zeros(478, 3), torch.rand(32, 32, 3))
    x = torch.cat(seen)
    assert len(x) > 0 and model.is_occupied(x, tight).all() and not model.is_occupied(x, border).any()
    seen.clear()  # training (autograd on) still samples the dilated grid, border cells included
    monkeypatch.setattr(model.head, "forward", lambda x, code, **kw: (seen.append(x.detach().clone()), forward(x, code, **kw))[1])
    ys, xs = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    pixels = torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5
    model.render_rays(pixels, pose[None], torch.zeros(1, 478, 3), model.pose_vectors(pose[None]), torch.rand(1024, 3))
    assert model.is_occupied(torch.cat(seen), border).any()


def test_save_load_round_trip(tmp_path):
    model, _ = _tiny_model(seed=1)
    codes = model.motion_code(torch.randn(4, 478, 3) * 0.1)
    model.update_occupancy(codes.detach(), generator=torch.Generator().manual_seed(0))
    path = model.save(tmp_path / "renderer.safetensors", producer="test", params={"a": 1})
    loaded = TalkingHeadRenderer.load(path, "cpu")
    assert loaded.config == model.config
    poses = np.stack([geometry.vector_to_pose(np.array([0, 0.1 * i, 0, 16, 16, 0, 0])) for i in range(2)])
    motion = np.random.default_rng(0).normal(size=(2, 478, 3)).astype(np.float32) * 0.1
    bg = np.full((32, 32, 3), 128, np.uint8)
    a = list(model.render_frames(poses, motion, bg, "cpu"))
    b = list(loaded.render_frames(poses, motion, bg, "cpu"))
    assert a[0].dtype == np.uint8 and a[0].shape == (32, 32, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_frames_rendered_in_parallel_are_the_serial_frames_in_order():
    from emogene_cli.models.renderer.parallel import frame_workers

    model, _ = _tiny_model(seed=2)
    rng = np.random.default_rng(1)
    poses = np.stack([geometry.vector_to_pose(np.array([0, 0.05 * i, 0, 16, 16, 0, 0])) for i in range(7)])
    motion = rng.normal(size=(7, 478, 3)).astype(np.float32) * 0.1
    bg = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert frame_workers("cpu", 7) == 1 and frame_workers("cuda", 7) == 1  # one intra-op thread (the fixture)
    done: list[tuple[int, int]] = []
    serial = list(model.render_frames(poses, motion, bg, "cpu", progress=lambda d, n: done.append((d, n))))
    assert done == [(i + 1, 7) for i in range(7)]
    torch.set_num_threads(3)
    try:
        assert frame_workers("cpu", 7) == 3 and frame_workers("cpu", 2) == 2
        done.clear()
        parallel = list(model.render_frames(poses, motion, bg, "cpu", progress=lambda d, n: done.append((d, n))))
        assert torch.get_num_threads() == 3  # restored after rendering on one thread per frame
    finally:
        torch.set_num_threads(1)
    assert done == [(i + 1, 7) for i in range(7)]
    assert len(parallel) == 7 and all(np.array_equal(a, b) for a, b in zip(serial, parallel))
    assert not np.array_equal(serial[0], serial[6])  # the frames differ, so the order is checked


def test_ray_classes_bands_are_square_windows():
    import torch.nn.functional as F

    from emogene_cli.render.fitting import HEAD_OVER_TORSO, _ray_classes

    rng = np.random.default_rng(3)
    labels = np.zeros((3, 40, 40), np.uint8)
    labels[:, 25:, 5:35] = 1  # torso
    labels[:, 8:27, 12:28] = 2  # head, its lower edge over the torso
    labels[1, 2, 2] = 2  # a stray head pixel near a corner
    labels[2][rng.random((40, 40)) < 0.02] = 1
    focus, classes = _ray_classes(labels, 3)
    lab = torch.from_numpy(labels)
    square = lambda m: F.max_pool2d(m.float()[:, None], 7, stride=1, padding=3)[:, 0] > 0  # noqa: E731
    head, torso = lab == 2, lab == 1
    expected = lab.clone()
    expected[head & square(torso)] = HEAD_OVER_TORSO
    assert torch.equal(focus, ((lab > 0) | square(head)).reshape(3, -1))
    assert torch.equal(classes, expected.reshape(3, -1))


def test_load_rejects_files_without_a_config(tmp_path):
    path = save_artifact(tmp_path / "x.safetensors", {"w": np.zeros(3, np.float32)}, producer="test")
    with pytest.raises(MismatchError):
        TalkingHeadRenderer.load(path)


def test_presets_round_trip_through_json():
    for name in ("tiny", "quick", "full"):
        cfg = RendererConfig.preset(name)
        assert RendererConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError):
        RendererConfig.preset("huge")


# ---- training on a synthetic clip ------------------------------------------------------------


def _disc_clip(n_frames: int = 40, size: int = 32) -> SimpleNamespace:
    """A red disc (the "head") whose radius follows a 1-D motion value, over a blue torso
    block and a static gradient background; the head sways sideways with the pose."""
    rng = np.random.default_rng(0)
    theta = rng.uniform(0, 2 * np.pi, 478)
    ms = np.stack([7 * np.cos(theta), 7 * np.sin(theta), rng.uniform(-3, 3, 478)], -1)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    bg = np.stack([xx * 4, yy * 4, np.full_like(xx, 60)], -1).clip(0, 255).astype(np.uint8)
    m = np.sin(np.arange(n_frames) * 0.7).astype(np.float32)
    images = np.repeat(bg[None], n_frames, 0).copy()
    labels = np.zeros((n_frames, size, size), np.uint8)
    poses = np.zeros((n_frames, 4, 4))
    for i in range(n_frames):
        cx, cy = 16 + 2 * np.sin(i * 0.3), 13.0
        poses[i] = geometry.compose_pose(1.0, np.eye(3), np.array([cx, cy, 0.0]))
        torso = (yy > 22) & (np.abs(xx - cx) < 10)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (5 + 2 * m[i]) ** 2
        images[i][torso] = (30, 60, 200)
        labels[i][torso] = 1
        images[i][disc] = (220, 40, 40)
        labels[i][disc] = 2
    iod = 5.0
    motion = np.zeros((n_frames, 478, 3), np.float32)
    motion[:, geometry.LM68_FROM_LM478[62:], 1] = m[:, None] * 0.1  # "inner lips" move with the radius
    motion += rng.normal(size=motion.shape).astype(np.float32) * 1e-3
    return SimpleNamespace(images=images, labels=labels, background=bg, poses=poses, canonical=ms + motion * iod,
                           mean_shape=ms, iod=iod)


def _cfg(**kw) -> RendererConfig:
    base = dataclasses.replace(RendererConfig.preset("tiny"), resolution=32, rays_per_batch=512, occupancy_warmup=60,
                               progress_every=10)
    return dataclasses.replace(base, **kw)


def test_split_frames_holds_out_the_last_tenth():
    train, held = split_frames(40)
    assert train.tolist() == list(range(36)) and held.tolist() == [36, 37, 38, 39]
    assert heldout_frames(40).tolist() == held.tolist()


def test_training_learns_the_synthetic_clip(tmp_path):
    data = _disc_clip()
    losses = []
    model, stats = train_renderer(data, _cfg(steps=250), checkpoint=tmp_path / "ckpt.safetensors",
                                  progress=lambda s, n, m: losses.append(m["loss"]))
    assert stats["n_train"] == 36 and stats["n_heldout"] == 4
    assert losses[-1] < 0.3 * losses[0]
    held = heldout_frames(len(data.images))
    report = evaluate_renderer(model, data, held, "cpu")
    assert report["frames"].shape == (4, 32, 32, 3) and report["frames"].dtype == np.uint8
    mean_image = data.images[:36].astype(np.float64).mean(0)
    base = np.mean([10 * np.log10(255**2 / np.mean((data.images[i] - mean_image) ** 2)) for i in held])
    assert np.isfinite(report["psnr"]) and report["psnr"] > base + 3
    assert 0 < report["ssim"] <= 1


class _Stop(Exception):
    pass


def _interrupt_at(step: int, data, cfg: RendererConfig, checkpoint) -> None:
    """Train until ``step`` and stop there, as an interrupted fit would (its checkpoint written at that step)."""
    def stop(done, total, metrics):
        if done == step:
            raise _Stop

    with pytest.raises(_Stop):
        train_renderer(data, cfg, checkpoint=checkpoint, progress=stop)


def test_resume_continues_from_the_checkpoint_and_never_reads_heldout_frames(tmp_path):
    data = _disc_clip()
    cfg = _cfg(steps=30, checkpoint_every=20, occupancy_warmup=16, occupancy_every=8)
    straight, _ = train_renderer(data, cfg, checkpoint=tmp_path / "a.safetensors")

    scrambled = _disc_clip()
    scrambled.images[36:] = 0
    scrambled.labels[36:] = 2
    scrambled.canonical[36:] += 5.0
    scrambled.poses[36:, :3, 3] += 7.0

    ckpt = tmp_path / "b.safetensors"
    _interrupt_at(20, scrambled, cfg, ckpt)
    assert json.loads(ckpt.with_suffix(".json").read_text())["step"] == 20
    resumed, stats = train_renderer(scrambled, cfg, checkpoint=ckpt, resume=True)
    assert stats["start_step"] == 20
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
    with pytest.raises(MismatchError):
        train_renderer(scrambled, dataclasses.replace(cfg, hidden=16), checkpoint=ckpt, resume=True)


# ---- extrusion of the deformation along the line of sight ------------------------------------


def test_points_on_one_line_of_sight_look_up_one_place_and_a_frontal_view_changes_nothing():
    model, _ = _tiny_model()
    pose = _pose(rotvec=(0.35, -0.2, 0.0), t=(16.0, 16.0, 0.0))
    origins, directions = generate_rays(torch.tensor([[15.5, 17.5]]), pose)
    q = origins + torch.linspace(-20, 20, 9)[:, None] * directions  # nine points on one ray
    slope = (directions[:, :2] / directions[:, 2:3]).expand(9, 2)
    crossing = model.deformation.sightline(q, slope)
    assert torch.allclose(crossing[:, :2], crossing[:1, :2].expand(9, 2), atol=1e-4)  # one place for the whole ray
    assert torch.allclose(crossing[:, 2], q[:, 2])
    assert torch.allclose(model.deformation.sightline(q, torch.zeros(9, 2)), q)


def test_sight_and_depth_extrusion_agree_head_on_or_at_rest_and_differ_for_a_pitched_jaw():
    class Probe(torch.nn.Module):  # a thin opaque slab whose colour says where in the canonical box a sample landed
        def forward(self, x, code, with_color=True):
            return torch.where(x[:, 2].abs() < 0.15, 50.0, 0.0), torch.sin(6.0 * x) * 0.5 + 0.5

    sight, _ = _tiny_model()
    depth = TalkingHeadRenderer(dataclasses.replace(sight.config, deform_extrude="depth"), sight.mean_shape, 5.0)
    depth.load_state_dict(sight.state_dict())
    sight.head = depth.head = Probe()
    depth.eval()
    bg = torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(3))
    jaw = torch.zeros(478, 3)
    jaw[sight.mean_shape[:, 1] > 0] = torch.tensor([0.0, 0.4, 0.0])  # the lower half moves down
    head_on, pitched = _pose(t=(16.0, 16.0, 0.0))[0], _pose(rotvec=(0.4, 0.0, 0.0), t=(16.0, 16.0, 0.0))[0]

    def both(pose, motion):
        return [m.render_image(pose, motion, bg)["rgb"] for m in (sight, depth)]

    a, b = both(head_on, jaw)
    assert torch.allclose(a, b, atol=1e-6)
    a, b = both(pitched, torch.zeros(478, 3))
    assert torch.allclose(a, b, atol=1e-6)
    a, b = both(pitched, jaw)
    assert (a - b).abs().max() > 0.02


def test_renderers_fitted_before_keep_their_extrusion():
    assert RendererConfig.preset("quick").deform_extrude == "sight"
    old = RendererConfig.preset("quick").to_dict()
    del old["deform_extrude"]
    assert RendererConfig.from_dict(old).deform_extrude == "depth"
    with pytest.raises(MismatchError, match="deform_extrude"):
        RendererConfig.from_dict({**old, "deform_extrude": "sideways"})


def test_every_ray_sample_is_deformed_as_its_ray_crosses_the_mouth_plane(monkeypatch):
    """Rendering (the map), training (each frame's map) and the exact blend all look a sample up where its own
    ray crosses the mouth's plane: undoing that shift puts every looked-up point back on its pixel's ray."""
    from emogene_cli.models.renderer import LandmarkDeformation
    from emogene_cli.render import fitting

    model, _ = _tiny_model()
    g = torch.Generator().manual_seed(0)
    motion = 0.05 * torch.randn(2, 478, 3, generator=g)
    maps = fitting._deformation_maps(model, motion)
    seen: dict[str, list[torch.Tensor]] = {"apply_map": [], "apply_maps": [], "forward": []}
    for name in seen:
        def spy(self, q, *args, _name=name, _original=getattr(LandmarkDeformation, name), **kw):
            seen[_name].append(q.detach().clone())
            return _original(self, q, *args, **kw)
        monkeypatch.setattr(LandmarkDeformation, name, spy)
    pose = _pose(rotvec=(0.3, 0.15, 0.0), t=(16.0, 16.0, 0.0))
    _, d = generate_rays(torch.zeros(1, 2), pose)
    slope = d[0, :2] / d[0, 2]
    lo, hi = model.deformation.lo, model.deformation.hi

    def off_the_pixel_rays(name: str) -> float:
        look = torch.cat(seen[name])
        look = look[((look[:, :2] > lo + 1e-4) & (look[:, :2] < hi - 1e-4)).all(1)]  # not held at the box's border
        q = look.clone()
        q[:, :2] += (q[:, 2:3] - model.deformation.mouth_depth) * slope  # back from the crossing to the sample
        pix = geometry.transform_points(pose[0].double().numpy(), q.double().numpy())[:, :2]
        assert len(pix) > 100
        return float(np.abs(pix - np.floor(pix) - 0.5).max())  # pixel centres are at u + 0.5

    bg = torch.rand(32, 32, 3, generator=g)
    model.render_image(pose[0], motion[0], bg)
    assert off_the_pixel_rays("apply_map") < 1e-3
    ys, xs = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    pixels = torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5
    args = (pixels, pose, motion, model.pose_vectors(pose), torch.rand(len(pixels), 3, generator=g),
            torch.arange(len(pixels)) % 2)
    model.train()
    model.render_rays(*args, maps=maps)  # training, autograd on
    assert off_the_pixel_rays("apply_maps") < 1e-3
    seen["forward"].clear()
    model.render_rays(*args)  # the exact blend (training beyond the maps' memory budget)
    assert off_the_pixel_rays("forward") < 1e-3


def test_mouth_boxes_frame_the_posed_lips():
    from emogene_cli.render.fitting import _mouth_boxes

    rng = np.random.default_rng(5)
    canonical = rng.normal(size=(3, 478, 3)) * 20
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("xyz", [5.0, -10.0, 3.0], degrees=True).as_matrix()
    poses = np.stack([geometry.compose_pose(s, rot, np.array([60.0, 70.0, 0.0])) for s in (0.8, 1.0, 1.3)])
    boxes = _mouth_boxes(poses, canonical, 0.25, 128).numpy()
    for t in range(3):
        img = (poses[t, :3, :3] @ canonical[t].T).T + poses[t, :3, 3]
        pts = img[geometry.LM68_FROM_LM478]
        iod = np.linalg.norm(pts[36, :2] - pts[45, :2])
        lo, hi = pts[48:68, :2].min(0) - 0.25 * iod, pts[48:68, :2].max(0) + 0.25 * iod
        np.testing.assert_allclose(boxes[t], np.clip(np.concatenate([lo, hi]), 0, 128 - 1e-3), atol=1e-3)


def test_training_draws_its_mouth_rays_from_each_frames_mouth_box(tmp_path, monkeypatch):
    from emogene_cli.render.fitting import _mouth_boxes

    data = _disc_clip()
    cfg = _cfg(steps=2, mouth_fraction=0.25, mouth_margin=0.1)
    seen = []
    original = TalkingHeadRenderer.render_rays

    def spy(self, pixels, poses, motion, pose_vec, background, frame=None, **kw):
        seen.append((pixels.clone(), frame.clone()))
        return original(self, pixels, poses, motion, pose_vec, background, frame, **kw)

    monkeypatch.setattr(TalkingHeadRenderer, "render_rays", spy)
    train_renderer(data, cfg, checkpoint=tmp_path / "m.safetensors")
    n_focus, n_mouth = round(512 * 0.7) - 128, 128
    boxes = _mouth_boxes(data.poses[:36], data.canonical[:36], 0.1, 32)
    for pixels, frame in seen:
        xy, b = pixels[n_focus:n_focus + n_mouth] - 0.5, boxes[frame[n_focus:n_focus + n_mouth]]
        inside = (xy >= b[:, :2].floor()) & (xy <= b[:, 2:])
        assert inside.all()
        rest = pixels[n_focus + n_mouth:] - 0.5  # the uniform rays stay spread over the image
        assert rest[:, 1].min() < 8 and rest[:, 1].max() > 24


def test_a_checkpoint_from_before_the_mouth_rays_resumes_and_bad_fractions_are_refused(tmp_path):
    data = _disc_clip()
    cfg = _cfg(steps=30, checkpoint_every=20, occupancy_warmup=16, occupancy_every=8)
    ckpt = tmp_path / "old.safetensors"
    _interrupt_at(20, data, cfg, ckpt)
    side = ckpt.with_suffix(".json")
    meta = json.loads(side.read_text())
    for key in ("mouth_fraction", "mouth_margin"):  # as written by a version without them
        del meta["config"][key]
    side.write_text(json.dumps(meta))
    _, stats = train_renderer(data, cfg, checkpoint=ckpt, resume=True)
    assert stats["start_step"] == 20
    with pytest.raises(MismatchError, match="mouth_fraction"):  # a recipe that now draws mouth rays does not continue it
        train_renderer(data, dataclasses.replace(cfg, mouth_fraction=0.1, steps=40), checkpoint=ckpt, resume=True)
    for bad in ({"mouth_fraction": -0.1}, {"mouth_fraction": 0.9}, {"mouth_margin": -1.0}):
        with pytest.raises(MismatchError, match="mouth"):
            dataclasses.replace(cfg, **bad)
