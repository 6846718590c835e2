"""A causal LM with a scalar value head, and the frozen reference it is penalised against."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from cory import _trl
from cory.platform.precision import cast_frozen_linear_weights


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count only real tokens, so a left-padded row is computed as if alone.

    This is what `generate` does; a plain forward would count the pads and shift every
    position of a padded row (the padding bug behind ratio != 1 on the first minibatch).
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def causal_lm_forward(lm: nn.Module, input_ids, attention_mask, logits_to_keep: int, hidden: bool = False):
    return lm(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        logits_to_keep=logits_to_keep,
        output_hidden_states=hidden,
        use_cache=False,
    )


class ValueHeadPolicy(nn.Module):
    """Policy = any `AutoModelForCausalLM` + a linear value head on its last hidden state (`critic=False`:
    no head, for the critic-free estimators; its values are then None).

    With peft, several policies can share one `PeftModel` (one base, one adapter each):
    `adapter_name` is switched on before every use of `lm`.
    """

    def __init__(self, lm: nn.Module, adapter_name: str | None = None, critic: bool = True):
        super().__init__()
        self.lm = lm
        self.adapter_name = adapter_name
        hidden_size = lm.config.get_text_config().hidden_size
        self.v_head = nn.Linear(hidden_size, 1) if critic else None

    @contextlib.contextmanager
    def active(self):
        """Make this policy's adapter the active one (no-op without peft)."""
        if self.adapter_name is not None and self.lm.active_adapter != self.adapter_name:
            self.lm.set_adapter(self.adapter_name)
        yield self

    def forward(self, input_ids, attention_mask, logits_to_keep: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (float32) and values (None without a value head) of the last `logits_to_keep` positions."""
        with self.active():
            out = causal_lm_forward(self.lm, input_ids, attention_mask, logits_to_keep, hidden=self.v_head is not None)
        if self.v_head is None:
            return out.logits.float(), None
        hidden = out.hidden_states[-1][:, -logits_to_keep:]
        values = self.v_head(hidden.to(self.v_head.weight.dtype)).squeeze(-1)
        return out.logits.float(), values.float()

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Own parameters only: the value head (if any) and, with peft, this policy's adapter."""
        if self.adapter_name is None:
            return [p for p in self.parameters() if p.requires_grad]
        adapter_params = [p for n, p in self.lm.named_parameters() if f".{self.adapter_name}." in n]
        return adapter_params + (list(self.v_head.parameters()) if self.v_head is not None else [])

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Read by trl's `unwrap_model_for_generation`, which turns checkpointing off while generating."""
        if hasattr(self.lm, "is_activation_checkpointing"):  # transformers >= 5 (the old name warns)
            return bool(self.lm.is_activation_checkpointing)
        return bool(getattr(self.lm, "is_gradient_checkpointing", False))

    def gradient_checkpointing_disable(self) -> None:
        self.lm.gradient_checkpointing_disable()

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        self.lm.gradient_checkpointing_enable(**kwargs)

    @torch.no_grad()
    def generate(self, **kwargs) -> torch.Tensor:
        with self.active():
            return self.lm.generate(**kwargs)


class FrozenReference:
    """The frozen pre-trained model: its own copy, or a peft model with its adapters disabled.

    `store_dtype` (mixed precision): its frozen linear weights are kept in that dtype (with LoRA: the base the
    agents share), which under autocast gives bit-identical logits without a cast per op.
    """

    def __init__(self, lm: nn.Module, disable_adapters: bool = False, store_dtype: torch.dtype | None = None):
        self.lm = lm
        self.disable_adapters = disable_adapters
        self.deepspeed_ready = False
        if not disable_adapters:
            lm.eval()
            lm.requires_grad_(False)
        if store_dtype is not None:
            cast_frozen_linear_weights(lm, store_dtype)

    def prepare_for_deepspeed(self, accelerator) -> None:
        """ZeRO-3 shards every engine's weights: a separate reference gets its own inference engine (once).
        A LoRA reference is the policy's own base, which the policy's engine already holds."""
        if self.deepspeed_ready or self.disable_adapters:
            return
        self.lm = _trl.prepare_deepspeed(self.lm, accelerator)
        self.deepspeed_ready = True

    @torch.no_grad()
    def logits(self, input_ids, attention_mask, logits_to_keep: int) -> torch.Tensor:
        ctx = self.lm.disable_adapter() if self.disable_adapters else contextlib.nullcontext()
        with ctx:
            return causal_lm_forward(self.lm, input_ids, attention_mask, logits_to_keep).logits.float()
