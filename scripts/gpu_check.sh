#!/usr/bin/env bash
# The prepared GPU check (issue: prove the paper presets' code paths when a GPU is lent). On the GPU machine:
#   bash scripts/gpu_check.sh                 # after scripts/gpu_wheels.sh here; carry .gpu_carry
#   bash scripts/gpu_check.sh --cpu-dry-run   # here: each command line once at toy size on the CPU (tests/test_gpu_check.py)
# Writes gpu_check.json and gpu_check.md under $OUT (the folder a GPU run sends back), else gpu_check_results/.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && [ "${1:-}" = "--cpu-dry-run" ] && PY=.venv/bin/python
if [ -d .gpu_carry/whl ] && [ "${1:-}" != "--cpu-dry-run" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu_carry/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's cory and tests (the GPU machine has no editable install)
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec "$PY" scripts/gpu_check.py --out "${OUT:-gpu_check_results}" "$@"
