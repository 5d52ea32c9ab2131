"""Motion-to-emotion: neutral landmark motion + emotion weights -> the motion that drives the renderer.

Usage::

    ldm = load_ldm(store)
    emotional, motion68, dense, code = emotional_motion(speaker, neutral, weights, ldm=ldm)

EmoGene's landmark deformation model (:class:`~emogene_cli.models.ldm.LandmarkDeformationModel`)
gives each frame's emotional displacement; with its landmark-mixture post-processing
(:func:`~emogene_cli.motion.postprocess`) and the lift to the 478 face-mesh points, scaled by
the identity's calibrations (:mod:`.tracker_gain`, :mod:`.gain`).
"""

from __future__ import annotations

import json

import numpy as np
import torch

from .. import geometry
from ..emotions import EMOTIONS
from ..errors import NotFoundError
from ..models.ldm import LandmarkDeformationModel, LDMConfig
from ..motion import PostConfig, amplify_mouth, postprocess
from ..render import Speaker
from ..store import Store, load_artifact, load_model
from .tracker_gain import apply_gain

#: 68-point landmarks whose motion the renderer's expression code takes from the neutral motion
#: (:func:`emotional_motion`): the eyelids and the inner mouth corners (the lip-width feature).
CODE_FROM_NEUTRAL_68 = np.concatenate([geometry.LM68_UPPER_LID, geometry.LM68_LOWER_LID, [60, 64]])


def load_ldm(store: Store, device: str = "cpu") -> LandmarkDeformationModel:
    """The landmark deformation model: the store's (``train-ldm``), else the one bundled with emogene.

    Raises:
        NotFoundError: neither exists (an install without the package data): run train-ldm.
    """
    path = store.ldm_file
    if not path.is_file():
        raise NotFoundError("no landmark deformation model: run `emogene train-ldm MEAD_DIR` first (or use --emotion neutral)", path=store.ldm_path)
    model, _ = load_model(path, LandmarkDeformationModel, LDMConfig, what="landmark deformation model", device=device)
    return model


def ldm_provenance(store: Store) -> dict:
    """What the LDM in use (:attr:`Store.ldm_file`) was trained on and how it did on actors it never saw.

    Returns:
        ``{"ldm": Store.ldm_label(), "actors": [names], "leave_one_actor_out": [{"actor",
        "frames", "strength": {emotion: float}, "read_as": {emotion: str}}, ...]}`` (the list
        is empty for a model trained before train-ldm measured it, or on one actor),
        ``"rendered_leave_one_actor_out"``: ``train-ldm --render``'s records
        (:func:`emogene_cli.pipelines.emotion_loao.rendered_leave_one_actor_out`, empty without);
        ``{}`` when there is no LDM.
    """
    path = store.ldm_file
    if not path.is_file():
        return {}
    meta = load_artifact(path, what="landmark deformation model").metadata
    params = json.loads(meta.get("params", "{}") or "{}")
    return {"ldm": store.ldm_label(), "actors": list(params.get("actors", [])),
            "leave_one_actor_out": json.loads(meta.get("leave_one_actor_out", "[]") or "[]"),
            "rendered_leave_one_actor_out": json.loads(meta.get("rendered_leave_one_actor_out", "[]") or "[]")}


def emotional_motion(
    speaker: Speaker,
    neutral: np.ndarray,
    weights: np.ndarray,
    *,
    ldm: LandmarkDeformationModel | None,
    post: PostConfig | None = None,
    seed: int = 0,
    render_mouth_gain: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neutral motion ``[T, 68, 3]`` + emotion weights ``[T, 8]`` -> the motion that drives the renderer.

    EmoGene's motion-to-emotion step with its landmark mixture:

    1. the LDM's displacement ``ldm.mixed_displacement(neutral, weights)`` (zero when ``ldm``
       is None or every weight is zero), intensity already in ``weights``, each emotion's
       weight times its gain on this identity (:attr:`Speaker.emotion_gain`, 1 to
       :data:`.gain.GAIN_MAX`: how much more motion this face needs to show the
       emotion as strongly as the actors);
    2. :func:`postprocess`: the neutral motion alone is projected onto the identity's own
       landmark manifold, smoothed, its mouth's spread scaled by the identity's mouth gain
       (:attr:`Speaker.mouth_gain`) about its mean posture and no closer than its closed one,
       clamped to its range and given blinks; the displacement is only low-passed in time, so
       the emotion keeps its full size;
    3. both are lifted to the 478 face-mesh points: the neutral motion with the identity's
       own map (:attr:`Speaker.lift`), the displacement with the map fitted on the MEAD
       actors' emotional faces (``ldm.lift``) and divided by MediaPipe's gain on this face
       (:attr:`Speaker.tracker_gain`: the actors' motion as tracked -> as it is in pixels), and
       added.
    4. the renderer's expression code is set from the same dense motion but with the eyelids
       and the mouth corners of the neutral motion (:data:`CODE_FROM_NEUTRAL_68`): the code
       learned the identity's own blinks and speech, and pushed to the edge of its range by
       an emotion's wide eyes or stretched mouth it changed the whole head (the collar under
       the chin tore on obama_20s); lids and corners still move by geometry, and the code
       still sees the emotion's mouth opening (teeth and the mouth's interior). Around the
       eyes only, the renderer takes the eyelid features from ``dense`` after all
       (:meth:`~emogene_cli.models.renderer.TalkingHeadRenderer.render_image`), so that wide
       or narrowed eyes also show in the eyes' appearance.

    ``render_mouth_gain [T]`` (optional) scales the neutral mouth's motion about the closed posture
    frame by frame in what drives the renderer (``dense``, ``code``) but not in ``motion68``: the
    renderer's calibration against the head pose (:meth:`~emogene_cli.render.PoseMouthGain.factors`
    of the frames' poses), so that the rendered mouth opens as far as ``motion68`` says. It is
    applied after post-processing's clamp to the identity's range: the clamp bounds the planned
    landmarks, and the factor only makes up for what the renderer draws smaller or larger at a pose.

    Returns:
        ``emotional [T, 68, 3]`` (neutral + raw displacement), ``motion68 [T, 68, 3]`` (the
        post-processed sum), ``dense [T, 478, 3]`` (inter-ocular units) that deforms the
        renderer's head and ``code [T, 478, 3]``, the motion for its expression code.

    Raises:
        ValueError: ``weights`` is not ``[T, 8]``, or ``render_mouth_gain`` not ``[T]``.
    """
    weights = np.asarray(weights, dtype=np.float32)
    if weights.shape != (len(neutral), len(EMOTIONS)):
        raise ValueError(f"weights shape {weights.shape} != {(len(neutral), len(EMOTIONS))}")
    if speaker.emotion_gain is not None:
        weights = weights * np.asarray(speaker.emotion_gain, np.float32)[None]
    displacement = np.zeros_like(neutral)
    if ldm is not None and weights.any():
        dev = next(ldm.parameters()).device
        with torch.inference_mode():
            n = torch.from_numpy(neutral).to(dev)
            displacement = ldm.mixed_displacement(n, torch.from_numpy(weights).to(dev)).cpu().numpy()
    base, displacement = postprocess(neutral, displacement, speaker.bank_motion, post or PostConfig(seed=seed),
                                     mouth_gain=speaker.mouth_gain, mouth_rest=speaker.mouth_rest)
    drive = base
    if render_mouth_gain is not None:
        if speaker.mouth_rest is None:
            raise ValueError("a per-frame mouth gain needs the speaker's closed-mouth posture (mouth_rest)")
        drive = amplify_mouth(base, speaker.mouth_rest, render_mouth_gain, closed=speaker.mouth_rest)
    dense, code = dense_motion(speaker, drive, displacement, ldm)
    return neutral + displacement, base + displacement, dense, code


def dense_motion(speaker: Speaker, base: np.ndarray, displacement: np.ndarray,
                 ldm: LandmarkDeformationModel | None) -> tuple[np.ndarray, np.ndarray]:
    """Steps 3-4 of :func:`emotional_motion`: 68-point ``base`` motion and emotional
    ``displacement`` (``[T, 68, 3]``, inter-ocular units) -> the renderer's ``dense [T, 478, 3]``
    and its expression-code motion ``code [T, 478, 3]``."""
    base_dense = geometry.apply_lift(base, *speaker.lift)
    if ldm is None or not displacement.any():
        return base_dense, base_dense
    dense = base_dense + apply_gain(geometry.apply_lift(displacement, ldm.lift.cpu().numpy()), speaker.tracker_gain)
    neutral_points = geometry.LM68_FROM_LM478[CODE_FROM_NEUTRAL_68]
    code = dense.copy()
    code[:, neutral_points] = base_dense[:, neutral_points]
    return dense, code
