"""evaluate's emotion part: every emotion rendered on a fitted identity, re-tracked, and graded
by real actors' blendshape change.

Usage::

    figures = evaluate_emotions("obama_20s", store=store, audio="speech.wav", emotion_actors=["crema_d"])
    figures["strength_median"], figures["per_emotion"]["happy"]["recognised_as"], figures["reference_actors"]

Each emotion is rendered from the same audio, poses and seed as the neutral render, at the
identity's emotion gain, and MediaPipe re-tracks the frames; the change of the 52 blendshapes
against the neutral render is projected on the reference actors' real change for the same
emotion (:func:`emogene_cli.evaluation.metrics.emotion_strength`, 1.0 = as strong as a real
actor) and read as the emotion whose real change points most nearly the same way. The
reference is either actors the landmark deformation model did not train on (folders in MEAD's
layout, ``evaluate --emotion-actors``) or, by default, its own training actors, which grades the
renders with their own answers; the figures say which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import geometry
from ..audio import load_audio, loudness_envelope
from ..emotion import attach_calibration, ldm_provenance, load_ldm, reference_blendshape_change
from ..emotions import EMOTIONS, parse_emotion
from ..errors import EmogeneError, NotFoundError
from ..evaluation import metrics
from ..face import BLENDSHAPE_NAMES, masked_mean, redetect
from ..media import SAMPLE_RATE
from ..models.ldm import LandmarkDeformationModel
from ..render import Speaker, load_speaker, render_clip
from ..store import Store
from .speak import plan_motion

__all__ = ["chosen_emotions", "emotion_figures", "emotion_reference", "evaluate_emotions"]

Progress = Callable[..., None]


def chosen_emotions(emotions: Sequence[str] | None) -> list[str]:
    """``neutral`` (the reference render) followed by ``emotions`` (default all), each once.

    Raises:
        EmogeneError: an unknown emotion (its path is ``--emotions``).
    """
    try:
        chosen = [parse_emotion(e) for e in (emotions or EMOTIONS)]
    except EmogeneError as exc:
        raise EmogeneError(exc.message, path="--emotions") from exc
    return ["neutral"] + [e for e in dict.fromkeys(chosen) if e != "neutral"]


def emotion_reference(store: Store, ldm: LandmarkDeformationModel,
                      reference_dirs: Sequence[str | Path] | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The real blendshape change each rendered emotion is measured against, and what it is.

    With ``reference_dirs`` (MEAD-layout folders): the actors there that the LDM in use did not
    train on (:func:`emogene_cli.emotion.reference_blendshape_change`); without: the LDM's own
    training actors (stored with it), which grades the renders with their own answers.

    Returns:
        ``{emotion: [52]}`` for every emotion the reference has, and the figures naming it:
        ``ldm``, ``training_actors``, ``reference_actors``, ``reference_held_out``,
        ``leave_one_actor_out`` and ``rendered_leave_one_actor_out`` (train-ldm's tables stored
        with the model), ``reference_note``.

    Raises:
        NotFoundError / InputError: a reference folder is missing, holds no clip in MEAD's
            layout, or only actors the LDM trained on.
    """
    prov = ldm_provenance(store)
    training = prov.get("actors", [])
    if reference_dirs:
        table, actors = reference_blendshape_change(list(reference_dirs), store, exclude=training)
        note = (f"strength is measured against the blendshape change of {', '.join(actors)}, actors the LDM did not train on "
                f"(it trained on {', '.join(training)})" if training else
                f"strength is measured against {', '.join(actors)}; the LDM does not name its training actors, so whether they "
                "are held out is not known")
    else:
        table, actors = ldm.real_blendshape_change.cpu().numpy(), training
        note = ("strength is measured against the blendshape change of the actors the LDM trained on "
                f"({', '.join(training) or 'unknown'}), so it grades the renders with the training actors' own answers "
                "(give --emotion-actors for actors it never saw); leave_one_actor_out is train-ldm's measure on actors each "
                "model never saw (landmark level; rendered_leave_one_actor_out on rendered frames, with train-ldm --render)")
    real = {e: table[EMOTIONS.index(e)] for e in EMOTIONS if e != "neutral" and np.any(table[EMOTIONS.index(e)])}
    info = {"ldm": prov.get("ldm", ""), "training_actors": training, "reference_actors": actors,
            "reference_held_out": bool(reference_dirs) and bool(training),
            "leave_one_actor_out": prov.get("leave_one_actor_out", []),
            "rendered_leave_one_actor_out": prov.get("rendered_leave_one_actor_out", []), "reference_note": note}
    return real, info


def emotion_figures(speaker: Speaker, audio: np.ndarray, emotions: Sequence[str], device: str, store: Store, seed: int,
                    hubert: str | None, progress: Progress | None, *,
                    reference: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each of ``emotions`` (``neutral`` first) rendered from ``audio [samples]`` (16 kHz) with the
    same poses and seed, re-tracked, and measured against the neutral render and the reference
    actors: ``reference`` (:func:`emotion_reference` of actors the LDM never saw), default the
    LDM's training actors.

    Returns:
        The ``emotion`` figures of the evaluation JSON (``{"skipped": why}`` when there is no
        LDM and no reference was asked for) and ``{"shots": {emotion: middle frame [H, W, 3]}}``.

    Raises:
        NotFoundError: no LDM while a reference was asked for.
        InputError: as :func:`emotion_reference`.
    """
    try:
        ldm = load_ldm(store, device)
    except NotFoundError as exc:
        if reference:
            raise
        return {"skipped": f"no landmark deformation model ({exc.message})"}, {}
    real, about = reference or emotion_reference(store, ldm, None)
    attach_calibration(speaker, store, ldm, progress=progress)
    per: dict[str, Any] = {}
    shots: dict[str, np.ndarray] = {}
    blend: dict[str, np.ndarray] = {}
    lipsync: tuple[float, int] = (float("nan"), 0)
    for k, emotion in enumerate(emotions):
        plan = plan_motion(speaker, audio, emotion=emotion, ldm=ldm, seed=seed, hubert=hubert, store_dir=store.third_party_dir)
        frames = render_clip(speaker, plan.poses, plan.motion, device, code_motion=plan.code_motion)
        track = redetect(frames, store)
        blend[emotion] = masked_mean(track.blendshapes, track.found)
        shots[emotion] = frames[len(frames) // 2]
        per[emotion] = {"face_found": track.found_fraction}
        if speaker.emotion_gain is not None and emotion != "neutral":
            per[emotion]["emotion_gain"] = float(speaker.emotion_gain[EMOTIONS.index(emotion)])
        if emotion == "neutral":
            env = loudness_envelope(audio, len(frames))
            lipsync = metrics.lipsync_correlation(geometry.mouth_opening(track.landmarks[:, geometry.LM68_FROM_LM478]), env, max_lag=5)
        if progress is not None:
            progress("emotions", k + 1, len(emotions))
    strengths, recognised = [], 0
    for emotion in emotions:
        if emotion != "neutral":
            change = blend[emotion] - blend["neutral"]
            per[emotion].update(metrics.blendshape_deltas(blend[emotion], blend["neutral"], BLENDSHAPE_NAMES, emotion))
            if emotion in real:
                per[emotion]["largest_changes"] = metrics.largest_changes(change, real[emotion], BLENDSHAPE_NAMES)
                per[emotion]["strength"] = metrics.emotion_strength(change, real[emotion])
                per[emotion]["recognised_as"] = metrics.nearest_emotion(change, real)
                strengths.append(per[emotion]["strength"])
                recognised += int(per[emotion]["recognised_as"] == emotion)
            else:
                per[emotion]["not_measured"] = f"the reference actors ({', '.join(about['reference_actors'])}) have no {emotion} clip"
    figures = {
        "seconds_per_emotion": len(audio) / SAMPLE_RATE,
        "per_emotion": per,
        "strength_median": float(np.median(strengths)) if strengths else float("nan"),
        "strength_min": float(np.min(strengths)) if strengths else float("nan"),
        "recognised": recognised, "measured": len(strengths),
        "lipsync_corr_neutral": lipsync[0], "lipsync_lag_neutral": lipsync[1],
        **about,
        "note": ("strength = the rendered change of all 52 MediaPipe blendshapes (re-detected) against the neutral render, "
                 "projected on the reference actors' real change for the same emotion (1.0 = as strong as a real actor), "
                 "each emotion rendered at the identity's emotion gain (emotion_gain; 1 = the learned motion); "
                 "recognised_as = the emotion whose real change is most similar (cosine); "
                 "score = mean change of the emotion's own relevant blendshapes"),
    }
    return figures, {"shots": shots}


def evaluate_emotions(
    name: str,
    *,
    store: Store,
    audio: str | Path,
    emotions: Sequence[str] | None = None,
    seconds_per_emotion: float = 3.0,
    seed: int = 0,
    emotion_actors: Sequence[str | Path] | None = None,
    device: str = "cpu",
    hubert: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Only the emotion part of :func:`evaluate_identity`, nothing written: each emotion rendered
    from the first ``seconds_per_emotion`` of ``audio`` (same poses and seed) and measured
    against the neutral render and the reference actors (``emotion_actors`` held out of the
    LDM, else its training actors). Used to measure one LDM after another on an identity
    (:func:`emogene_cli.pipelines.emotion_loao.rendered_leave_one_actor_out`, ``train-ldm --render``).

    Returns:
        The ``emotion`` figures of the evaluation JSON.

    Raises:
        NotFoundError: unknown or unfitted identity, missing audio; with ``emotion_actors``, a
            missing folder or no LDM (without, no LDM gives ``{"skipped": why}``).
        InputError: unreadable audio; ``emotion_actors`` as :func:`emotion_reference`.
        EmogeneError: an unknown emotion or a non-positive duration.
    """
    if seconds_per_emotion <= 0:
        raise EmogeneError("--seconds-per-emotion must be positive")
    chosen = chosen_emotions(emotions)
    name = store.resolve_identity(name)
    clip = load_audio(audio)[: int(round(seconds_per_emotion * SAMPLE_RATE))]
    reference = emotion_reference(store, load_ldm(store, device), emotion_actors) if emotion_actors else None
    speaker = load_speaker(store, name, device)
    figures, _ = emotion_figures(speaker, clip, chosen, device, store, seed, hubert, progress, reference=reference)
    figures["audio"] = str(audio)
    return figures
