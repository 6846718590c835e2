#!/usr/bin/env bash
# GSM8K evidence for the critic-free fix 1 (results/critic-free/gsm8k-fix1.md): GRPO k=4 on the offline preset,
# 10 steps, seed 0, fp32, once with the code before the fix (5fbfb6b) and once after it (5372ab1, the commit of the
# IMDB critic-free evidence), each from a git worktree pinned there; results/critic-free/grpo_tied_groups.py records the share
# of tied groups and the advantages those groups got. Builds the SFT warm start first (once). A finished run is skipped;
# the report is written once both have finished. On two cores, run the two versions side by side:
#   usage: results/critic-free/reproduce-gsm8k-fix1.sh [before|after ...]     e.g. taskset -c 1 nohup results/critic-free/reproduce-gsm8k-fix1.sh before &
set -euo pipefail
{  # bash reads a script as it runs: a block is parsed whole first, so editing this file mid-run is safe
cd "$(dirname "$0")/../.."  # the repository root
source scripts/pinned_worktree.sh
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1
.venv/bin/python -m cory.assets gsm8k-sft >/dev/null
FLAGS=(--preset offline --steps 10 --seed 0 --advantage_estimator grpo --samples_per_prompt 4 --mixed_precision no
       --eval_every 0 --log_samples_every 0 --output_dir runs/gsm8k-fix1)
declare -A COMMIT=([before]=5fbfb6b [after]=5372ab1)
finished() { [ -f "runs/gsm8k-fix1/$1.jsonl" ] && [ "$(wc -l < "runs/gsm8k-fix1/$1.jsonl")" -ge 10 ]; }
versions=("$@"); [ $# -gt 0 ] || versions=(before after)
for label in "${versions[@]}"; do
  [ -n "${COMMIT[$label]:-}" ] || { echo "run_gsm8k_fix1.sh: unknown version $label (before, after)"; exit 2; }
  commit=${COMMIT[$label]}
  tree=../cory-$commit
  [ "$commit" = 5372ab1 ] && tree=../cory-cf  # the critic-free evidence's worktree
  pinned_worktree "$tree" "$commit"
  out=runs/gsm8k-fix1/$label.jsonl
  finished "$label" && continue
  rm -f "$out"  # a stopped run starts again (10 steps), its run directory overwritten
  PYTHONPATH="$tree" .venv/bin/python results/critic-free/grpo_tied_groups.py run "$tree" "$out" -- "${FLAGS[@]}" --run_name "grpo-$label" --overwrite true
done
finished before && finished after || exit 0
.venv/bin/python results/critic-free/grpo_tied_groups.py report "before fix 1 (5fbfb6b)=runs/gsm8k-fix1/before.jsonl" \
  "after fix 1 (5372ab1)=runs/gsm8k-fix1/after.jsonl" --out results/critic-free/gsm8k-fix1 \
  --title "GSM8K, GRPO k = 4, before and after fix 1 (offline preset, 10 steps, seed 0, fp32)"
exit
}
