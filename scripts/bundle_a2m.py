"""Copy a store's generic audio-to-motion model into the package as the bundled default.

    python scripts/bundle_a2m.py STORE_HOME "emogene train-a2m ../shared/data/talking --audio-features whisper --folds 6"

Writes ``emogene_cli/pretrained/a2m_generic.safetensors``: the same tensors and metadata, with
the command that reproduced it (``reproduce``) and machine paths under ``../shared`` made
relative, so that the file names its data, not this machine's folders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "emogene_cli" / "pretrained" / "a2m_generic.safetensors"


def main(home: str, command: str) -> None:
    source = Path(home) / "models" / "a2m.safetensors"
    with safe_open(str(source), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata())
    shared = str((REPO.parent / "shared").resolve()) + "/"
    meta = {k: v.replace(shared, "../shared/") for k, v in meta.items()}
    meta["reproduce"] = command
    meta["bundled"] = "emogene_cli/pretrained: the default generic model when a store has none (see README)"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(OUT)
    cv = json.loads(meta.get("cross_validation", "{}") or "{}")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB), feature kind {meta.get('feature_kind')}, cross-validation keys: {list(cv)[:6]}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
