"""The person-specific talking-head renderer, split nerfstudio-style into one module per job.

    from emogene_cli.models.renderer import RendererConfig, TalkingHeadRenderer
    model = TalkingHeadRenderer(RendererConfig.preset("quick"), mean_shape, iod)
    frame = model.render_image(pose [4, 4], dense_motion [478, 3], background [H, W, 3])["rgb"]

See :mod:`.model` for the whole, :mod:`.rays`, :mod:`.deformation`, :mod:`.fields`,
:mod:`.occupancy`, :mod:`.rendering` and :mod:`.torso` for the parts.
"""

from .config import CONFIG_KEY, RendererConfig
from .deformation import EXPRESSION_FEATURES, LandmarkDeformation, expression_features
from .fields import HeadField, TriPlaneEncoding
from .model import TalkingHeadRenderer
from .rays import generate_rays, head_box, intersect_aabb, sample_stratified
from .rendering import composite, distortion_loss, volume_render
from .torso import TorsoField

__all__ = [
    "CONFIG_KEY",
    "EXPRESSION_FEATURES",
    "HeadField",
    "LandmarkDeformation",
    "RendererConfig",
    "TalkingHeadRenderer",
    "TorsoField",
    "TriPlaneEncoding",
    "composite",
    "distortion_loss",
    "expression_features",
    "generate_rays",
    "head_box",
    "intersect_aabb",
    "sample_stratified",
    "volume_render",
]
