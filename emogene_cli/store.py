"""The artifact store: where identities and models live, and how they are written.

Layout (see DESIGN.md)::

    <home>/identities/<name>/dataset.safetensors    per-frame landmarks, poses, audio features
    <home>/identities/<name>/frames/                 crops, masks, background plate (PNG)
    <home>/identities/<name>/renderer.safetensors    head + torso NeRF
    <home>/identities/<name>/a2m.safetensors         person-specific audio-to-motion VAE
    <home>/identities/<name>/*_gain.safetensors      calibrations: the mouth against the head pose,
                                                     MediaPipe's gain, each emotion's gain
    <home>/identities/<name>/checkpoints/            resumable training state
    <home>/models/ldm.safetensors                    landmark deformation model
    <home>/models/mead_cache/                        cached MEAD landmarks
    <home>/models/a2m.safetensors                    generic audio-to-motion VAE (train-a2m)
    <home>/models/a2m_cache/                         cached landmarks and audio features of its clips
    <home>/models/third_party/                       face_landmarker.task, HuBERT, ...

``home`` is ``--home``, else ``$EMOGENE_HOME``, else ``platformdirs.user_data_dir("emogene")``.
Every artifact is a safetensors file whose metadata holds ``format_version``, ``producer``
(the command), ``params`` (JSON) and, where relevant, ``feature_kind``. Writes are atomic:
a temporary file in the same folder, then :func:`os.replace`. Only safetensors and JSON
are ever loaded; nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import platformdirs
from safetensors import safe_open
from safetensors.numpy import save_file

from .errors import EmogeneError, MismatchError, NotFoundError

FORMAT_VERSION = "1"
#: The generic audio-to-motion model shipped in the package (``train-a2m`` on Whisper features;
#: its metadata names the command and corpus that reproduce it). A store's own model wins.
BUNDLED_A2M = Path(__file__).resolve().parent / "pretrained" / "a2m_generic.safetensors"
#: The landmark deformation model shipped in the package (``train-ldm`` on the MEAD clips of
#: ``../shared/data/mead``; research use, as MEAD's terms). A store's own model wins.
BUNDLED_LDM = Path(__file__).resolve().parent / "pretrained" / "ldm.safetensors"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _model_label(path: Path, command: str) -> str:
    """``"bundled with emogene: PATH"`` for a file of the package, else ``"the store (COMMAND): PATH"``."""
    bundled = path in (BUNDLED_A2M, BUNDLED_LDM)
    return f"{'bundled with emogene' if bundled else f'the store ({command})'}: {path}"


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid identity name (``[A-Za-z0-9_-]{1,64}``).

    Raises:
        EmogeneError: the name has other characters or is empty/too long.
    """
    if not NAME_PATTERN.match(name or ""):
        raise EmogeneError(
            "invalid identity name: use 1-64 letters, digits, '_' or '-'", path=name or "''"
        )
    return name


def name_from_file(stem: str) -> str | None:
    """An identity name made from a file name's stem, or None if nothing usable is left.

    Accents are dropped (``Ñoño`` -> ``Nono``), every run of other characters (spaces,
    dots, other scripts) becomes one ``_``, and the result is cut to 64 characters:
    ``"clip of Ñoño ü"`` -> ``"clip_of_Nono_u"``.
    """
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_stem).strip("_-")[:64].strip("_-")
    return name if NAME_PATTERN.match(name) else None


def default_home() -> Path:
    """``$EMOGENE_HOME`` if set, else the platform's user data directory for emogene."""
    env = os.environ.get("EMOGENE_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("emogene"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_artifact(
    path: Path,
    tensors: Mapping[str, Any],
    *,
    producer: str,
    params: Mapping[str, Any] | None = None,
    feature_kind: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> Path:
    """Save arrays (numpy or torch) as a safetensors file, atomically, with metadata.

    Args:
        path: destination ``.safetensors`` file.
        tensors: name -> array. torch tensors are moved to CPU; arrays are made contiguous.
        producer: the command that made it, e.g. ``"fit-identity"``.
        params: JSON-serialisable parameters of that command (stored as ``params``).
        feature_kind: the audio feature kind (``"mel"`` or ``"hubert:<model>"``) if relevant.
        extra: further string metadata.

    Returns:
        ``path``.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for key, value in tensors.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        arrays[key] = np.ascontiguousarray(value)
    meta = {
        "format_version": FORMAT_VERSION,
        "producer": producer,
        "params": json.dumps(dict(params or {}), default=str, sort_keys=True),
    }
    if feature_kind is not None:
        meta["feature_kind"] = feature_kind
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(arrays, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


@dataclass
class Artifact:
    """A loaded safetensors artifact: ``tensors`` (numpy arrays) and ``metadata`` (strings)."""

    path: Path
    tensors: dict[str, np.ndarray]
    metadata: dict[str, str]

    @property
    def params(self) -> dict[str, Any]:
        """The producing command's parameters (decoded JSON)."""
        return json.loads(self.metadata.get("params", "{}"))

    @property
    def feature_kind(self) -> str | None:
        return self.metadata.get("feature_kind")


def load_artifact(path: Path, *, what: str = "artifact") -> Artifact:
    """Load a safetensors artifact written by :func:`save_artifact`.

    Raises:
        NotFoundError: the file does not exist.
        MismatchError: the file is not a readable safetensors file or has another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{what} not found", path=path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise MismatchError(f"cannot read {what} ({exc.__class__.__name__}: {exc})", path=path) from exc
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise MismatchError(
            f"{what} has format version {version!r}, this emogene reads {FORMAT_VERSION!r}; re-run the command that made it",
            path=path,
        )
    return Artifact(path=path, tensors=tensors, metadata=metadata)


def check_feature_kind(expected: str | None, artifact: Artifact, what: str) -> None:
    """Raise :class:`MismatchError` if ``artifact`` was made with another audio feature kind."""
    if expected is not None and artifact.feature_kind is not None and artifact.feature_kind != expected:
        raise MismatchError(
            f"{what} was made with audio features {artifact.feature_kind!r} but {expected!r} were given",
            path=artifact.path,
        )


class Store:
    """Paths into the artifact store rooted at ``home`` (see module docstring)."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = Path(home).expanduser() if home else default_home()

    def require_writable(self) -> None:
        """Check, before any work, that the store can take new files (creating ``home`` if needed).

        Raises:
            EmogeneError: the folder cannot be created or written (read-only, no permission,
                a file in its place); names the folder and the option that picks another.
        """
        probe = None
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=self.home)
            os.close(fd)
        except OSError as exc:
            raise EmogeneError(
                f"the store is not writable ({exc.strerror or exc}): choose another folder with --home or EMOGENE_HOME",
                path=self.home,
            ) from exc
        finally:
            if probe is not None:
                Path(probe).unlink(missing_ok=True)

    # identities -------------------------------------------------------------------------
    def identity_dir(self, name: str) -> Path:
        return self.home / "identities" / validate_name(name)

    def dataset_path(self, name: str) -> Path:
        return self.identity_dir(name) / "dataset.safetensors"

    def frames_dir(self, name: str) -> Path:
        return self.identity_dir(name) / "frames"

    def renderer_path(self, name: str) -> Path:
        return self.identity_dir(name) / "renderer.safetensors"

    def a2m_path(self, name: str) -> Path:
        return self.identity_dir(name) / "a2m.safetensors"

    def checkpoint_dir(self, name: str) -> Path:
        return self.identity_dir(name) / "checkpoints"

    # shared models ----------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def ldm_path(self) -> Path:
        """Where ``train-ldm`` writes the landmark deformation model (``models/ldm.safetensors``)."""
        return self.models_dir / "ldm.safetensors"

    @property
    def ldm_file(self) -> Path:
        """The landmark deformation model to use: the store's (``train-ldm``) when there is one,
        else the one bundled with emogene (:data:`BUNDLED_LDM`, which may be absent)."""
        return self.ldm_path if self.ldm_path.is_file() else BUNDLED_LDM

    def ldm_label(self) -> str:
        """Which LDM :attr:`ldm_file` is, for summaries: store or bundled, and the path."""
        return _model_label(self.ldm_file, "train-ldm")

    @property
    def mead_cache_dir(self) -> Path:
        return self.models_dir / "mead_cache"

    @property
    def generic_a2m_path(self) -> Path:
        """Where ``train-a2m`` writes the generic audio-to-motion model (``models/a2m.safetensors``)."""
        return self.models_dir / "a2m.safetensors"

    @property
    def generic_a2m_file(self) -> Path:
        """The generic audio-to-motion model to use: the store's (``train-a2m``) when there is one,
        else the one bundled with emogene (:data:`BUNDLED_A2M`, which may be absent)."""
        return self.generic_a2m_path if self.generic_a2m_path.is_file() else BUNDLED_A2M

    def generic_a2m_label(self) -> str:
        """Which generic model :attr:`generic_a2m_file` is, for summaries: store or bundled, and the path."""
        return _model_label(self.generic_a2m_file, "train-a2m")

    @property
    def a2m_cache_dir(self) -> Path:
        return self.models_dir / "a2m_cache"

    @property
    def third_party_dir(self) -> Path:
        return self.models_dir / "third_party"

    # queries ----------------------------------------------------------------------------
    def identities(self) -> list[str]:
        """Names of identities that have a dataset (preprocessed), sorted."""
        root = self.home / "identities"
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "dataset.safetensors").is_file())

    def fitted_identities(self) -> list[str]:
        """Names of identities that have a renderer and an audio-to-motion model."""
        return [n for n in self.identities() if self.renderer_path(n).is_file() and self.a2m_path(n).is_file()]

    def require_dataset(self, name: str) -> Path:
        """The dataset path of ``name``; raises NotFoundError if it was never preprocessed."""
        path = self.dataset_path(name)
        if not path.is_file():
            known = ", ".join(self.identities()) or "none"
            raise NotFoundError(
                f"identity '{name}' was not preprocessed (run `emogene preprocess VIDEO --name {name}`; known: {known})",
                path=path,
            )
        return path

    def require_fitted(self, name: str) -> None:
        """Raise NotFoundError unless ``name`` has a renderer and an audio-to-motion model."""
        self.require_dataset(name)
        for path in (self.renderer_path(name), self.a2m_path(name)):
            if not path.is_file():
                raise NotFoundError(
                    f"identity '{name}' is not fitted (run `emogene fit-identity {name}`)", path=path
                )

    def resolve_identity(self, name: str | None) -> str:
        """``name`` if given, else the only fitted identity; a clear error otherwise."""
        if name:
            validate_name(name)
            self.require_fitted(name)
            return name
        fitted = self.fitted_identities()
        if len(fitted) == 1:
            return fitted[0]
        if not fitted:
            raise NotFoundError(
                "no fitted identity in the store: run `emogene preprocess VIDEO` then `emogene fit-identity NAME`",
                path=self.home,
            )
        raise EmogeneError(f"several fitted identities, choose one with --identity: {', '.join(fitted)}", path=self.home)


def save_model(
    path: Path,
    module: Any,
    config: Any,
    *,
    producer: str,
    params: Mapping[str, Any] | None = None,
    feature_kind: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> Path:
    """Save a torch module's ``state_dict`` and its dataclass ``config`` (JSON, key ``model_config``)."""
    from dataclasses import asdict

    meta = {"model_config": json.dumps(asdict(config), sort_keys=True), "model_class": type(module).__name__}
    meta.update(extra or {})
    return save_artifact(path, module.state_dict(), producer=producer, params=params, feature_kind=feature_kind, extra=meta)


def load_model(path: Path, module_cls: Any, config_cls: Any, *, what: str, device: str = "cpu") -> tuple[Any, Artifact]:
    """Rebuild ``module_cls(config_cls(**model_config))`` from a :func:`save_model` file.

    Returns:
        ``(module in eval mode on device, artifact)``.

    Raises:
        NotFoundError / MismatchError: missing file, wrong model class or config, or weights that do not fit.
    """
    import torch

    art = load_artifact(path, what=what)
    if art.metadata.get("model_class") != module_cls.__name__:
        raise MismatchError(f"{what} holds a {art.metadata.get('model_class')!r}, expected {module_cls.__name__!r}", path=path)
    try:
        config = config_cls(**json.loads(art.metadata["model_config"]))
        module = module_cls(config)
        module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in art.tensors.items()})
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise MismatchError(f"{what} does not fit this emogene version ({exc.__class__.__name__}: {str(exc)[:200]})", path=path) from exc
    return module.to(device).eval(), art
