#!/usr/bin/env bash
# Install emogene (CPU) and run the test suite against ../shared/data and ../shared/models.
# EMOGENE_LATEST=1 runs it against the newest releases instead of requirements/lock.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
venv=.venv
[ "${EMOGENE_LATEST:-}" = 1 ] && venv=.venv-latest
. "$venv/bin/activate"
export EMOGENE_MODEL_DIR="${EMOGENE_MODEL_DIR:-$(cd .. && pwd)/shared/models}"
export HF_HUB_OFFLINE=1
python -m pytest -q "$@"
