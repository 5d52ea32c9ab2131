"""What a run needs and whether this machine has it (``emogene doctor``).

Usage::

    from emogene_cli.pipelines.doctor import diagnose
    checks = diagnose(Store())                 # [Check, ...], in the order a run needs them
    first = next((c for c in checks if c.needed and not c.ok), None)

Nothing is downloaded, loaded onto a device or written: model files are looked up where
:func:`~emogene_cli.modelfiles.resolve_model_file` and the Whisper / HuBERT loaders look
(:mod:`emogene_cli.audio.weights`), the store's folder is checked for write permission on it
or on its nearest existing parent, and each network location is tried with a 1-second
connection only when no local copy exists.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..audio import DEFAULT_HUBERT, DEFAULT_WHISPER, hubert_candidates, whisper_candidates
from ..errors import EmogeneError
from ..media import ffmpeg_exe
from ..modelfiles import MODEL_DIR_ENV, MODEL_URLS, OFFLINE_ENV, model_file_source, offline
from ..store import BUNDLED_A2M, BUNDLED_LDM, Store, load_artifact

#: The MediaPipe files preprocessing needs (face landmarks and blendshapes; the person mask).
MEDIAPIPE_FILES = ("face_landmarker.task", "selfie_segmentation.tflite")


@dataclass
class Check:
    """One line of the doctor's table.

    ``ok`` is True (there and usable), False (missing or broken) or None (optional and absent);
    ``needed`` marks what the normal path (preprocess, fit-identity, speak) cannot run without;
    ``fix`` says how to provide it when it is not ok.
    """

    what: str
    ok: bool | None
    detail: str
    needed: bool = True
    fix: str = ""


def _reachable(host: str, timeout: float = 1.0) -> bool:
    """True when ``host:443`` accepts a connection within ``timeout`` seconds and downloads are allowed."""
    if offline():
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_torch() -> list[Check]:
    """torch's version and the devices it sees (CUDA name and memory, Apple MPS)."""
    try:
        import torch
    except Exception as exc:  # an install without torch, or a broken one
        return [Check("torch", False, f"cannot import torch ({exc.__class__.__name__})",
                      fix="install torch 2.13.0 first (bash scripts/install.sh does it)")]
    devices = [f"cpu ({torch.get_num_threads()} threads)"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(f"cuda:{i} {props.name} ({_gib(props.total_memory)})")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return [Check("torch", True, f"{torch.__version__}; devices: {', '.join(devices)}")]


def check_ffmpeg() -> Check:
    """The ffmpeg binary emogene uses (:func:`~emogene_cli.media.ffmpeg_exe`) and its version line."""
    try:
        exe = ffmpeg_exe()
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (EmogeneError, OSError, subprocess.SubprocessError) as exc:
        return Check("ffmpeg", False, f"not usable ({exc.__class__.__name__})", fix="install ffmpeg or `pip install imageio-ffmpeg`")
    version = out.splitlines()[0].split(" Copyright")[0] if out else "unknown version"
    return Check("ffmpeg", True, f"{version} at {exe}")


def check_mediapipe_file(filename: str, store: Store, model_dir: str | None) -> Check:
    """Where a MediaPipe model file resolves from, or whether its first-use download can reach Google."""
    path, where = model_file_source(filename, model_dir, store)
    if path is not None:
        return Check(filename, True, f"{path} (from {where})")
    fix = f"set {MODEL_DIR_ENV} to a folder holding {filename} (or pass --model-dir), or go online once"
    if where == "download":
        host = MODEL_URLS[filename].split("/")[2]
        if _reachable(host):
            return Check(filename, True, f"not here yet: downloaded into {store.third_party_dir} on first use")
        return Check(filename, False, f"not found, and {host} cannot be reached to download it", fix=fix)
    why = f"downloads are off ({OFFLINE_ENV}=1)" if offline() else "no download location known"
    return Check(filename, False, f"not found; {why}", fix=fix)


def _encoder_source(candidates: list[tuple[str, bool]], hub_id: str) -> str | None:
    """The first local place among ``candidates`` holding an encoder's weights, or "hub" / None."""
    for source, local in candidates:
        if not local:
            return "hub"
        folder = Path(source)
        if folder.is_dir():
            if (folder / "model.safetensors").is_file() or (folder / "pytorch_model.bin").is_file():
                return str(folder)
            continue
        try:
            from huggingface_hub import try_to_load_from_cache

            for name in ("model.safetensors", "pytorch_model.bin"):
                hit = try_to_load_from_cache(source or hub_id, name)
                if isinstance(hit, str):
                    return f"{Path(hit).parent} (Hugging Face cache)"
        except Exception:  # an odd cache or hub id: treat as absent
            continue
    return None


def check_encoder(name: str, candidates: list[tuple[str, bool]], hub_id: str, *, needed: bool, why: str, fix: str,
                  store: Store) -> Check:
    """Where a speech encoder (Whisper, HuBERT) resolves from, without loading it."""
    source = _encoder_source(candidates, hub_id)
    if source == "hub":
        return Check(name, True, f"not here yet: {hub_id} downloaded into {store.third_party_dir} on first use; {why}", needed)
    if source is not None:
        return Check(name, True, f"{source}; {why}", needed)
    return Check(name, False if needed else None, f"not found; {why}", needed, fix)


def check_store(store: Store) -> Check:
    """The store's folder: where, whether it can be written and the free disk there."""
    home = store.home.resolve()
    probe = home
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    writable = os.access(probe, os.W_OK | os.X_OK) and probe.is_dir()
    free = shutil.disk_usage(probe).free
    state = "exists" if home.exists() else "created on first write"
    if not writable:
        return Check("store", False, f"{home} ({state}) cannot be written ({probe} is read-only or not a folder)",
                     fix="pass --home DIR or set EMOGENE_HOME to a writable folder")
    low = free < 2 * 2**30
    return Check("store", not low, f"{home} ({state}, writable, {_gib(free)} free)",
                 fix="free some disk: a fitted identity takes about 100 MB, the first Whisper download 300 MB" if low else "")


def check_models(store: Store) -> list[Check]:
    """The landmark deformation model and generic audio-to-motion model in use (store or bundled)."""
    out = []
    for what, path, bundled, fix in (
        ("landmark deformation model", store.ldm_file, BUNDLED_LDM, "run `emogene train-ldm MEAD_DIR`, or reinstall emogene (its package data)"),
        ("generic audio-to-motion model", store.generic_a2m_file, BUNDLED_A2M,
         "run `emogene train-a2m VIDEOS`, or reinstall emogene (its package data)"),
    ):
        if not path.is_file():
            out.append(Check(what, False, "missing (neither the store's nor the bundled one)", fix=fix))
            continue
        try:
            meta = load_artifact(path, what=what).metadata
        except EmogeneError as exc:
            out.append(Check(what, False, f"unreadable: {exc.message}", fix=fix))
            continue
        kind = f", features {meta['feature_kind']}" if meta.get("feature_kind") else ""
        out.append(Check(what, True, f"{'bundled with emogene' if path == bundled else 'the store'}: {path}{kind}"))
    return out


def diagnose(store: Store, *, model_dir: str | None = None, whisper: str | None = None, hubert: str | None = None) -> list[Check]:
    """Every check, in the order a run meets them. Writes nothing and downloads nothing.

    Args:
        store: the store the commands would use (``--home`` / ``$EMOGENE_HOME`` / the default).
        model_dir: a ``--model-dir`` to check the MediaPipe files in, as preprocess would.
        whisper, hubert: ``--whisper`` / ``--hubert`` paths or hub ids, as the commands take them.

    Returns:
        The checks; the run is ready when every ``needed`` one is ``ok``.
    """
    import sys

    checks = [Check("python", True, f"{platform.python_version()} ({sys.executable})"), *check_torch(), check_ffmpeg()]
    checks += [check_mediapipe_file(f, store, model_dir) for f in MEDIAPIPE_FILES]
    models = check_models(store)
    generic = store.generic_a2m_file
    kind = ""
    if generic.is_file():
        try:
            kind = load_artifact(generic, what="generic audio-to-motion model").metadata.get("feature_kind", "")
        except EmogeneError:
            kind = ""
    whisper_needed = kind.startswith("whisper")
    checks.append(check_encoder(
        "Whisper encoder", whisper_candidates(whisper, store.third_party_dir), DEFAULT_WHISPER, needed=whisper_needed,
        why="the generic audio-to-motion model reads its features" if whisper_needed else "used by --audio-features auto when found",
        fix="pass --whisper DIR or set EMOGENE_WHISPER (or EMOGENE_MODEL_DIR with a whisper-base folder), or go online once",
        store=store,
    ))
    checks.append(check_encoder(
        "HuBERT encoder", hubert_candidates(hubert, store.third_party_dir), DEFAULT_HUBERT, needed=False,
        why="used with --audio-features hubert", fix="pass --hubert DIR or set EMOGENE_HUBERT", store=store,
    ))
    checks.append(check_store(store))
    checks += models
    fitted, known = store.fitted_identities(), store.identities()
    checks.append(Check("identities", None if not known else True,
                        f"{len(fitted)} fitted ({', '.join(fitted) or 'none'}), {len(known)} preprocessed"))
    return checks
