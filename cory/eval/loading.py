"""Load any saved policy for evaluation: a full HF model directory, a peft adapter directory, an alias or hub id."""
from __future__ import annotations

import json
from pathlib import Path

from cory.models.load import load_causal_lm, load_tokenizer
from cory.models.lora import load_adapter


def adapter_dir(path: Path) -> Path | None:
    """The directory holding adapter_config.json (peft puts a named adapter in a subdirectory)."""
    found = sorted(Path(path).rglob("adapter_config.json")) if Path(path).is_dir() else []
    return found[0].parent if found else None


def load_policy_for_eval(model: str, dtype: str = "float32", device="cpu"):
    """(model, tokenizer) for `model`; an adapter is applied on its recorded base model, merged for speed."""
    adapter = adapter_dir(Path(model))
    if adapter is None:
        return load_causal_lm(model, dtype, device), load_tokenizer(model)
    base_name = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    lm = load_adapter(load_causal_lm(base_name, dtype, device), adapter)
    return lm.eval(), load_tokenizer(base_name)  # an adapter trains no tokens: the base's tokenizer is the one
