#!/usr/bin/env bash
# Create ./.venv and install emogene with a CPU build of PyTorch (no CUDA downloads), at the
# exact versions the test suite passed with (requirements/lock.txt, see scripts/lock.sh).
#
#   EMOGENE_TORCH=skip   on a GPU machine: keep the torch build already installed in the venv
#                        (install the one you want first) and do not pin torch
#   EMOGENE_LATEST=1     the newest releases within pyproject.toml's ranges instead of the lock,
#                        in ./.venv-latest, to see whether a new release breaks something
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
[ "${EMOGENE_LATEST:-}" = 1 ] && venv=.venv-latest
python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
if [ "${EMOGENE_LATEST:-}" = 1 ]; then
  grep -v '^#' requirements/torch.in > "$constraints"
  upgrade=(--upgrade --upgrade-strategy eager)
else
  grep -E '^[A-Za-z0-9_.-]+==' requirements/lock.txt > "$constraints"
  upgrade=()
fi
if [ "${EMOGENE_TORCH:-}" = skip ]; then
  sed -i '/^torch==/d' "$constraints"
else
  python -m pip install -q -c "$constraints" torch
fi
python -m pip install -q "${upgrade[@]}" -c "$constraints" -e ".[test]"
python -m pip list --format=freeze 2>/dev/null | grep -iE '^(torch|typer|click|numpy|transformers|mediapipe|librosa|opencv-contrib-python|safetensors)==' | tr '\n' ' '
echo "(installed in $venv)"
