"""Rendering around the renderer model: fitting it, the loaded identity, frames and grids.

Usage::

    from emogene_cli.render import load_speaker, train_renderer
    model, stats = train_renderer(data, RendererConfig.preset("quick"), checkpoint=ckpt)
    speaker = load_speaker(store, "obama_20s")              # renderer + audio-to-motion + pose bank
    frames = speaker.renderer.render_frames(poses, dense_motion, speaker.background, "cpu")

Modules: :mod:`.fitting` (training and held-out evaluation of
:class:`~emogene_cli.models.renderer.TalkingHeadRenderer`), :mod:`.speaker` (a fitted
identity loaded for speaking), :mod:`.pose_gain` (the rendered mouth's opening against the head
pitch, measured through the renderer), :mod:`.frames` (driving-landmark images, labelled grids).
The names below are the package's public face.
"""

from .fitting import RendererData, evaluate_renderer, train_renderer
from .frames import GRID_COLUMNS, compose_grid, draw_landmarks, render_clip, render_grid
from .pose_gain import PoseMouthGain, identity_pose_mouth_gain, pose_gain_path
from .speaker import Speaker, load_landmark_speaker, load_speaker

__all__ = [
    "GRID_COLUMNS", "PoseMouthGain", "RendererData", "Speaker", "compose_grid", "draw_landmarks", "evaluate_renderer",
    "identity_pose_mouth_gain", "load_landmark_speaker", "load_speaker", "pose_gain_path", "render_clip", "render_grid",
    "train_renderer",
]
