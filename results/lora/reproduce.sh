#!/usr/bin/env bash
# LoRA as an option for the offline preset (results/lora): CORY with LoRA adapters, 30 steps, fp32, from the worktree
# of the evidence study's commit, so its full fine-tuning arm is the study's own runs (results/imdb-claims/runs,
# default setting, same prompts, classifier, precision and seeds; no LR schedule, so their step 30 is a 30-step run).
# Fixed before the runs: r 16, alpha 32, every linear layer, learning rate 5e-4 = 10x full fine-tuning's (LoRA's
# best learning rate sits about 10x above full fine-tuning's), everything else the study's. Resumable; a finished
# run (its step-30 evaluation logged) is skipped.
#   usage: results/lora/reproduce.sh SEED [SEED ...]     e.g. taskset -c 0 nohup results/lora/reproduce.sh 0 1 &
set -euo pipefail
{  # bash reads a script as it runs: a block is parsed whole first, so editing this file mid-run is safe
cd "$(dirname "$0")/../.."  # the repository root
[ $# -ge 1 ] || { echo "usage: results/lora/reproduce.sh SEED [SEED ...]"; exit 2; }
commit=$(.venv/bin/python -c "import json; print(json.load(open('results/imdb-claims/study.json'))['training_commits'][0])")
tree=../cory-study-imdb-claims
source scripts/pinned_worktree.sh
pinned_worktree "$tree" "$commit"
.venv/bin/python -m cory.assets smollm2 >/dev/null
.venv/bin/python -m cory.assets sentiment-minilm-imdb >/dev/null  # the study's classifier (the first recipe)
cd "$tree"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1
RUN=(--preset offline --steps 30 --eval_every 10 --eval_prompts 128 --mixed_precision no --output_dir runs/lora
     --save_every 10 --resume_from auto --log_samples_every 0 --lora_r 16 --lora_alpha 32 --learning_rate 5e-4)
for seed in "$@"; do
  grep -qs '"step": 30' "runs/lora/cory-lora16-seed$seed/eval.jsonl" ||
    .venv/bin/python imdb_train/cory.py "${RUN[@]}" --seed "$seed" --run_name "cory-lora16-seed$seed"
  rm -rf "runs/lora/cory-lora16-seed$seed/checkpoints"  # finished: the report reads its logs
done
exit
}
