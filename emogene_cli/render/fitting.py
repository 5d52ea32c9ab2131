"""Fitting and evaluating the talking-head renderer (:mod:`emogene_cli.models.renderer`).

    train_idx, held = split_frames(len(data.images))          # emogene_cli.dataset
    model, stats = train_renderer(data, RendererConfig.preset("quick"), checkpoint=ckpt)
    report = evaluate_renderer(model, data, held, "cpu")
    report["psnr"], report["ssim"], report["frames"]          # dB, 0..1, [N, H, W, 3] uint8

Training follows GeneFace++/RAD-NeRF/ER-NeRF's recipe, reduced to one joint stage: random
rays from the training frames, drawn mostly from the person and a band around the head
(the pixels that change), photometric MSE on the composite over the static background plate,
plus opacity supervision from the parsing labels (head opacity against the head mask as in
RAD-NeRF's head stage, torso opacity against the torso mask), Adam with exponential decay.

The last 10 % of the frames are held out (:func:`emogene_cli.dataset.split_frames`): they are
never used for training, only for :func:`evaluate_renderer`. Checkpoints are safetensors plus
a JSON sidecar, never pickle.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .. import geometry
from ..dataset import split_frames
from ..errors import InputError, MismatchError
from ..evaluation import psnr, psnr_from_mse, ssim
from ..geometry import dense_motion
from ..interrupt import held, interruptible, note_kept
from ..models.renderer import RendererConfig, TalkingHeadRenderer, distortion_loss, expression_features
from ..store import atomic_write_bytes, load_artifact, save_artifact

__all__ = ["RendererData", "evaluate_renderer", "train_renderer"]

CHECKPOINT_KIND = "emogene-renderer-checkpoint"
#: Largest size in bytes of the training frames' displacement maps (:func:`_deformation_maps`): 1 GiB holds
#: 3 500 training frames (a clip of about 2 min 35 s, 10% held out) at the quick and full presets' 160 x 160 maps.
MAP_BUDGET = 1 << 30


class RendererData(Protocol):
    """What training needs, all at ``config.resolution`` (numpy arrays).

    ``images [T, H, W, 3]`` uint8 RGB, ``labels [T, H, W]`` uint8 (0 background, 1 torso,
    2 head), ``background [H, W, 3]`` uint8, ``poses [T, 4, 4]`` camera-from-head (to
    pixels at ``H``), ``canonical [T, 478, 3]`` canonical landmarks and ``mean_shape
    [478, 3]`` (head frame, the scale the poses expect), ``iod`` the mean shape's
    inter-ocular distance. The renderer is driven by :func:`geometry.dense_motion` of them.
    """

    images: np.ndarray
    labels: np.ndarray
    background: np.ndarray
    poses: np.ndarray
    canonical: np.ndarray
    mean_shape: np.ndarray
    iod: float


def _check_data(data: RendererData, config: RendererConfig) -> int:
    images = np.asarray(data.images)
    t = len(images)
    size = config.resolution
    expect = {
        "images": (images.shape, (t, size, size, 3)),
        "labels": (np.shape(data.labels), (t, size, size)),
        "background": (np.shape(data.background), (size, size, 3)),
        "poses": (np.shape(data.poses), (t, 4, 4)),
        "canonical": (np.shape(data.canonical), (t, 478, 3)),
        "mean_shape": (np.shape(data.mean_shape), (478, 3)),
    }
    for name, (got, want) in expect.items():
        if tuple(got) != want:
            raise MismatchError(f"renderer data: {name} has shape {list(got)}, expected {list(want)} (resolution {size})")
    if split_frames(t)[0].size < 1 or t < 2:
        raise InputError(f"renderer data: {t} frames are too few to train and hold out 10 %")
    return t


# ray classes for the opacity losses: the parsing labels plus "head over torso"
BACKGROUND, TORSO, HEAD, HEAD_OVER_TORSO = 0, 1, 2, 3


def _mouth_boxes(poses: np.ndarray, canonical: np.ndarray, margin: float, size: int) -> torch.Tensor:
    """``[T, 4]`` float pixel boxes ``x0, y0, x1, y1`` around each frame's lips.

    The 68-point mouth of ``canonical [T, 478, 3]`` (head frame) placed in the image by each frame's
    head pose ``poses [T, 4, 4]``, widened on every side by ``margin`` times the frame's projected
    inter-ocular distance (outer eye corners, in pixels: it shrinks a little as the head turns), and
    clipped to the ``size`` x ``size`` image."""
    img = geometry.transform_points(poses, np.asarray(canonical)[:, geometry.LM68_FROM_LM478])  # [T, 68, 3] pixels
    iod = np.linalg.norm(img[:, 36, :2] - img[:, 45, :2], axis=-1)
    lips = img[:, 48:68, :2]
    pad = (margin * iod)[:, None]
    box = np.concatenate([lips.min(1) - pad, lips.max(1) + pad], 1)
    return torch.from_numpy(np.clip(box, 0.0, size - 1e-3).astype(np.float32))


def _ray_classes(labels: np.ndarray, band_px: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where to draw rays and what the opacities should be, per training pixel.

    Args:
        labels: ``[T, H, W]`` uint8 parsing labels (0 background, 1 torso, 2 head).
        band_px: width of the bands, pixels.

    Returns:
        ``focus [T, H*W]`` bool: person pixels plus a band around the head (rays are drawn
        mostly there); ``classes [T, H*W]`` uint8: the labels, with head pixels within the
        band of the torso marked :data:`HEAD_OVER_TORSO`: there the torso is supervised as
        opaque too, so that it continues under the neck and no gap opens between the two.
    """
    focus, classes = [], []
    k = 2 * band_px + 1

    def dilate(mask: torch.Tensor) -> torch.Tensor:  # a square k x k window as two 1-D passes (the same max, ~k/2 times faster)
        m = F.max_pool2d(mask.float()[:, None], (k, 1), stride=1, padding=(band_px, 0))
        return F.max_pool2d(m, (1, k), stride=1, padding=(0, band_px))[:, 0] > 0

    for i in range(0, len(labels), 64):
        lab = torch.from_numpy(np.ascontiguousarray(labels[i:i + 64]))
        head, torso = (lab == HEAD), (lab == TORSO)
        near_head, near_torso = dilate(head), dilate(torso)
        cls = lab.clone()
        cls[head & near_torso] = HEAD_OVER_TORSO
        focus.append(((lab > 0) | near_head).reshape(len(lab), -1))
        classes.append(cls.reshape(len(lab), -1))
    return torch.cat(focus), torch.cat(classes)


def _param_groups(model: TalkingHeadRenderer, config: RendererConfig) -> list[dict[str, Any]]:
    grids = list(model.head.encoding.planes) + list(model.torso.grids)
    ids = {id(p) for p in grids}
    mlps = [p for p in model.parameters() if id(p) not in ids]
    return [
        {"params": grids, "lr": config.lr_grid, "base_lr": config.lr_grid, "eps": 1e-15},
        {"params": mlps, "lr": config.lr_mlp, "base_lr": config.lr_mlp, "eps": 1e-8},
    ]


# --------------------------------------------------------------------------------------
# checkpoints: <checkpoint>.safetensors (tensors) + <checkpoint>.json (scalars, config)
# --------------------------------------------------------------------------------------


def _sidecar(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".json")


@held()  # the tensors and the sidecar are written together or not at all
def _save_checkpoint(
    checkpoint: Path, model: TalkingHeadRenderer, optimizer: torch.optim.Optimizer, generator: torch.Generator,
    step: int, info: dict[str, Any],
) -> None:
    tensors: dict[str, Any] = {f"model.{k}": v for k, v in model.state_dict().items()}
    state = optimizer.state_dict()["state"]
    for i, st in state.items():
        for key, value in st.items():
            tensors[f"optim.{i}.{key}"] = torch.as_tensor(value).reshape(-1)
    tensors["rng.cpu"] = generator.get_state()
    save_artifact(checkpoint, tensors, producer="train_renderer", params={"step": step},
                  extra={"step": str(step), "kind": CHECKPOINT_KIND})
    meta = dict(info, kind=CHECKPOINT_KIND, step=step, tensors=checkpoint.name)
    atomic_write_bytes(_sidecar(checkpoint), json.dumps(meta, indent=1, sort_keys=True).encode())
    note_kept("renderer", f"renderer checkpoint at step {step} of {info['config']['steps']}", checkpoint)


def _load_checkpoint(
    checkpoint: Path, model: TalkingHeadRenderer, optimizer: torch.optim.Optimizer, generator: torch.Generator,
    info: dict[str, Any],
) -> int:
    """Restore ``model``, ``optimizer`` and ``generator``; returns the checkpoint's step."""
    side = _sidecar(checkpoint)
    try:
        meta = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MismatchError(f"checkpoint sidecar unreadable ({exc})", path=side) from exc
    if meta.get("kind") != CHECKPOINT_KIND:
        raise MismatchError("not a renderer checkpoint", path=side)
    saved, now = meta.get("config") or {}, info["config"]
    try:  # as this version reads it: fields added since take their defaults (what that fit trained with)
        saved = RendererConfig.from_dict(saved).to_dict()
    except MismatchError:
        pass
    if saved != now:
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise MismatchError(f"checkpoint was made with another renderer config (differs in: {', '.join(diff)})",
                            path=checkpoint)
    for key in ("n_frames", "n_train", "seed"):
        if meta.get(key) != info[key]:
            raise MismatchError(f"checkpoint was made with {key}={meta.get(key)}, now {info[key]}", path=checkpoint)
    art = load_artifact(checkpoint, what="renderer checkpoint")
    step = int(meta["step"])
    if art.metadata.get("step") != str(step):
        raise MismatchError("checkpoint tensors and sidecar disagree on the step", path=checkpoint)
    t = art.tensors
    try:
        model.load_state_dict({k[6:]: torch.from_numpy(np.array(v)) for k, v in t.items() if k.startswith("model.")})
        template = optimizer.state_dict()
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in t.items():
            if key.startswith("optim."):
                _, i, name = key.split(".", 2)
                state.setdefault(int(i), {})[name] = torch.from_numpy(np.array(value))
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for i, st in state.items():
            st["step"] = st["step"].reshape(())
            st["exp_avg"] = st["exp_avg"].reshape(params[i].shape)
            st["exp_avg_sq"] = st["exp_avg_sq"].reshape(params[i].shape)
        optimizer.load_state_dict({"state": state, "param_groups": template["param_groups"]})
        generator.set_state(torch.from_numpy(np.array(t["rng.cpu"])))
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        raise MismatchError(f"checkpoint does not fit the model ({exc})", path=checkpoint) from exc
    return step


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------


def train_renderer(
    data: RendererData,
    config: RendererConfig,
    *,
    device: str | torch.device = "cpu",
    checkpoint: Path,
    resume: bool = False,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    seed: int = 0,
) -> tuple[TalkingHeadRenderer, dict[str, Any]]:
    """Fit a :class:`TalkingHeadRenderer` to one identity's frames.

    Each step draws ``config.rays_per_batch`` rays from random training frames:
    ``config.person_fraction`` of them from person pixels and a band of
    ``config.head_band`` around the head (``config.mouth_fraction`` of the batch, taken out of
    those, from a box around the frame's lips instead, :func:`_mouth_boxes`), the rest uniformly
    (background pixels teach the model to stay transparent). Loss: ``MSE(composite, image)
    + alpha_weight (MSE(head_alpha, head mask) + MSE(torso_alpha, torso mask))
    + distortion_weight distortion(head weights) + tv_weight TV(head planes)``; the torso
    mask covers the torso and the head pixels next to it (the neck: the torso continues
    under the head there), and torso opacity is free under the rest of the head. Adam;
    learning rates decay exponentially to ``lr * lr_final_ratio``; the occupancy grid is
    refreshed every ``config.occupancy_every`` steps after ``config.occupancy_warmup``. Samples
    are deformed by a look-up in their frame's displacement map, as in rendering, when all
    training frames' maps fit in :data:`MAP_BUDGET` (else by the exact deformation).

    Args:
        data: see :class:`RendererData`; arrays at ``config.resolution``. Frames
            ``0 .. int(0.9 T) - 1`` train; the rest are never touched here.
        config: architecture and schedule (``config.steps`` in all).
        device: ``"cpu"``, ``"cuda"``, ... The frames stay on the CPU as uint8; each batch moves.
        checkpoint: a ``.safetensors`` path; a ``.json`` sidecar is written beside it. Saved
            every ``config.checkpoint_every`` steps and at the end, atomically.
        resume: continue from ``checkpoint`` if it exists (from step 0 if not).
        progress: called as ``progress(step, total, {"loss", "psnr", "lr"})`` every
            ``config.progress_every`` steps and at the end; ``psnr`` (dB) is of the
            photometric MSE on the training rays, averaged since the previous call.
        seed: seeds the initialisation and the ray sampling (a CPU generator).

    Returns:
        The model (eval mode, on ``device``) and stats: ``steps``, ``start_step``,
        ``seconds``, ``steps_per_s``, ``loss``, ``psnr``, ``n_train``, ``n_heldout``.

    Raises:
        MismatchError: data shapes do not fit the config; resuming a checkpoint made with
            another config, other data length or seed.
        InputError: too few frames.
        Interrupted: SIGINT or SIGTERM; the current step is finished and checkpointed first.
    """
    checkpoint = Path(checkpoint)
    device = torch.device(device)
    n_frames = _check_data(data, config)
    train_idx, _ = split_frames(n_frames)
    n_train = len(train_idx)
    size = config.resolution

    # everything below reads training frames only
    motion_np = dense_motion(data.canonical[:n_train], data.mean_shape, data.iod)  # [n_train, 478, 3]
    features = expression_features(torch.from_numpy(motion_np)).numpy()
    poses_np = np.asarray(data.poses, dtype=np.float64)[:n_train]
    pose_vec_np = TalkingHeadRenderer.pose_vectors(torch.as_tensor(poses_np)).numpy()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TalkingHeadRenderer(
            config, data.mean_shape, data.iod, features.mean(0), features.std(0), pose_vec_np.mean(0), pose_vec_np.std(0),
            features.min(0), features.max(0),
        )
    model.to(device).train()
    optimizer = torch.optim.Adam(_param_groups(model, config), betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(seed)
    info = {"config": config.to_dict(), "n_frames": n_frames, "n_train": n_train, "seed": seed}

    start = 0
    if resume and checkpoint.is_file() and _sidecar(checkpoint).is_file():
        start = _load_checkpoint(checkpoint, model, optimizer, generator, info)

    images = torch.from_numpy(np.ascontiguousarray(data.images[:n_train])).reshape(n_train, size * size, 3)
    focus, classes = _ray_classes(data.labels[:n_train], max(1, round(config.head_band * size)))
    background = torch.from_numpy(np.ascontiguousarray(data.background)).reshape(-1, 3)
    poses = torch.as_tensor(poses_np, dtype=torch.float32, device=device)
    pose_vec = torch.as_tensor(pose_vec_np, dtype=torch.float32, device=device)
    motion = torch.as_tensor(motion_np, device=device)
    maps = _deformation_maps(model, motion)

    n_rays = config.rays_per_batch
    n_focus = int(round(n_rays * config.person_fraction))
    n_mouth = min(int(round(n_rays * config.mouth_fraction)), n_focus)  # taken from the focus rays: the uniform ones stay
    n_focus -= n_mouth
    mouth_boxes = _mouth_boxes(poses_np, data.canonical[:n_train], config.mouth_margin, size) if n_mouth else None
    tries = 8
    running: list[float] = []
    running_mse: list[float] = []
    loss_value = mse_value = float("nan")
    t0 = time.perf_counter()
    save_now = partial(_save_checkpoint, checkpoint, model, optimizer, generator, info=info)  # save_now(step)
    for step in interruptible(range(start, config.steps), save_now, what="renderer"):
        # ---- sample rays (CPU generator: reproducible and resumable) ----
        frames = torch.randint(0, n_train, (n_rays,), generator=generator)
        pix = torch.randint(0, size * size, (n_rays,), generator=generator)
        if n_focus:
            cf = torch.randint(0, n_train, (n_focus, tries), generator=generator)
            cp = torch.randint(0, size * size, (n_focus, tries), generator=generator)
            first = focus[cf, cp].to(torch.uint8).argmax(1, keepdim=True)
            frames[:n_focus] = cf.gather(1, first)[:, 0]
            pix[:n_focus] = cp.gather(1, first)[:, 0]
        if n_mouth:
            mf = torch.randint(0, n_train, (n_mouth,), generator=generator)
            box = mouth_boxes[mf]
            u = torch.rand(n_mouth, 2, generator=generator)
            xy = (box[:, :2] + u * (box[:, 2:] - box[:, :2])).long().clamp(0, size - 1)
            frames[n_focus:n_focus + n_mouth] = mf
            pix[n_focus:n_focus + n_mouth] = xy[:, 1] * size + xy[:, 0]
        target = images[frames, pix].to(device, torch.float32) / 255.0
        cls = classes[frames, pix].to(device)
        bg = background[pix].to(device, torch.float32) / 255.0
        pixels = torch.stack([pix % size, pix // size], -1).to(device, torch.float32) + 0.5
        fd = frames.to(device)

        # ---- learning rate ----
        decay = config.lr_final_ratio ** (step / max(1, config.steps))
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * decay

        out = model.render_rays(pixels, poses[fd], motion, pose_vec[fd], bg, fd, perturb=True, generator=generator, maps=maps)
        mse = (out["rgb"] - target).pow(2).mean()
        head_t = ((cls == HEAD) | (cls == HEAD_OVER_TORSO)).float()
        torso_t = ((cls == TORSO) | (cls == HEAD_OVER_TORSO)).float()
        off_head = (cls != HEAD).float()  # under the rest of the head the torso is free
        l_head = (out["head_alpha"] - head_t).pow(2).mean()
        l_torso = ((out["torso_alpha"] - torso_t).pow(2) * off_head).sum() / off_head.sum().clamp_min(1.0)
        loss = mse + config.alpha_weight * (l_head + l_torso)
        if config.distortion_weight > 0 and out["weights"].numel():
            loss = loss + config.distortion_weight * distortion_loss(out["weights"]).mean()
        if config.tv_weight > 0:
            loss = loss + config.tv_weight * model.head.encoding.total_variation()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        done = step + 1
        if done >= config.occupancy_warmup and done % config.occupancy_every == 0:
            _update_occupancy(model, motion, generator)
        running.append(loss.detach())
        running_mse.append(mse.detach())
        if done % config.checkpoint_every == 0 and done < config.steps:
            _save_checkpoint(checkpoint, model, optimizer, generator, done, info)
        if done % config.progress_every == 0 or done == config.steps:
            loss_value = float(torch.stack(running).mean())
            mse_value = float(torch.stack(running_mse).mean())
            running.clear()
            running_mse.clear()
            if progress is not None:
                progress(done, config.steps,
                         {"loss": loss_value, "psnr": psnr_from_mse(mse_value, 1.0), "lr": optimizer.param_groups[1]["lr"]})
    if start < config.steps:
        _update_occupancy(model, motion, generator, samples=4)
        _save_checkpoint(checkpoint, model, optimizer, generator, config.steps, info)
    seconds = time.perf_counter() - t0
    model.eval()
    stats = {
        "steps": config.steps,
        "start_step": start,
        "seconds": seconds,
        "steps_per_s": (config.steps - start) / seconds if seconds > 0 else float("nan"),
        "loss": loss_value,
        "psnr": psnr_from_mse(mse_value, 1.0),
        "n_train": n_train,
        "n_heldout": n_frames - n_train,
    }
    return model, stats


def _deformation_maps(model: TalkingHeadRenderer, motion: torch.Tensor) -> torch.Tensor | None:
    """Every training frame's displacement map (``[F, m, m, 3]``), so that a training step deforms its samples by
    a look-up, as rendering does, instead of the exact per-sample deformation (a third of a step on obama_20s
    quick); None, and the exact deformation, when they would take more than :data:`MAP_BUDGET` bytes."""
    m = model.config.deform_map
    if motion.shape[0] * m * m * 3 * 4 > MAP_BUDGET:
        return None
    return model.deformation.displacement_maps(motion.to(model.iod.dtype) * model.iod)


def _update_occupancy(model: TalkingHeadRenderer, motion: torch.Tensor, generator: torch.Generator,
                      samples: int = 1, n_codes: int = 64) -> float:
    """Refresh the model's occupancy grid with the codes of random training frames."""
    pick = torch.randint(0, motion.shape[0], (n_codes,), generator=generator).to(motion.device)
    with torch.no_grad():
        codes = model.motion_code(motion[pick])
    return model.update_occupancy(codes, samples=samples, generator=generator)


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------


def evaluate_renderer(
    model: TalkingHeadRenderer, data: RendererData, frame_indices: np.ndarray | list[int], device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Render frames with their ground-truth poses and motion and compare them to the video.

    Args:
        model: a trained renderer.
        data: see :class:`RendererData` (same resolution as the model).
        frame_indices: frames to evaluate, normally :func:`~emogene_cli.dataset.heldout_frames`.
        device: where to render.

    Returns:
        ``psnr`` (dB) and ``ssim`` (0..1), :func:`emogene_cli.evaluation.psnr` and
        :func:`~emogene_cli.evaluation.ssim` means over the frames, full frame; ``psnr_per_frame``, ``ssim_per_frame``
        ``[N]``; ``frames [N, H, W, 3]`` uint8 renders; ``frame_indices [N]``.
    """
    idx = np.asarray(frame_indices, dtype=np.int64)
    if idx.size == 0:
        raise InputError("no frames to evaluate")
    poses = np.asarray(data.poses)[idx]
    motion = dense_motion(np.asarray(data.canonical)[idx], data.mean_shape, data.iod)
    psnrs, ssims, frames = [], [], []
    for i, frame in zip(idx, model.render_frames(poses, motion, data.background, device)):
        gt = np.asarray(data.images[i])
        psnrs.append(psnr(gt, frame))
        ssims.append(ssim(gt, frame))
        frames.append(frame)
    return {
        "psnr": float(np.mean(psnrs)),
        "ssim": float(np.mean(ssims)),
        "psnr_per_frame": np.asarray(psnrs),
        "ssim_per_frame": np.asarray(ssims),
        "frames": np.stack(frames),
        "frame_indices": idx,
    }
