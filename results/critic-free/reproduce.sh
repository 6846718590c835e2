#!/usr/bin/env bash
# The critic-free evidence (results/critic-free) for one or more seeds, from a git worktree pinned at the commit
# whose settings the summary states, so later work on this checkout never mixes code versions into it. Resumable:
# a finished run (its step-30 evaluation logged) is skipped, a stopped one continues from its checkpoint.
#   usage: results/critic-free/reproduce.sh SEED [SEED ...]     e.g. taskset -c 0 nohup results/critic-free/reproduce.sh 1 &
set -euo pipefail
{  # bash reads a script as it runs: a block is parsed whole first, so editing this file mid-run is safe
cd "$(dirname "$0")/../.."  # the repository root
COMMIT=5372ab1  # the critic-free fixes, as run for seed 0
[ $# -ge 1 ] || { echo "usage: results/critic-free/reproduce.sh SEED [SEED ...]"; exit 2; }
tree=../cory-cf
source scripts/pinned_worktree.sh
pinned_worktree "$tree" "$COMMIT"
.venv/bin/python -m cory.assets smollm2 >/dev/null
.venv/bin/python -m cory.assets sentiment-minilm-imdb >/dev/null  # that commit's offline reward (the first recipe)
cd "$tree"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1
RUN=(--preset offline --steps 30 --eval_every 10 --eval_prompts 128 --mixed_precision no --output_dir runs/critic-free
     --save_every 10 --resume_from auto --log_samples_every 0 --advantage_estimator grpo)
finished() { grep -qs '"step": 30' "runs/critic-free/$1/eval.jsonl"; }
for seed in "$@"; do
  finished grpo-seed$seed || .venv/bin/python imdb_train/ppo.py "${RUN[@]}" --seed $seed --run_name grpo-seed$seed --samples_per_prompt 4
  finished cory-grpo-query-seed$seed || .venv/bin/python imdb_train/cory.py "${RUN[@]}" --seed $seed \
    --run_name cory-grpo-query-seed$seed --samples_per_prompt 4
  finished cory-grpo-prompt-seed$seed || .venv/bin/python imdb_train/cory.py "${RUN[@]}" --seed $seed \
    --run_name cory-grpo-prompt-seed$seed --samples_per_prompt 2 --group_by prompt --observer_samples 3 --batch_size 16
  finished cory-grpo-downstream-seed$seed || .venv/bin/python imdb_train/cory.py "${RUN[@]}" --seed $seed \
    --run_name cory-grpo-downstream-seed$seed --samples_per_prompt 4 --credit downstream
  rm -rf runs/critic-free/*-seed$seed/checkpoints  # finished: the report reads their logs (up to 6 GB a run)
done
exit
}
