"""Copy a model that a store trained into the package as the bundled default.

    python scripts/bundle_model.py a2m STORE_HOME "emogene train-a2m ../shared/data/talking --audio-features whisper --folds 6"
    python scripts/bundle_model.py ldm STORE_HOME "emogene train-ldm ../shared/data/mead"

Reads ``STORE_HOME/models/{a2m,ldm}.safetensors`` and writes
``emogene_cli/pretrained/{a2m_generic,ldm}.safetensors``: the same tensors and metadata, with the
command that reproduces it (``reproduce``) and machine paths under ``../shared`` made relative,
so that the file names its data, not this machine's folders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
#: kind -> (the store's file under models/, the bundled file under emogene_cli/pretrained/)
KINDS = {"a2m": ("a2m.safetensors", "a2m_generic.safetensors"), "ldm": ("ldm.safetensors", "ldm.safetensors")}


def main(kind: str, home: str, command: str) -> None:
    if kind not in KINDS:
        sys.exit(f"error: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    source = Path(home) / "models" / KINDS[kind][0]
    out = REPO / "emogene_cli" / "pretrained" / KINDS[kind][1]
    with safe_open(str(source), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata())
    shared = str((REPO.parent / "shared").resolve()) + "/"
    meta = {k: v.replace(shared, "../shared/") for k, v in meta.items()}
    meta["reproduce"] = command
    meta["bundled"] = "emogene_cli/pretrained: the default when a store has none of its own (see its README.md)"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(out)
    cv = json.loads(meta.get("cross_validation", "{}") or "{}")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), feature kind {meta.get('feature_kind')}, "
          f"params {meta.get('params', '')[:120]}, cross-validation keys: {list(cv)[:6]}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
