#!/usr/bin/env bash
# Create ./.venv and install emogene with a CPU build of PyTorch (no CUDA downloads).
# On a GPU machine, install the torch build you want first and pass EMOGENE_TORCH=skip.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
if [ "${EMOGENE_TORCH:-}" != skip ]; then
  python -m pip install -q "torch==2.13.0"
fi
python -m pip install -q -e ".[test]"
