"""Build the trainable policies and the one frozen reference they share."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from cory.config import RunConfig
from cory.errors import MissingInput
from cory.models.load import load_causal_lm, readable_weights
from cory.models.lora import load_adapter, lora_config, with_lora
from cory.platform.paths import atomic_directory, save_model_directory
from cory.platform.precision import low_precision_dtype
from cory.ppo.policy import FrozenReference, ValueHeadPolicy


def agent_names(n_agents: int) -> tuple[str, ...]:
    """agent_a, agent_b, ... (one per agent; at most 26)."""
    if not 1 <= n_agents <= 26:
        raise ValueError(f"n_agents must lie in 1..26, got {n_agents}")
    return tuple(f"agent_{chr(ord('a') + i)}" for i in range(n_agents))


def build_policies(run: RunConfig, n_agents: int, device, critic: bool = True) -> tuple[list[ValueHeadPolicy], FrozenReference]:
    """`n_agents` policies (with value heads unless `critic` is False) and one reference.

    Full fine-tuning: n copies of the weights plus one frozen reference, never more.
    LoRA (`lora_r > 0`): one base model holding one adapter per agent; the reference is that base with
    adapters disabled, so the base weights exist once whatever the number of agents.
    With mixed precision the frozen linear weights (the reference; with LoRA the base) are stored in low precision.
    """
    base = load_causal_lm(run.model_name, run.dtype, device, run.load_in_4bit)
    names = agent_names(n_agents)
    frozen_dtype = None if run.load_in_4bit else low_precision_dtype(run.mixed_precision)  # 4-bit stays 4-bit
    if run.lora_r == 0:
        policies = [ValueHeadPolicy(copy.deepcopy(base), critic=critic).to(device) for _ in names]
        return policies, FrozenReference(base, store_dtype=frozen_dtype)
    lora = lora_config(base, run.lora_r, run.lora_alpha, run.lora_dropout, run.lora_target_modules)
    peft_model = with_lora(base, lora, adapter_name=names[0])
    for name in names[1:]:
        peft_model.add_adapter(name, lora)
    policies = [ValueHeadPolicy(peft_model, adapter_name=name, critic=critic).to(device) for name in names]
    return policies, FrozenReference(peft_model, disable_adapters=True, store_dtype=frozen_dtype)


def write_policy(policy: ValueHeadPolicy, tokenizer, directory: Path, base_model: str | None = None) -> None:
    """The policy as a stand-alone HF model, or as a standard peft adapter directory (adapter_config.json at its
    top, the base recorded as `base_model`: the hub id, alias or path the run was given, not this machine's
    resolved path), plus `value_head.safetensors` where the policy has a value head."""
    directory.mkdir(parents=True, exist_ok=True)
    if policy.adapter_name is None:
        policy.lm.save_pretrained(directory)
    else:
        policy.lm.save_pretrained(directory, selected_adapters=[policy.adapter_name])
        nested = directory / policy.adapter_name  # peft writes a non-default adapter one level down
        if (nested / "adapter_config.json").exists():
            for file in nested.iterdir():
                file.replace(directory / file.name)
            nested.rmdir()
        if base_model:
            config_path = directory / "adapter_config.json"
            config = json.loads(config_path.read_text())
            config["base_model_name_or_path"] = base_model
            config_path.write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(directory)
    if policy.v_head is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in policy.v_head.state_dict().items()}, directory / "value_head.safetensors")


def save_policy(policy: ValueHeadPolicy, tokenizer, path, base_model: str | None = None) -> None:
    """`write_policy`, atomically: the directory appears complete or not at all."""
    with atomic_directory(path) as tmp:
        write_policy(policy, tokenizer, tmp, base_model)


def wants_merged(run: RunConfig, policy: ValueHeadPolicy) -> bool:
    """A merged copy only makes sense for a LoRA agent; `auto` skips it from 1B parameters (a full model on disk)."""
    if policy.adapter_name is None or run.save_merged == "false":
        return False
    return run.save_merged == "true" or sum(p.numel() for p in policy.lm.parameters()) < 1e9


def save_merged_policy(adapter_dir, model_name: str, tokenizer, path) -> None:
    """The saved adapter merged into a fresh fp32 copy of its base (never the training base, which other
    agents' adapters share and mixed precision may hold in bf16): `pipeline("text-generation", model=path)` loads it."""
    merged = load_adapter(load_causal_lm(model_name), adapter_dir)
    save_model_directory(path, merged, tokenizer)


def load_policy_weights(policy: ValueHeadPolicy, directory: Path) -> None:
    """Copy weights written by `write_policy` into an existing policy, in place (its optimizer keeps pointing at them)."""
    directory = Path(directory)
    if policy.adapter_name is None:
        with readable_weights(f"checkpoint {directory}"):
            saved = AutoModelForCausalLM.from_pretrained(directory, dtype=policy.lm.dtype)
        policy.lm.load_state_dict(saved.state_dict())
    else:
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        found = sorted(directory.rglob("adapter_model.safetensors"))
        if not found:
            raise MissingInput(f"{directory} holds no adapter_model.safetensors for adapter {policy.adapter_name}")
        set_peft_model_state_dict(policy.lm, load_peft_weights(str(found[0].parent)), adapter_name=policy.adapter_name)
    if policy.v_head is not None:
        policy.v_head.load_state_dict(load_file(directory / "value_head.safetensors"))
