"""What one agent needs to train under DDP or DeepSpeed beside another agent, and stats over processes."""
from __future__ import annotations

import torch
from accelerate import Accelerator

from cory.errors import UsageError
from cory.ppo.policy import ValueHeadPolicy


def mean_over_processes(accelerator: Accelerator, stats: dict) -> dict:
    """Every number of `stats` replaced by its mean over processes (other values kept); one all-reduce."""
    if accelerator.num_processes == 1:
        return stats
    keys = sorted(k for k, v in stats.items() if isinstance(v, (int, float)))
    means = accelerator.reduce(torch.tensor([float(stats[k]) for k in keys], device=accelerator.device, dtype=torch.float64), "mean")
    return {**stats, **dict(zip(keys, means.tolist()))}


def any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True if `flag` is true on any process: every process must take the same branch, or DDP hangs."""
    if accelerator.num_processes == 1:
        return bool(flag)
    return bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), "sum").item() > 0)


def ddp_only_own_parameters(policy: ValueHeadPolicy, own: list[torch.Tensor]) -> None:
    """DDP syncs this agent's trainable parameters only. With LoRA both agents live in one peft model: without
    this, one agent's DDP would also claim (and mis-sync) the other agent's adapter and the frozen base."""
    from torch.nn.parallel import DistributedDataParallel

    own_ids = {id(p) for p in own}
    others = [name for name, p in policy.named_parameters() if id(p) not in own_ids]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(policy, others)


def check_deepspeed_accumulation(accelerator: Accelerator, ours: int) -> None:
    """DeepSpeed steps its optimizer every `gradient_accumulation_steps` backward calls of its own config."""
    theirs = accelerator.state.deepspeed_plugin.deepspeed_config.get("gradient_accumulation_steps")
    if theirs not in (ours, "auto"):
        raise UsageError(f"the DeepSpeed config has gradient_accumulation_steps={theirs} but PPOConfig has {ours}: make them equal")
