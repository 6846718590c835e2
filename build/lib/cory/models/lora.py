"""LoRA through peft: the adapter config for a model, building and loading adapters quietly, with one-line errors."""
from __future__ import annotations

import warnings
from contextlib import contextmanager

from cory.errors import UsageError


def lora_config(base, r: int, alpha: int, dropout: float, targets: str):
    """peft's LoraConfig for `base`; `targets` is 'all-linear' or comma-separated module names."""
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
        task_type="CAUSAL_LM",
        fan_in_fan_out=any(type(m).__name__ == "Conv1D" for m in base.modules()),  # GPT-2 stores (in, out) weights
    )


@contextmanager
def quiet_peft():
    """Without the FutureWarning peft 0.x triggers on every adapter it builds or loads by reading transformers 5's
    deprecated `is_gradient_checkpointing` (peft's own call, nothing a user can change)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def with_lora(base, lora, adapter_name: str = "default"):
    """peft's `get_peft_model`, quietly."""
    from peft import get_peft_model

    with quiet_peft():
        try:
            return get_peft_model(base, lora, adapter_name=adapter_name)
        except ValueError as error:  # peft names the modules it did not find, in a long message
            raise UsageError(f"lora_target_modules do not match the model's layers: {str(error).splitlines()[0][:200]}") from None


def load_adapter(base, adapter_dir):
    """A saved peft adapter on `base`, merged in: a plain transformers model."""
    from peft import PeftModel

    with quiet_peft():
        return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
