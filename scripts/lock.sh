#!/usr/bin/env bash
# Refresh requirements/lock.txt: the exact versions scripts/install.sh installs, resolved by
# pip-compile (pip-tools) from pyproject.toml (with the test extra) and requirements/torch.in.
#
#   bash scripts/lock.sh                     # resolve the newest releases within pyproject's ranges
#   EMOGENE_LATEST=1 bash scripts/test.sh    # then check the suite with them before committing
#
# pip-tools runs from its own throw-away venv, so it never enters emogene's environment.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/python" -m pip install -q "pip-tools>=7.4"
"$tools/bin/pip-compile" -q --extra test --strip-extras --allow-unsafe --no-emit-index-url \
  --no-emit-find-links --output-file requirements/lock.txt pyproject.toml requirements/torch.in
# One lock for the CPU and the CUDA build of the same torch release.
sed -i -E 's/^(torch==[^+ ]+)\+[A-Za-z0-9.]+/\1/' requirements/lock.txt
echo "wrote requirements/lock.txt ($(grep -c '==' requirements/lock.txt) pinned packages)"
