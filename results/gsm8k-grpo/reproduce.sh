#!/usr/bin/env bash
# GSM8K: GRPO vs CORY-GRPO from the SFT warm start, as results/gsm8k-grpo/plan.md fixes it (settings, endpoints),
# run from a git worktree pinned at results/gsm8k-grpo/training_commit. Each part is resumable and skipped once
# done, so two cores can share the parts (one process per part, `taskset` one core each):
#   results/gsm8k-grpo/reproduce.sh warm-start|grpo|cory|eval-warm-start|eval-grpo|eval-cory|report|all
# and the plan's declared extension, after the 10-step evaluations: extend-grpo|extend-cory (the same runs on to 20
# steps from their checkpoints, then evaluated the same way as *-step20); eval-cory-step20 lets a second core take
# one of the two CORY-GRPO evaluations.
# Run directories: runs/gsm8k-grpo/ (not committed); evaluations: results/gsm8k-grpo/evals/*.json.gz (committed; without
# the sampled texts, which the report does not read).
set -euo pipefail
{  # parsed whole before it runs: editing this file mid-run is safe
cd "$(dirname "$0")/../.."  # the repository root
part=${1:?usage: results/gsm8k-grpo/reproduce.sh warm-start|grpo|cory|eval-warm-start|eval-grpo|eval-cory|extend-grpo|extend-cory|eval-cory-step20|report|all}
here=$PWD
out=$here/results/gsm8k-grpo
runs=$here/runs/gsm8k-grpo
tree=../cory-gsm8k-grpo
source scripts/pinned_worktree.sh
pinned_worktree "$tree" "$(cat "$out/training_commit")"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py="$here/.venv/bin/python"
steps=10
common=(--preset offline --advantage_estimator grpo --samples_per_prompt 4 --learning_rate 1e-4 --mixed_precision bf16
        --steps=$steps --seed 0 --output_dir "$runs" --save_every 2 --resume_from auto)
evaluate() {  # MODEL NAME: pass@1 greedy and pass@1..8 on the 200 held-out problems, once (skipped while another part has it);
  # this checkout's evaluation code: --no-sample_texts came after the pin, the scoring is unchanged since
  [ -f "$out/evals/$2.json.gz" ] && return 0
  mkdir -p "$runs"
  ( flock -n 9 || { echo "gsm8k_grpo.sh: another process evaluates $2"; exit 0; }
    "$py" -m cory.eval.gsm8k --preset offline --n_problems 200 --n_samples 8 \
      --k 1 2 3 4 5 6 7 8 --max_new_tokens 96 --batch_size 64 --dtype bfloat16 --no-sample_texts --model "$1" --out "$out/evals/$2.json.gz"
  ) 9>"$runs/.eval-$2.lock"
}
trained() { [ -d "$runs/$1/final" ] || (cd "$tree" && "$py" "$2" "${common[@]}" --run_name "$1" "${@:3}"); }
extended() {  # NAME SCRIPT TEN_STEP_EVAL [ARGS]: on to 20 steps from the run's last checkpoint, once its 10-step evaluation is saved
  [ -f "$out/evals/$3.json.gz" ] || { echo "gsm8k_grpo.sh: evaluate the 10-step $1 run first ($3)"; exit 2; }
  (cd "$tree" && "$py" "$2" "${common[@]/--steps=$steps/--steps=20}" --run_name "$1" "${@:4}")
}
case $part in
  warm-start) (cd "$tree" && "$py" -m cory.assets gsm8k-sft) ;;
  grpo) trained grpo gsm8k_train/ppo.py --batch_size 64 ;;  # 16 prompts x 4: the 64 responses a CORY step generates
  cory) trained cory gsm8k_train/cory.py ;;
  eval-warm-start) evaluate smollm2-135m-gsm8k-sft warm-start ;;
  eval-grpo) evaluate "$runs/grpo/final/policy" grpo ;;
  eval-cory) evaluate "$runs/cory/final/agent_a" cory-a && evaluate "$runs/cory/final/agent_b" cory-b ;;
  extend-grpo) extended grpo gsm8k_train/ppo.py grpo --batch_size 64 && evaluate "$runs/grpo/final/policy" grpo-step20 ;;
  extend-cory) extended cory gsm8k_train/cory.py cory-b && evaluate "$runs/cory/final/agent_a" cory-a-step20 \
      && evaluate "$runs/cory/final/agent_b" cory-b-step20 ;;
  eval-cory-step20) [ "$(tail -1 "$runs/cory/metrics.jsonl" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["step"])')" = 19 ] \
      || { echo "gsm8k_grpo.sh: the CORY-GRPO run has not reached 20 steps (extend-cory)"; exit 2; }
    evaluate "$runs/cory/final/agent_b" cory-b-step20 && evaluate "$runs/cory/final/agent_a" cory-a-step20 ;;  # B first: extend-cory starts with A
  report)
    warm="SFT warm start (before RL)" a="CORY-GRPO agent A" b="CORY-GRPO agent B"
    rows=("$warm=$out/evals/warm-start.json.gz" "GRPO=$out/evals/grpo.json.gz" "$a=$out/evals/cory-a.json.gz" "$b=$out/evals/cory-b.json.gz")
    pairs=("$warm" "GRPO=$a,$b")
    if [ -f "$out/evals/grpo-step20.json.gz" ] && [ -f "$out/evals/cory-b-step20.json.gz" ]; then  # the extension
      rows+=("GRPO (20 steps)=$out/evals/grpo-step20.json.gz" "$a (20 steps)=$out/evals/cory-a-step20.json.gz"
             "$b (20 steps)=$out/evals/cory-b-step20.json.gz")
      pairs+=("GRPO (20 steps)=$a (20 steps),$b (20 steps)")
    fi
    notes=("$out/plan.md"); [ -f "$out/findings.md" ] && notes=("$out/findings.md" "${notes[@]}")
    "$py" scripts/gsm8k_report.py --out "$out" --notes "${notes[@]}" --compare "${rows[@]}" --paired_to "${pairs[@]}" ;;
  all) for p in warm-start grpo cory eval-warm-start eval-grpo eval-cory extend-grpo extend-cory report; do "$0" "$p"; done ;;
  *) echo "gsm8k_grpo.sh: unknown part $part"; exit 2 ;;
esac
exit
}
