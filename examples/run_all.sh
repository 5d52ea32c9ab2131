#!/usr/bin/env bash
# Install emogene into ./.venv, then make a video of the person in VIDEO saying SPEECH with an emotion.
#
#   bash examples/run_all.sh VIDEO.mp4 SPEECH.wav [EMOTION] [PRESET]
#
# VIDEO: a few minutes (at least ~5 s) of one person talking to the camera, with sound.
# SPEECH: any speech audio. EMOTION: angry, contempt, disgusted, fear, happy (default),
# neutral, sad, surprised, a blend such as happy:0.7,surprised:0.3, or all (a grid of eight).
# PRESET: tiny (seconds, a smoke test), quick (default; ~7-10 min for 20 s of video on a laptop
# CPU) or full (a GPU). Nothing else is needed: the emotion and audio-to-motion models ship
# with emogene, and the MediaPipe and Whisper model files download once on first use (offline:
# set EMOGENE_MODEL_DIR to a folder holding them; `emogene doctor` says what is missing).
# Where ../shared (the project's test data) sits beside the repository, VIDEO and SPEECH
# default to its obama_20s clip and radio31 speech, and its model files are used.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
shared="$here/../shared"
if [ $# -lt 2 ] && [ ! -d "$shared/data" ]; then
  echo "usage: bash examples/run_all.sh VIDEO.mp4 SPEECH.wav [EMOTION] [PRESET]" >&2
  exit 2
fi
video="$(realpath "${1:-$shared/data/video/obama_20s.mp4}")"
audio="$(realpath "${2:-$shared/data/speech/radio31_8s.wav}")"
emotion="${3:-happy}"
preset="${4:-quick}"
cd "$here"
bash scripts/install.sh
. .venv/bin/activate
if [ -z "${EMOGENE_MODEL_DIR:-}" ] && [ -f "$shared/models/face_landmarker.task" ]; then
  export EMOGENE_MODEL_DIR="$shared/models"
fi
case "$preset" in full) size=512 ;; tiny) size=128 ;; *) size=256 ;; esac
name="$(python -c 'import sys; from emogene_cli.store import name_from_file; print(name_from_file(sys.argv[1]) or "person")' "$(basename "${video%.*}")")"
emogene preprocess "$video" --name "$name" --size "$size"
emogene fit-identity "$name" --preset "$preset"
mkdir -p out
label="$(printf '%s' "$emotion" | tr -c 'A-Za-z0-9_-' '_')"
emogene speak "$audio" --identity "$name" --emotion "$emotion" -o "out/${name}_${label}.mp4" --preview
emogene list
echo "wrote $here/out/${name}_${label}.mp4"
