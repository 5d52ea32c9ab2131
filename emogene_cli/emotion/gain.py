"""Emotion-strength calibration: how strongly this identity's rendered face shows each emotion.

The landmark deformation model's displacement is the MEAD actors' tracked motion. Added to
another face, the same motion does not read equally strongly: how an expression reads depends
on the face it is made on. obama_20s's resting brows are low (MediaPipe reads ``browDown``
0.65 on his neutral face, the actors about 0), so an actor-sized brow raise mostly cancels
that and surprise reaches 0.29 of the actors' blendshape change; at 1.4 times the motion it
reaches 0.59. The renderer and its expression code also keep only part of the motion, by an
amount that differs between identities.

So each emotion gets a gain per identity, measured on the whole chain: on a few of the
identity's training frames (their own motion and head poses), the emotion's displacement is
rendered at gain 1 and at ``GAIN_MAX`` (lifted, divided by the tracker gain and coded exactly
as ``speak`` does, :func:`emogene_cli.emotion.dense_motion`), MediaPipe re-tracks the renders,
and the emotion strength (:func:`emogene_cli.evaluation.emotion_strength`: the blendshape change
against the neutral render of the same frames projected on the real actors' change, 1.0 = as
strong as the actors) is measured at both. The gain is where the line through the two
measurements reaches ``TARGET_STRENGTH``, within ``[1, GAIN_MAX]``:

- it only strengthens: an emotion already as strong as the actors keeps gain 1;
- an emotion that does not grow with a larger motion (strength at ``GAIN_MAX`` no higher than
  at 1) keeps gain 1: more motion would only add artefacts;
- ``GAIN_MAX`` bounds how far the geometry is pushed past the actors' motion.

``speak`` multiplies each emotion's weight by its gain (:func:`emogene_cli.emotion.emotional_motion`),
so ``--intensity 1`` means as strong as the actors on this face, as far as ``GAIN_MAX`` allows
(on obama_20s and ng, 13 of 14 gains sit at the cap), and the intensity scales that.

    gain = identity_emotion_gain(store, speaker, ldm)   # [8] over EMOTIONS, neutral 1
    attach_calibration(speaker, store, ldm)             # both gains, as speak and evaluate use them

:func:`attach_calibration` sets both of an identity's calibrations on a loaded
:class:`~emogene_cli.render.Speaker`: the tracker gain (:mod:`.tracker_gain`) first, then
this emotion gain, which is measured through it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dataset import load_identity
from ..emotions import EMOTIONS
from ..evaluation import emotion_strength
from ..face import redetect, source_stamp
from ..models.ldm import LandmarkDeformationModel
from ..render import Speaker, render_clip
from ..store import Store, load_artifact, save_artifact
from .motion_to_emotion import dense_motion
from .tracker_gain import NoFaceError, calibration_inputs, calibration_stamp, identity_tracker_gain

TARGET_STRENGTH = 1.0  # the real actors' blendshape change (metrics.emotion_strength)
#: at most this much more motion than the actors': at 1.5, ng's brows in contempt washed out and
#: the seam under its chin widened; at 1.3 its grid looks as at 1
GAIN_MAX = 1.3
CALIBRATION_FRAMES = 8
VERSION = "2"


@dataclass
class EmotionGain:
    """Measured emotion gains.

    ``gain [E]`` over :data:`~emogene_cli.emotions.EMOTIONS` (neutral and unmeasured emotions 1);
    ``strength [2, E]``: the rendered strength at gain 1 and at ``GAIN_MAX`` (nan where not
    measured); ``frames``: calibration frames used.
    """

    gain: np.ndarray
    strength: np.ndarray
    frames: int


def solve_gain(strength_1: float, strength_max: float, *, target: float = TARGET_STRENGTH,
               gain_max: float = GAIN_MAX) -> float:
    """The gain in ``[1, gain_max]`` where the line through ``(1, strength_1)`` and
    ``(gain_max, strength_max)`` reaches ``target``.

    1 when the emotion already reaches the target, when it does not grow with the gain, or when
    either strength is not finite; ``gain_max`` when even that falls short.
    """
    if not (np.isfinite(strength_1) and np.isfinite(strength_max)) or strength_1 >= target or strength_max <= strength_1:
        return 1.0
    g = 1.0 + (target - strength_1) * (gain_max - 1.0) / (strength_max - strength_1)
    return float(np.clip(g, 1.0, gain_max))


def measure_emotion_gain(
    render: Callable[[np.ndarray], np.ndarray],
    displacements: np.ndarray,
    real_change: np.ndarray,
    blendshapes: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    gain_max: float = GAIN_MAX,
    target: float = TARGET_STRENGTH,
    progress: Callable[..., None] | None = None,
) -> EmotionGain:
    """Measure each emotion's rendered strength at gain 1 and ``gain_max`` and solve its gain.

    Args:
        render: ``displacement [N, 68, 3] -> frames [N, H, W, 3]``: the calibration frames
            rendered with that emotional displacement (zeros = the neutral render).
        displacements: ``[E, N, 68, 3]`` each emotion's displacement on the calibration frames
            (inter-ocular units); rows of emotions without a real change are ignored.
        real_change: ``[E, 52]`` the real actors' blendshape change per emotion (zero rows:
            not measured, e.g. neutral).
        blendshapes: ``frames -> (blendshapes [N, 52], found [N] bool)``, e.g. MediaPipe.
        progress: ``progress(label, done, total)`` per render pass.

    Returns:
        :class:`EmotionGain`.

    Raises:
        NoFaceError: no face found in the neutral renders.
    """
    E = len(displacements)
    todo = [e for e in range(E) if np.any(real_change[e])]
    total = 1 + 2 * len(todo)
    ref, ref_found = blendshapes(render(np.zeros_like(displacements[0])))
    if not ref_found.any():
        raise NoFaceError("no face found in the neutral calibration renders")
    if progress:
        progress("emotion gain", 1, total)
    strength = np.full((2, E), np.nan)
    done = 1
    for e in todo:
        for j, k in enumerate((1.0, gain_max)):
            bs, found = blendshapes(render(k * displacements[e]))
            ok = found & ref_found
            if ok.any():
                strength[j, e] = emotion_strength(bs[ok].mean(0) - ref[ok].mean(0), real_change[e])
            done += 1
            if progress:
                progress("emotion gain", done, total)
    gain = np.array([solve_gain(strength[0, e], strength[1, e], target=target, gain_max=gain_max) if e in todo else 1.0
                     for e in range(E)], np.float32)
    return EmotionGain(gain=gain, strength=strength, frames=int(ref_found.sum()))


# --------------------------------------------------------------------------------------
# the identity's calibration (stored next to its renderer)


def emotion_gain_path(store, name: str) -> Path:
    """``identities/NAME/emotion_gain.safetensors``."""
    return store.identity_dir(name) / "emotion_gain.safetensors"


def _calibration_stamp(store, name: str, ldm, size: int, tracker_gain: np.ndarray | None) -> str:
    """What a calibration depends on: the tracker gain's inputs (LDM, dataset, size) and its
    value, the renderer file, the target, the cap and the number of frames."""
    gain = "none" if tracker_gain is None else hashlib.sha1(np.ascontiguousarray(tracker_gain, np.float32).tobytes()).hexdigest()[:12]
    return (f"{VERSION}:{TARGET_STRENGTH}:{GAIN_MAX}:{CALIBRATION_FRAMES}:{calibration_stamp(store, name, ldm, size)}:{gain}:"
            f"{source_stamp(store.renderer_path(name))}")


def load_emotion_gain(store, name: str, ldm, *, size: int, tracker_gain: np.ndarray | None) -> np.ndarray | None:
    """The identity's stored gains ``[E]`` for ``ldm``, its dataset, ``tracker_gain`` and renderer at
    ``size``, else None."""
    path = emotion_gain_path(store, name)
    if not path.is_file() or not store.renderer_path(name).is_file():
        return None
    art = load_artifact(path, what="emotion gain")
    if art.metadata.get("calibrated_for") != _calibration_stamp(store, name, ldm, size, tracker_gain):
        return None
    return np.asarray(art.tensors["gain"], np.float32)


def calibrate_emotion_gain(store, name: str, speaker, ldm, *, frames: int | None = None,
                           progress: Callable[..., None] | None = None) -> EmotionGain:
    """Measure an identity's emotion gains (:func:`measure_emotion_gain`) and save them.

    ``speaker`` is the loaded identity (:func:`emogene_cli.render.load_speaker`) with its tracker
    gain attached. ``frames`` (default ``CALIBRATION_FRAMES``) of its training frames where a
    face was tracked are rendered ``1 + 2 × 7`` times at the renderer's resolution and
    re-tracked (about 25 s on 2 CPU cores at 256x256). Written to
    ``identities/NAME/emotion_gain.safetensors`` with the stamp of the LDM, the dataset, the
    size, the tracker gain, the renderer file, the target, the cap and the number of frames
    (:func:`load_emotion_gain` ignores it when any of them changed).

    Raises:
        NotFoundError: the identity was not preprocessed.
        NoFaceError: no face tracked in its training frames or found in the neutral renders.
    """
    size = speaker.renderer.config.resolution
    data = load_identity(store, name, size=size, with_images=False)
    pick, disp = calibration_inputs(data, ldm, frames or CALIBRATION_FRAMES)
    base = data.motion[pick].astype(np.float32)
    poses = data.poses[pick]
    real = ldm.real_blendshape_change.cpu().numpy()

    def render(displacement: np.ndarray) -> np.ndarray:
        dense, code = dense_motion(speaker, base, displacement, ldm)
        return render_clip(speaker, poses, dense, speaker.device, code_motion=code)

    def blendshapes(rendered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        track = redetect(rendered, store, fps=1)  # frames far apart in time: each is tracked afresh
        return track.blendshapes, np.asarray(track.found, bool)

    result = measure_emotion_gain(render, disp, real, blendshapes, progress=progress)
    params = {"identity": name, "frames": result.frames, "size": size, "target": TARGET_STRENGTH, "gain_max": GAIN_MAX,
              "gain": {e: round(float(g), 3) for e, g in zip(EMOTIONS, result.gain)},
              "strength_at_1": {e: round(float(s), 3) for e, s in zip(EMOTIONS, result.strength[0]) if np.isfinite(s)}}
    save_artifact(emotion_gain_path(store, name), {"gain": result.gain, "strength": result.strength.astype(np.float32)},
                  producer="emotion-gain", params=params, extra={"calibrated_for": _calibration_stamp(store, name, ldm, size, speaker.tracker_gain)})
    return result


def identity_emotion_gain(store, speaker, ldm, *, progress: Callable[..., None] | None = None,
                          on_measure: Callable[[], None] | None = None) -> np.ndarray | None:
    """The identity's gains ``[E]`` for ``ldm``: the stored calibration, else measured once and saved.

    ``speaker`` needs its tracker gain attached first. ``on_measure()`` is called before a
    measurement. None when no face is found (:class:`NoFaceError`): the emotions are then
    rendered at the actors' size.

    Raises:
        NotFoundError: the identity was not preprocessed.
    """
    size = speaker.renderer.config.resolution
    gain = load_emotion_gain(store, speaker.name, ldm, size=size, tracker_gain=speaker.tracker_gain)
    if gain is not None:
        return gain
    if on_measure is not None:
        on_measure()
    try:
        return calibrate_emotion_gain(store, speaker.name, speaker, ldm, progress=progress).gain
    except NoFaceError:
        return None


def attach_calibration(speaker: Speaker, store: Store, ldm: LandmarkDeformationModel,
                       on_measure: Callable[[], None] | None = None,
                       progress: Callable[..., None] | None = None) -> Speaker:
    """Set the identity's ``tracker_gain`` and ``emotion_gain`` for ``ldm``.

    Each is the stored calibration, or measured once and stored (about 25 s each at 256x256 on
    2 CPU cores; ``on_measure()`` is called once before, e.g. to tell the user):
    :func:`.tracker_gain.identity_tracker_gain` (how much of a landmark motion MediaPipe reads
    on this face) and then :func:`identity_emotion_gain` (how strongly the
    rendered face shows each emotion, measured through the renderer with the tracker gain).
    Without a face in the chosen frames a gain stays None: the displacement is then rendered
    as tracked, at the actors' size.
    """
    told = []

    def once() -> None:
        if on_measure is not None and not told:
            told.append(True)
            on_measure()

    size = speaker.renderer.config.resolution
    speaker.tracker_gain = identity_tracker_gain(store, speaker.name, ldm, size=size, on_measure=once, progress=progress)
    speaker.emotion_gain = identity_emotion_gain(store, speaker, ldm, on_measure=once, progress=progress)
    return speaker
