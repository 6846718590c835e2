#!/usr/bin/env bash
# Run (or continue) a committed study from a git worktree pinned at its training commit, so that later work on
# this checkout never mixes code versions into the study; each finished run's ledger entry is committed here at
# once; PYTHONPATH puts the worktree's own cory before this checkout's editable install. Resumable: run it again
# after a stop (a fresh machine needs only `make assets`).
#   usage: scripts/run_study.sh NAME [JOBS]      e.g. taskset -c 1 scripts/run_study.sh imdb-claims 1
# Stop: `kill PID` of its compare.py stops the queue and the live run at once, checkpoints whole (code from a28f11c on);
# a study pinned at older code ignores that (its runs would train on): kill its compare.py and the run's process.
set -euo pipefail
{  # bash reads a script as it runs: a block is parsed whole first, so editing this file mid-run is safe
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/run_study.sh NAME [JOBS]}
jobs=${2:-1}
study=results/$name/study.json
[ -f "$study" ] || { echo "no $study: create and commit the study first (python scripts/compare.py --name $name ...)"; exit 2; }
commit=$(.venv/bin/python -c "import json; print(json.load(open('$study'))['training_commits'][0])")
tree=../cory-study-$name
source scripts/pinned_worktree.sh
pinned_worktree "$tree" "$commit"
here=$PWD
.venv/bin/python scripts/compare.py --name "$name" --clear_unresumable  # this checkout's code (the pinned one may append to a killed attempt's log)
cd "$tree"
exec env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH="$PWD" .venv/bin/python scripts/compare.py --name "$name" --results_dir "$here/results" \
    --jobs "$jobs" --commit
exit
}
