"""Time each emogene stage on one identity and one audio file; write JSON, print a table with the targets.

    python benchmarks/bench.py --identity obama_20s --audio speech.wav [--video obama_20s.mp4]
        [--preset quick] [--device cpu|cuda|auto] [--json out.json] [--skip-fit] [--home STORE]

Measured, on the CPU and (``--device auto``, the default) on CUDA when torch sees a GPU:

* preprocess: seconds per second of video (the identity's source video, or ``--video``);
* fit-identity: seconds for ``--preset`` (skip with ``--skip-fit``: quick takes about 7-10 min on a 2-core CPU);
* speak: real-time factor of the pipeline (seconds of compute per second of output, load
  included and not) and of the whole ``emogene speak`` command in a fresh interpreter
  (imports included: what a user waits), and the render's frames per second;
* render: frames per second at 256x256 and 512x512 (and at the identity's own resolution);
  a 256 renderer is the identity's own when it has that resolution, otherwise an untrained
  ``quick``-preset renderer; 512 is an untrained ``full``-preset renderer. Untrained renderers
  have every occupancy cell marked occupied, so they evaluate every sample: a pessimistic
  figure for the same architecture trained;
* peak memory of each stage: the stage runs in a fresh process; its maximum resident set
  size, and ``torch.cuda.max_memory_allocated`` on CUDA.

Each figure is printed beside its target (:data:`TARGETS`) with the ratio figure / target and
✓ or ✗; a stage that was skipped or could not run (no GPU) reads "not measured".

Nothing in the user's store is written: the identity (dataset, frames, renderer,
audio-to-motion model) and the landmark deformation model are copied into a temporary store
that is deleted at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

#: Each target as (value, "min" when a figure must reach it or "max" when it must stay under it).
#: CPU targets are for a 2-core laptop-class CPU at 256x256 with the quick preset (issue 18);
#: GPU targets for one GPU at 512x512 with the full preset.
TARGETS: dict[str, tuple[float, str]] = {
    "cpu_preprocess_s_per_video_s": (0.5, "max"),
    "cpu_fit_quick_s": (600.0, "max"),  # 10 minutes for a 20 s clip
    "heldout_psnr_db": (28.0, "min"),
    "heldout_ssim": (0.92, "min"),
    "cpu_speak_render_fps": (10.0, "min"),
    "cpu_speak_command_rtf": (2.5, "max"),  # the whole `emogene speak` command, imports included
    "cpu_render_fps_256": (10.0, "min"),
    "gpu_render_fps_512": (108.0, "min"),  # TalkingGaussian (GeneFace++ 45, ER-NeRF 31-34; real time is 25)
    "gpu_fit_full_s": (900.0, "max"),  # 15 minutes
    "gpu_speak_command_rtf": (1.0, "max"),  # faster than real time
}


def meets(value: Any, target: str) -> bool | None:
    """Whether ``value`` meets ``TARGETS[target]`` (None when there is no number)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    goal, kind = TARGETS[target]
    return value >= goal if kind == "min" else value <= goal


# --------------------------------------------------------------------------------------
# stages: each runs in a fresh (spawned) process and returns a dict of figures


def _setup_child(threads: int | None) -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads:
        import torch

        torch.set_num_threads(threads)


def _peaks(device: str) -> dict[str, float]:
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}  # kB on Linux
    # the largest process the stage started and waited for (preprocess's audio features, ffmpeg), which runs beside it
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    if child > 0:
        out["peak_child_rss_mb"] = child
    if device.startswith("cuda"):
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out["torch_threads"] = torch.get_num_threads()
    return out


def stage_preprocess(home: str, video: str, name: str, size: int, features: str, device: str, threads: int | None) -> dict:
    _setup_child(threads)
    from emogene_cli.pipelines.preprocess import preprocess_video
    from emogene_cli.store import Store

    t0 = time.perf_counter()
    r = preprocess_video(Path(video), store=Store(home), name=name, size=size, audio_features=features, device=device)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "video_seconds": r.seconds, "seconds_per_video_second": seconds / r.seconds,
            "size": size, "audio_features": r.feature_kind, **_peaks(device)}


def stage_fit(home: str, name: str, preset: str, device: str, threads: int | None) -> dict:
    _setup_child(threads)
    from emogene_cli.pipelines.fit import fit_identity
    from emogene_cli.store import Store

    t0 = time.perf_counter()
    r = fit_identity(name, store=Store(home), preset=preset, device=device)
    seconds = time.perf_counter() - t0
    return {"preset": preset, "seconds": seconds, "steps": {k: round(v, 2) for k, v in r.seconds.items()},
            "heldout_psnr": r.psnr, "heldout_ssim": r.ssim, "resolution": r.resolution, **_peaks(device)}


def _emotion(store: Any) -> str:
    """The emotion both speak stages time: happy when an LDM resolves (the store's or the bundled one), else neutral."""
    return "happy" if store.ldm_file.is_file() else "neutral"


def stage_speak(home: str, name: str, audio: str, out: str, device: str, threads: int | None) -> dict:
    _setup_child(threads)
    from emogene_cli.pipelines.speak import speak
    from emogene_cli.store import Store

    store = Store(home)
    emotion = _emotion(store)
    r = speak(audio, store=store, emotion=emotion, identity=name, output=out, device=device)
    total = sum(r.seconds.values())
    compute = total - r.seconds.get("load", 0.0)
    return {"emotion": emotion, "output_seconds": r.duration, "frames": r.frames,
            "steps": {k: round(v, 3) for k, v in r.seconds.items()},
            "real_time_factor": total / r.duration, "real_time_factor_without_load": compute / r.duration,
            "render_fps": r.frames / max(r.seconds.get("render", 0.0), 1e-9), **_peaks(device)}


def stage_speak_command(home: str, name: str, audio: str, out: str, device: str, threads: int | None) -> dict:
    """Wall time of the whole ``emogene speak`` command (a fresh interpreter: imports and loading included)."""
    import subprocess

    import soundfile

    from emogene_cli.store import Store

    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    emotion = _emotion(Store(home))
    cmd = [sys.executable, "-m", "emogene_cli", "--home", home, "speak", audio, "--identity", name, "--emotion", emotion,
           "--device", device, "-o", out]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]}
    duration = soundfile.info(audio).duration
    return {"emotion": emotion, "seconds": seconds, "audio_seconds": duration, "real_time_factor": seconds / duration}


def stage_render(home: str, name: str, resolution: int, which: str, device: str, frames: int, max_seconds: float,
                 threads: int | None) -> dict:
    """Frames per second of :meth:`TalkingHeadRenderer.render_frames` at one resolution.

    ``which``: ``"identity"`` (the fitted renderer) or a preset name for an untrained renderer
    of that architecture at ``resolution``.
    """
    _setup_child(threads)
    import dataclasses

    import numpy as np
    import torch

    from emogene_cli.dataset import load_identity
    from emogene_cli.geometry import dense_motion
    from emogene_cli.models.renderer import RendererConfig, TalkingHeadRenderer, expression_features
    from emogene_cli.store import Store

    store = Store(home)
    data = load_identity(store, name, size=resolution, with_images=False)
    dense = dense_motion(data.canonical, data.mean_shape, data.iod)
    if which == "identity":
        model = TalkingHeadRenderer.load(store.renderer_path(name), device=device)
    else:
        cfg = dataclasses.replace(RendererConfig.preset(which), resolution=resolution)
        feats = expression_features(torch.from_numpy(dense)).numpy()
        pv = TalkingHeadRenderer.pose_vectors(torch.as_tensor(np.asarray(data.poses, np.float64))).numpy()
        torch.manual_seed(0)
        model = TalkingHeadRenderer(cfg, data.mean_shape, data.iod, feats.mean(0), feats.std(0), pv.mean(0), pv.std(0),
                                    feats.min(0), feats.max(0)).to(device)
    n = min(frames, len(data.poses))
    poses, motion = data.poses[:n], dense[:n]

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    if device.startswith("cuda"):  # kernels, allocator: not part of the steady state
        list(model.render_frames(poses[:2], motion[:2], data.background, device))
        sync()
    done = 0
    t0 = time.perf_counter()
    for _ in model.render_frames(poses, motion, data.background, device):
        done += 1
        if time.perf_counter() - t0 > max_seconds:
            break
    sync()
    elapsed = time.perf_counter() - t0
    return {"resolution": resolution, "renderer": which if which != "identity" else f"identity ({model.config.resolution}px, trained)",
            "trained": which == "identity", "frames": done, "seconds": elapsed, "fps": done / elapsed, **_peaks(device)}


def run_stage(fn: Callable[..., dict], *args: Any) -> dict:
    """Run one stage in a fresh spawned process (its own peak memory); errors become ``{"error": ...}``."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        try:
            return pool.submit(fn, *args).result()
        except Exception as exc:  # a failed stage must not lose the others' figures
            return {"error": f"{exc.__class__.__name__}: {exc}"}


# --------------------------------------------------------------------------------------
# setup and report


def copy_identity(src_home: Path, dst_home: Path, name: str) -> None:
    """Copy what the stages read of identity ``name`` (no checkpoints) and the LDM into ``dst_home``."""
    from emogene_cli.store import Store

    src, dst = Store(src_home), Store(dst_home)
    src.require_dataset(name)
    dst.identity_dir(name).mkdir(parents=True, exist_ok=True)
    for path in (src.dataset_path(name), src.renderer_path(name), src.a2m_path(name)):
        if path.is_file():
            shutil.copy2(path, dst.identity_dir(name) / path.name)
    shutil.copytree(src.frames_dir(name), dst.frames_dir(name))
    if src.ldm_path.is_file():
        dst.models_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src.ldm_path, dst.ldm_path)


def machine(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                            "cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine()}
    try:
        load = os.getloadavg()
        info["load_average_at_start"] = [round(v, 2) for v in load]
    except OSError:  # pragma: no cover - not on Linux
        pass
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}{unit}"
    return f"{v}{unit}"


def _target_text(key: str) -> str:
    goal, kind = TARGETS[key]
    return f"{'≥' if kind == 'min' else '≤'} {goal:g}"


def print_table(results: dict[str, Any]) -> None:
    """Each figure beside its target, with ``figure / target`` (≥ 1 meets a minimum, ≤ 1 a maximum) and ✓ or ✗."""
    from rich.console import Console
    from rich.table import Table

    devices = list(results["devices"])
    table = Table(title=f"emogene benchmark: {results['identity']}, audio {Path(results['audio']).name}", title_justify="left")
    table.add_column("figure", style="bold")
    for d in devices:
        table.add_column(d, justify="right")
    table.add_column("target (cpu | gpu)", style="dim")

    def get(d: str, stage: str, key: str) -> Any:
        entry = results["devices"][d].get(stage) or {}
        if "error" in entry:
            return "error: " + entry["error"]
        if "skipped" in entry:
            return "not measured"
        return entry.get(key)

    # (label, stage, key, target on the CPU, target on CUDA)
    rows = [
        ("preprocess, s per video s", "preprocess", "seconds_per_video_second", "cpu_preprocess_s_per_video_s", None),
        ("fit-identity, s" + ("" if results["fit_skipped"] else f" ({results['preset']})"), "fit", "seconds",
         "cpu_fit_quick_s" if results["preset"] == "quick" else None, "gpu_fit_full_s" if results["preset"] == "full" else None),
        ("fit: held-out PSNR, dB", "fit", "heldout_psnr", "heldout_psnr_db", "heldout_psnr_db"),
        ("fit: held-out SSIM", "fit", "heldout_ssim", "heldout_ssim", "heldout_ssim"),
        ("speak: whole command, real-time factor", "speak_command", "real_time_factor", "cpu_speak_command_rtf", "gpu_speak_command_rtf"),
        ("speak: pipeline, real-time factor", "speak", "real_time_factor", None, None),
        ("speak: render fps (identity)", "speak", "render_fps", "cpu_speak_render_fps", None),
        ("render fps, identity's resolution", "render_identity", "fps", None, None),
        ("render fps 256x256", "render_256", "fps", "cpu_render_fps_256", None),
        ("render fps 512x512", "render_512", "fps", None, "gpu_render_fps_512"),
    ]
    for label, stage, key, cpu_target, gpu_target in rows:
        cells = []
        for d in devices:
            v = get(d, stage, key)
            target = cpu_target if d == "cpu" else gpu_target
            text = _fmt(v) if not isinstance(v, str) else v[:60]
            ok = meets(v, target) if target else None
            if ok is not None:
                text += f" ({v / TARGETS[target][0]:.2f}×) " + ("[green]✓[/]" if ok else "[red]✗[/]")
            cells.append(text)
        goals = " | ".join(_target_text(t) if t else "-" for t in (cpu_target, gpu_target))
        table.add_row(label, *cells, goals)
    renderers = [f"{get(d, 'render_256', 'renderer')} / {get(d, 'render_512', 'renderer')}" for d in devices]
    table.add_row("renderers timed at 256 / 512", *[r[:60] for r in renderers], "untrained: every sample evaluated")
    for stage in ("preprocess", "fit", "speak", "render_256", "render_512"):
        cells = []
        for d in devices:
            entry = results["devices"][d].get(stage) or {}
            mem = _fmt(entry.get("peak_rss_mb"), " MB RSS") if "peak_rss_mb" in entry else "-"
            if "peak_cuda_mb" in entry:
                mem += f", {entry['peak_cuda_mb']:.0f} MB GPU"
            cells.append(mem)
        table.add_row(f"peak memory, {stage}", *cells, "")
        children = [(results["devices"][d].get(stage) or {}).get("peak_child_rss_mb") for d in devices]
        if any(c is not None for c in children):  # a process the stage ran beside itself (preprocess's audio features)
            table.add_row(f"{stage} child process", *[f"{c:.0f} MB RSS" if c is not None else "-" for c in children], "")
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--identity", required=True, help="a preprocessed (and, with --skip-fit, fitted) identity in the store")
    p.add_argument("--audio", required=True, type=Path, help="speech audio for speak")
    p.add_argument("--video", type=Path, help="video to time preprocess on (default: the identity's source video)")
    p.add_argument("--preset", default="quick", choices=("tiny", "quick", "full"), help="fit-identity preset to time")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: the CPU, and CUDA when present")
    p.add_argument("--json", type=Path, help="output JSON (default: bench_<identity>.json here)")
    p.add_argument("--skip-fit", action="store_true", help="do not time fit-identity; speak uses the identity's fitted renderer")
    p.add_argument("--skip-preprocess", action="store_true", help="do not time preprocess")
    p.add_argument("--home", type=Path, help="source store (default: $EMOGENE_HOME or the platform's); never written")
    p.add_argument("--frames", type=int, default=20, help="frames per render-speed measurement (default 20)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="time budget per render-speed measurement (default 60)")
    p.add_argument("--threads", type=int, help="torch threads in each stage (default: torch's own choice)")
    p.add_argument("--keep", action="store_true", help="keep the temporary store (its path is printed)")
    args = p.parse_args(argv)

    import torch

    from emogene_cli.errors import EmogeneError
    from emogene_cli.store import Store, atomic_write_bytes, load_artifact

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA GPU")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "auto" else [args.device]
    src = Store(args.home)
    name = args.identity
    if not args.audio.is_file():
        p.error(f"{args.audio}: audio file not found")
    try:
        dataset = load_artifact(src.require_dataset(name), what="identity dataset")
    except EmogeneError as exc:
        p.error(exc.one_line())
    if args.skip_fit and not src.renderer_path(name).is_file():
        p.error(f"identity {name!r} is not fitted; drop --skip-fit or run `emogene fit-identity {name}`")
    params = dataset.params
    video = args.video or (Path(dataset.metadata["source"]) if dataset.metadata.get("source") else None)

    work = Path(tempfile.mkdtemp(prefix="emogene-bench-"))
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    results: dict[str, Any] = {
        "identity": name, "audio": str(args.audio), "video": str(video) if video else None, "preset": args.preset,
        "fit_skipped": args.skip_fit, "machine": machine("cuda" if "cuda" in devices else "cpu"),
        "targets": TARGETS, "devices": {},
    }
    try:
        copy_identity(src.home, work, name)
        identity_res = int(json.loads(load_artifact(src.renderer_path(name), what="renderer").metadata["renderer_config"])["resolution"]) \
            if src.renderer_path(name).is_file() else None
        for device in devices:
            r: dict[str, Any] = {}
            results["devices"][device] = r
            if args.skip_preprocess or video is None or not video.is_file():
                r["preprocess"] = {"skipped": "no --video and the identity's source video is not at hand" if not args.skip_preprocess else "--skip-preprocess"}
            elif device == devices[0]:  # MediaPipe runs on the CPU either way: time it once
                log(f"[{device}] preprocess {video.name} ...")
                r["preprocess"] = run_stage(stage_preprocess, str(work), str(video), "bench_preprocess",
                                            int(params.get("size", 512)), params.get("audio_features", "auto"), device, args.threads)
            if args.skip_fit:
                r["fit"] = {"skipped": "--skip-fit"}
            else:
                log(f"[{device}] fit-identity --preset {args.preset} ...")
                r["fit"] = run_stage(stage_fit, str(work), name, args.preset, device, args.threads)
                identity_res = r["fit"].get("resolution", identity_res)
            log(f"[{device}] speak ...")
            r["speak"] = run_stage(stage_speak, str(work), name, str(args.audio), str(work / f"speak_{device}.mp4"), device, args.threads)
            log(f"[{device}] emogene speak (the whole command) ...")
            r["speak_command"] = stage_speak_command(str(work), name, str(args.audio), str(work / f"command_{device}.mp4"),
                                                     device, args.threads)
            for res, key in ((256, "render_256"), (512, "render_512")):
                which = "identity" if identity_res == res else ("quick" if res == 256 else "full")
                log(f"[{device}] render {res}x{res} ({which}) ...")
                r[key] = run_stage(stage_render, str(work), name, res, which, device, args.frames, args.max_seconds, args.threads)
            if identity_res and identity_res not in (256, 512):
                log(f"[{device}] render {identity_res}x{identity_res} (identity) ...")
                r["render_identity"] = run_stage(stage_render, str(work), name, identity_res, "identity", device, args.frames,
                                                 args.max_seconds, args.threads)
    finally:
        if args.keep:
            log(f"kept the temporary store {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    out = args.json or Path.cwd() / f"bench_{name}.json"
    atomic_write_bytes(out, json.dumps(results, indent=1).encode())
    print_table(results)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
