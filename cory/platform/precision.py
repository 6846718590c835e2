"""Mixed precision: which mode a run gets, and the frozen weights that can simply live in low precision.

The mode goes to the one `Accelerator`; `PPOTrainer` runs every model forward (generation, rollout scoring,
training) under `accelerator.autocast()`, and everything after the logits (log-softmax, KL, GAE, whitening,
losses) in fp32. Trainable weights and Adam's state stay fp32.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from cory.errors import UsageError

MODES = ("no", "bf16", "fp16")


NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def bf16_supported(cuda: bool) -> bool:
    """True where bf16 matmuls run natively (a GPU that has them, a CPU with avx512_bf16 / AMX). oneDNN's own check
    also says yes on an AVX-512 CPU without them (an Ice Lake Xeon), where bf16 is emulated: the CPU's flags decide."""
    if cuda:
        return torch.cuda.is_bf16_supported()
    flags = cpu_flags()
    return bool(NATIVE_BF16_FLAGS & flags) if flags is not None else bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_info() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (Linux: model name, flags, ...); {} where there is none."""
    path, info = Path("/proc/cpuinfo"), {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, rest = line.partition(":")
            info.setdefault(key.strip(), rest.strip())
    return info


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux); None where the system does not list them."""
    flags = cpu_info().get("flags")
    return None if flags is None else set(flags.split())


def resolve_mixed_precision(requested: str, cuda: bool, log=print) -> str:
    """The mode for the Accelerator: the config's, or accelerate's (`accelerate launch`) when the config says ''.

    fp16 on a CPU is refused (no fp16 autocast worth having there); bf16 where the hardware lacks it falls back
    to fp32 with one line, never a crash or an emulated, many times slower run.
    """
    mode = requested or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if mode not in MODES:
        raise UsageError(f"mixed_precision must be one of {MODES} (or '' for accelerate's setting), got {mode!r}")
    if mode == "fp16" and not cuda:
        raise UsageError("mixed_precision fp16 needs a CUDA GPU; on a CPU use bf16 (or no)")
    if mode == "bf16" and not bf16_supported(cuda):
        log(f"mixed_precision bf16: this {'GPU' if cuda else 'CPU'} has no native bf16, running in fp32 instead")
        return "no"
    return mode


def low_precision_dtype(mode: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)


def cast_frozen_linear_weights(model: nn.Module, dtype: torch.dtype) -> None:
    """Store the frozen linear weights of `model` in `dtype`, so autocast does not re-cast them on every op.

    Only linear layers (`nn.Linear`, GPT-2's `Conv1D`): under autocast they compute in `dtype` anyway, so the result is bit-identical to
    autocast over fp32 weights, while embeddings and norms (which autocast leaves in fp32) keep fp32. A head
    tied to the input embedding gets its own low-precision copy; the embedding stays fp32. Trainable weights
    and every peft adapter (an inactive adapter is frozen only until it is switched on) are left alone.
    """
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

    linear = (nn.Linear, Conv1D)
    others = {id(p) for m in model.modules() if not isinstance(m, linear) for p in m.parameters(recurse=False)}
    adapters = {id(m) for layer in model.modules() for name in getattr(layer, "adapter_layer_names", ())
                for m in getattr(layer, name).modules()}
    for module in model.modules():
        if not isinstance(module, linear) or module.weight.requires_grad or id(module) in adapters:
            continue
        if id(module.weight) in others:
            module.weight = nn.Parameter(module.weight.detach().to(dtype), requires_grad=False)
        else:
            module.weight.data = module.weight.data.to(dtype)
        if module.bias is not None and not module.bias.requires_grad:
            module.bias.data = module.bias.data.to(dtype)
