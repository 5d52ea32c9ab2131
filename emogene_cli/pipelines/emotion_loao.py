"""Leave one actor out, on rendered frames: how an LDM's emotions read to an actor it never saw.

Usage::

    records = rendered_leave_one_actor_out(["mead", "crema_d"], ["obama_20s"], store=store, audio="speech.wav")
    records[0]["actor"], records[0]["identity"], records[0]["summary"]["median"]

For each actor of the data folders (MEAD's layout): the landmark deformation model is trained
on all the other actors (:func:`emogene_cli.emotion.train_ldm` with ``leave_out``) in a
temporary store beside the user's; each identity is linked into it, its tracker gain and
emotion gains are measured for that model (against the model's own training actors, as
``speak`` would), every emotion is rendered from the first seconds of the audio (same poses
and seed) and re-tracked, and each emotion's blendshape change against the neutral render is
graded by the left-out actor's own change (:func:`emogene_cli.pipelines.evaluate_emotion.evaluate_emotions`
with that actor as the reference): strength 1 = as strong as that actor, and the actor's
emotion it reads as. ``train-ldm --render NAME`` runs it and stores the records with the model,
where ``evaluate`` shows them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from ..audio import load_audio
from ..emotion import data_roots, scan_actors, train_ldm
from ..errors import InputError
from ..store import Store
from .evaluate_emotion import evaluate_emotions

__all__ = ["rendered_leave_one_actor_out", "summarise"]

SMILE = ("mouthSmileLeft", "mouthSmileRight")
#: what of an identity the renders need; its calibrations are measured anew for each model
IDENTITY_PARTS = ("dataset.safetensors", "frames", "renderer.safetensors", "a2m.safetensors")

Progress = Callable[[str, int, int], None]


def _share(src: Path, dst: Path) -> None:
    """Make ``src`` (a file or folder of the user's store) appear at ``dst`` in the temporary
    store: a symbolic link, else hard links, else a copy. The renders only read what is shared;
    clips tracked or weights fetched on the way land in the user's store through a link."""
    if dst.exists() or dst.is_symlink():
        return  # already shared
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())
        return
    except OSError:  # e.g. Windows without the right to make links
        pass
    if src.is_dir():
        dst.mkdir(exist_ok=True)
        for child in src.iterdir():
            _share(child, dst / child.name)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def summarise(emotion: dict[str, Any]) -> dict[str, Any]:
    """The summary of one model's rendered emotions (:func:`~.evaluate_emotion.evaluate_emotions`
    figures): median and lowest strength, how many read as themselves and how many were
    measured, and the emotions other than happy with a ``mouthSmile`` among their three largest
    rendered changes."""
    smiles = [e for e, v in emotion["per_emotion"].items() if e != "happy" and any(
        c["name"] in SMILE for c in sorted(v.get("largest_changes", []), key=lambda c: -abs(c["rendered"]))[:3])]
    return {"median": emotion["strength_median"], "lowest": emotion["strength_min"], "read_right": emotion["recognised"],
            "measured": emotion["measured"], "smile_in_top3": smiles}


def rendered_leave_one_actor_out(
    data_dirs: str | Path | Sequence[str | Path],
    identities: Sequence[str],
    *,
    store: Store,
    audio: str | Path,
    seconds: float = 3.0,
    epochs: int = 300,
    seed: int = 0,
    device: str = "cpu",
    hubert: str | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Each actor left out in turn, every emotion of each identity rendered and graded by that
    actor (see the module docstring). About 3 minutes per actor and identity at 256x256 on 2
    CPU cores.

    Args:
        data_dirs: folders in MEAD's layout (:func:`~emogene_cli.emotion.training.scan_actors`).
        identities: fitted identities of ``store`` (each once).
        audio: speech that drives the renders; its first ``seconds`` per emotion (all of it
            when shorter: ``seconds_per_emotion`` in the records says how long).
        hubert: HuBERT weights, for identities fitted with HuBERT features.

    Returns:
        ``[{"actor", "identity", "training_actors", "audio", "seconds_per_emotion", "epochs",
        "summary" (:func:`summarise`), "per_emotion": {emotion: {"strength", "recognised_as",
        "largest_changes", "emotion_gain"} where measured, else {"not_measured", ...}}}]`` per
        actor, then identity.

    Raises:
        NotFoundError: an identity not fitted, the audio or a folder missing.
        InputError: fewer than two actors, unreadable audio, clips not in MEAD's layout.
        EmogeneError: an identity name that is not valid.
        MismatchError: an identity whose renderer and audio-to-motion model disagree on features.
    """
    dirs = data_roots(data_dirs)
    actors = sorted({c.actor for c in scan_actors(dirs)})
    if len(actors) < 2:
        raise InputError(f"leaving one actor out needs two or more actors (found {', '.join(actors)})", path=dirs[0])
    names = list(dict.fromkeys(store.resolve_identity(n) for n in identities))
    for name in names:
        store.require_fitted(name)
    load_audio(audio)  # unreadable or missing audio fails before any training
    store.mead_cache_dir.mkdir(parents=True, exist_ok=True)
    store.third_party_dir.mkdir(parents=True, exist_ok=True)  # weights fetched on the way stay in the user's store
    records = []
    with tempfile.TemporaryDirectory(prefix=".leave-one-out-", dir=store.home) as tmp:
        for actor in actors:
            temp = Store(Path(tmp) / actor)
            _share(store.mead_cache_dir, temp.mead_cache_dir)  # the clips are tracked once
            _share(store.third_party_dir, temp.third_party_dir)  # speech encoders
            if store.generic_a2m_path.is_file():
                _share(store.generic_a2m_path, temp.generic_a2m_path)  # train-a2m's model, for identities without their own
            if progress:
                progress(f"LDM without {actor}", 0, epochs)
            report = train_ldm(dirs, store=temp, epochs=epochs, seed=seed, device=device, leave_out=(actor,),
                               measure_held_out=False,
                               progress=(lambda label, k, n, a=actor: progress(f"LDM without {a}", k, n) if label == "train" else None)
                               if progress else None)
            for name in names:
                for part in IDENTITY_PARTS:
                    if (store.identity_dir(name) / part).exists():
                        _share(store.identity_dir(name) / part, temp.identity_dir(name) / part)
                label = f"{name} without {actor}"
                emo = evaluate_emotions(name, store=temp, audio=audio, seconds_per_emotion=seconds, seed=seed,
                                        emotion_actors=dirs, device=device, hubert=hubert,
                                        progress=(lambda part, k, n, lab=label: progress(f"{lab}: {part}", k, n)) if progress else None)
                keep = ("strength", "recognised_as", "largest_changes", "emotion_gain", "not_measured")
                per = {e: {k: v[k] for k in keep if k in v} for e, v in emo["per_emotion"].items() if e != "neutral"}
                records.append({"actor": actor, "identity": name, "training_actors": report.actors, "audio": str(audio),
                                "seconds_per_emotion": emo["seconds_per_emotion"], "epochs": epochs,
                                "summary": summarise(emo), "per_emotion": per})
    return records
