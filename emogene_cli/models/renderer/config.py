"""The renderer's configuration: architecture, deformation and training settings in one dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ...errors import MismatchError

CONFIG_KEY = "renderer_config"
#: how the landmark deformation is extruded in depth (see :mod:`.deformation`)
EXTRUSIONS = ("sight", "depth")


@dataclass
class RendererConfig:
    """Everything that fixes the renderer's architecture and its training.

    Use :meth:`preset` (``"tiny"``, ``"quick"``, ``"full"``) and :func:`dataclasses.replace`
    for variations. Training fields are kept here too, so that a checkpoint records them and
    resuming with other values is refused.
    """

    # data
    resolution: int = 256  # square crop side, pixels
    # head box, in units of the mean shape's landmark extent along each axis
    box_x: float = 0.15  # added left and right (ears)
    box_top: float = 0.40  # added above the forehead landmarks (hair)
    box_bottom: float = 0.20  # added below the chin (the head label reaches down the neck)
    box_front: float = 0.15  # added in front of the nose tip (towards the camera, -z)
    box_back: float = 0.30  # added behind the deepest landmark (+z)
    # sampler
    n_samples: int = 16  # points per ray inside the head box
    # occupancy grid (instant-NGP / RAD-NeRF): samples in cells known to be empty are skipped
    occupancy_resolution: int = 48  # cells per axis of the head box
    occupancy_threshold: float = 0.01  # a cell is empty below this opacity per nominal sample
    occupancy_every: int = 16  # training steps between grid updates
    occupancy_warmup: int = 256  # steps before the first update (all cells occupied until then)
    # landmark-driven deformation (observed head -> canonical neutral head), inter-ocular units
    deform_sigma: float = 0.05  # width of the soft nearest-landmark blend
    deform_falloff: float = 0.12  # displacement fades with the distance to the nearest landmark
    deform_neighbours: int = 8  # candidate landmarks per point (nearest in the mean shape)
    deform_grid: int = 32  # cells per axis of the candidate table (face plane)
    deform_map: int = 160  # vertices per axis of the per-frame displacement map (rendering; training)
    deform_reach: float = 0.4  # largest displacement expected (an open jaw): where the deformation is computed
    # the deformation is extruded along each ray ("sight": every sample on a line of sight moves as that
    # line does where it crosses the mouth's plane; the presets) or along the head frame's z ("depth": renderers
    # fitted by earlier versions, whose configs lack the key)
    deform_extrude: str = "depth"
    # head field
    plane_resolutions: tuple[int, ...] = (32, 64, 128)
    plane_features: int = 8  # channels per plane and level
    code_dim: int = 8  # expression code (mouth opening, eyelids): what geometry cannot explain
    hidden: int = 64  # head MLP width
    # torso field
    torso_resolutions: tuple[int, ...] = (32, 64, 128)
    torso_features: int = 8
    torso_hidden: int = 32
    torso_frequencies: int = 4  # positional-encoding octaves of the pixel position
    torso_max_offset: float = 0.05  # largest pose-driven offset, fraction of the image (normalised coords/2)
    # training
    steps: int = 4500  # quick; see preset()
    rays_per_batch: int = 4096
    person_fraction: float = 0.7  # rays drawn from person pixels and a band around the head
    # rays drawn from a box around each frame's lips (the mouth's landmarks ± mouth_margin inter-ocular
    # distances), out of the person_fraction share; 0 for renderers fitted before, whose configs lack it
    mouth_fraction: float = 0.0
    mouth_margin: float = 0.25
    head_band: float = 0.04  # band around the head, fraction of the image side
    lr_grid: float = 2e-2  # planes and torso grid
    lr_mlp: float = 5e-3
    lr_final_ratio: float = 0.1  # exponential decay to lr * ratio at the last step
    alpha_weight: float = 0.1  # weight of the head/torso opacity losses
    tv_weight: float = 1e-4  # total variation of the head planes
    # Mip-NeRF 360 distortion of the head weights: a thinner shell of density, so rays turn opaque
    # sooner and a frame evaluates fewer points (3e-3 against 1e-3: a sixth to a fifth less time a frame,
    # held-out PSNR within the fit-to-fit spread; 1e-2 dimmed fear and surprise on obama_20s; docs/results.md)
    distortion_weight: float = 3e-3
    checkpoint_every: int = 500
    progress_every: int = 10

    @classmethod
    def preset(cls, name: str) -> "RendererConfig":
        """The named preset.

        * ``tiny``: unit tests and smoke runs, 64x64, trains in well under a minute on a CPU.
        * ``quick``: a 20 s clip at 256x256 in about 7-10 minutes on a 2-core CPU. 4500 steps:
          on obama_20s the held-out PSNR is 28.96 dB after 3000 steps, 28.77 after 4500 and 28.20
          after 9000 (docs/results.md) (longer fits match the training frames closer, not the held-out ones), while
          the rendered mouth follows unseen voices' driving landmarks at a mean r of 0.69, 0.72
          and 0.76 (five voices): 4500 keeps most of that in half the time. 15 % of each batch's rays
          are drawn around the lips (``mouth_fraction``), so the held-out closures render nearer closed.
        * ``full``: 512x512 on a GPU, for a 3-5 minute video.

        Raises:
            ValueError: unknown preset name.
        """
        if name == "tiny":
            return cls(
                deform_extrude="sight", resolution=64, n_samples=16, occupancy_resolution=16, occupancy_warmup=100,
                plane_resolutions=(16, 32), plane_features=4, code_dim=4, hidden=32,
                torso_resolutions=(16, 32), torso_features=4, torso_hidden=16, torso_frequencies=2,
                steps=300, rays_per_batch=1024, lr_grid=3e-2, lr_mlp=1e-2, checkpoint_every=100,
            )
        if name == "quick":
            return cls(deform_extrude="sight", mouth_fraction=0.15)
        if name == "full":
            return cls(
                deform_extrude="sight", resolution=512, n_samples=32, occupancy_resolution=96,
                plane_resolutions=(64, 128, 256, 512), plane_features=16, code_dim=16, hidden=128,
                torso_resolutions=(64, 128, 256, 512), torso_features=8, torso_hidden=64, torso_frequencies=6,
                steps=60000, rays_per_batch=8192, lr_grid=1e-2, lr_mlp=2e-3, checkpoint_every=2000,
                progress_every=50,
            )
        raise ValueError(f"unknown renderer preset {name!r} (tiny, quick, full)")

    def __post_init__(self) -> None:
        if not (0.0 <= self.mouth_fraction <= self.person_fraction and self.mouth_margin >= 0.0):
            raise MismatchError(f"renderer config: mouth_fraction {self.mouth_fraction} must lie within 0 and person_fraction "
                                f"({self.person_fraction}), mouth_margin {self.mouth_margin} must not be negative")
        if self.deform_extrude not in EXTRUSIONS:
            raise MismatchError(f"renderer config: deform_extrude {self.deform_extrude!r} is not one of {', '.join(EXTRUSIONS)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RendererConfig":
        """Inverse of :meth:`to_dict`, tolerant across versions.

        Fields missing from ``data`` (added since) take their defaults; fields this version
        does not know (training settings of another version) are ignored. Weights that do not
        fit the resulting architecture are caught by :meth:`TalkingHeadRenderer.load`.

        Raises:
            MismatchError: ``data`` is not a mapping or holds values of the wrong kind.
        """
        if not isinstance(data, dict):
            raise MismatchError("renderer config is not a JSON object")
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise MismatchError(f"renderer config unreadable ({exc})") from exc
