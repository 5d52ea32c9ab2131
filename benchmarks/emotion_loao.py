"""Leave one actor out, on rendered frames: how emotions read to an actor the LDM never saw.

    python benchmarks/emotion_loao.py --identity obama_20s --identity ng_clip1_25s \\
        --audio ../shared/data/speech/radio31_8s.wav \\
        --actors ../shared/data/mead --actors ../shared/data/crema_d [--home STORE] [--json out.json]

For each actor of the ``--actors`` folders (MEAD's layout): train the landmark deformation
model on all the other actors (``train-ldm --leave-out ACTOR``), then for each identity render
every emotion from the first ``--seconds`` of ``--audio`` (same poses and seed), re-track the
frames and measure each emotion's blendshape change against the neutral render, projected on
the left-out actor's own real change (``evaluate --emotion-actors``): strength 1 = as strong
as that actor, and the emotion it reads as (nearest of the actor's emotions by cosine). The
identity's tracker gain and emotion gains are measured anew for each model, as ``speak``
would, against that model's training actors only.

Prints a table per identity (rows: emotions; columns: the left-out actor) with the median,
the lowest strength, how many read as themselves and which emotions other than happy have a
``mouthSmile`` among their three largest changes; ``--json`` keeps every figure.

Nothing in the user's store is written except the tracked clips' cache
(``models/mead_cache``, shared): each model and the identities' calibrations for it live in a
temporary store that is deleted at the end. About 3 minutes per identity and actor at
256x256 on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

SMILE = ("mouthSmileLeft", "mouthSmileRight")


def _link_identity(store, home: Path, name: str) -> None:
    """The identity's preprocessed data and fitted models, linked read-only into ``home`` (no
    calibrations: they are measured for the temporary store's LDM)."""
    src = store.identity_dir(name)
    dst = home / "identities" / name
    dst.mkdir(parents=True)
    for part in ("dataset.safetensors", "frames", "renderer.safetensors", "a2m.safetensors"):
        if (src / part).exists():
            (dst / part).symlink_to((src / part).resolve())


def _summary(per_emotion: dict) -> dict:
    strengths = {e: v["strength"] for e, v in per_emotion.items() if "strength" in v}
    smiles = [e for e, v in per_emotion.items() if e != "happy" and "largest_changes" in v
              and any(c["name"] in SMILE for c in sorted(v["largest_changes"], key=lambda c: -abs(c["rendered"]))[:3])]
    return {"median": statistics.median(strengths.values()) if strengths else float("nan"),
            "lowest": min(strengths.values()) if strengths else float("nan"),
            "read_right": sum(per_emotion[e].get("recognised_as") == e for e in strengths),
            "measured": len(strengths), "smile_in_top3": smiles}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identity", action="append", required=True, help="a fitted identity (repeat for several)")
    parser.add_argument("--audio", required=True, help="speech that drives the renders")
    parser.add_argument("--actors", action="append", required=True, help="a folder in MEAD's layout (repeat for several)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds rendered per emotion (default 3)")
    parser.add_argument("--epochs", type=int, default=300, help="LDM training epochs (train-ldm's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--home", default=None, help="the store holding the identities (default: emogene's)")
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args(argv)

    from emogene_cli.emotion import train_ldm
    from emogene_cli.emotion.training import scan_actors
    from emogene_cli.pipelines.evaluate import evaluate_emotions
    from emogene_cli.store import Store

    store = Store(args.home)
    actors = sorted({c.actor for c in scan_actors(args.actors)})
    names = [store.resolve_identity(n) for n in args.identity]
    store.mead_cache_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"audio": args.audio, "seconds": args.seconds, "actors": actors, "identities": {}}
    for actor in actors:
        with tempfile.TemporaryDirectory(prefix=f"emogene-loao-{actor}-") as tmp:
            home = Path(tmp)
            (home / "models").mkdir()
            (home / "models" / "mead_cache").symlink_to(store.mead_cache_dir.resolve())
            temp = Store(home)
            print(f"training the LDM without {actor} ...", flush=True)
            report = train_ldm(args.actors, store=temp, epochs=args.epochs, seed=args.seed, leave_out=(actor,))
            for name in names:
                _link_identity(store, home, name)
                print(f"  {name}: rendering every emotion, measured against {actor} ...", flush=True)
                emo = evaluate_emotions(name, store=temp, audio=args.audio, seconds_per_emotion=args.seconds,
                                        seed=args.seed, emotion_actors=args.actors)
                assert emo["reference_actors"] == [actor], emo["reference_actors"]
                results["identities"].setdefault(name, {})[actor] = {
                    "training_actors": report.actors, "summary": _summary(emo["per_emotion"]),
                    "per_emotion": {e: {k: v[k] for k in ("strength", "recognised_as", "largest_changes", "emotion_gain") if k in v}
                                    for e, v in emo["per_emotion"].items() if e != "neutral"},
                }
    for name, per_actor in results["identities"].items():
        print(f"\n{name}: strength against the left-out actor (1 = as the actor), in brackets what it reads as")
        emotions = sorted({e for a in per_actor.values() for e in a["per_emotion"]})
        print("emotion".ljust(12) + "".join(f"without {a}".rjust(24) for a in per_actor))
        for e in emotions:
            cells = []
            for a in per_actor.values():
                v = a["per_emotion"].get(e, {})
                cells.append(f"{v['strength']:.2f} ({v['recognised_as']})" if "strength" in v else "-")
            print(e.ljust(12) + "".join(c.rjust(24) for c in cells))
        for label, key in (("median", "median"), ("lowest", "lowest")):
            print(label.ljust(12) + "".join(f"{a['summary'][key]:.2f}".rjust(24) for a in per_actor.values()))
        print("read right".ljust(12) + "".join(f"{a['summary']['read_right']} of {a['summary']['measured']}".rjust(24)
                                                for a in per_actor.values()))
        print("smile top 3".ljust(12) + "".join((", ".join(a["summary"]["smile_in_top3"]) or "none").rjust(24)
                                                 for a in per_actor.values()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
