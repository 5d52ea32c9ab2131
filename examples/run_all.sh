#!/usr/bin/env bash
# Install emogene into ./.venv and run the whole chain on a video, MEAD-style clips and speech.
#   bash examples/run_all.sh VIDEO MEAD_DIR AUDIO [EMOTION] [PRESET]
# Defaults use the test data in ../shared (a sibling of this repository).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
shared="$here/../shared"
video="${1:-$shared/data/video/obama_20s.mp4}"
mead="${2:-$shared/data/mead}"
audio="${3:-$shared/data/speech/radio31_8s.wav}"
emotion="${4:-happy}"
preset="${5:-quick}"
cd "$here"
bash scripts/install.sh
. .venv/bin/activate
export EMOGENE_MODEL_DIR="${EMOGENE_MODEL_DIR:-$shared/models}"
name="$(basename "${video%.*}")"
size=256; [ "$preset" = full ] && size=512
emogene preprocess "$video" --name "$name" --size "$size"
emogene fit-identity "$name" --preset "$preset"
emogene train-ldm "$mead"
mkdir -p out
emogene speak "$audio" --identity "$name" --emotion "$emotion" -o "out/${name}_${emotion}.mp4" --preview
emogene list
