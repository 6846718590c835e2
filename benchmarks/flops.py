"""Count the FLOPs each phase of a step performs, from the tokens every forward sees and the model's config.

Only matrix multiplications count (the linear layers, the LM head on the positions whose logits are kept, attention
scores and mixing); norms, softmax and the optimizer are left out, so a fraction of the GEMM peak is an upper bound
on how well a phase uses the machine. Padding (positions whose attention mask is 0) is counted apart: it is work
done, not work needed. A forward run with gradients also books its backward (activation gradients always, weight
gradients for the weights that train) to the phase that runs it, `ppo_update`.
"""
from __future__ import annotations

import contextlib
import functools
from collections import defaultdict

import torch
from torch import nn

BACKWARD_PHASE = "ppo_update"


def dims(config) -> dict[str, int]:
    """The sizes a matmul count needs, under the names of Llama-style and GPT-2-style configs alike."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    get = lambda *names: next((getattr(config, n) for n in names if getattr(config, n, None)), None)  # noqa: E731
    hidden, heads = get("hidden_size", "n_embd"), get("num_attention_heads", "n_head")
    head_dim = get("head_dim") or hidden // heads
    return {"hidden": hidden, "heads": heads, "head_dim": head_dim, "layers": get("num_hidden_layers", "n_layer"),
            "kv": (get("num_key_value_heads") or heads) * head_dim, "inner": get("intermediate_size", "n_inner") or 4 * hidden,
            "vocab": config.vocab_size}


class ModelShape:
    """What a forward's FLOPs depend on: the matmul weights of the body, the LM head and the attention width."""

    def __init__(self, model: nn.Module):
        size = dims(model.config)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
        skip = embeddings | ({id(head.weight)} if head is not None else set())
        # LoRA's matrices are left out (r/width of a layer's work: ~3% at r=16 on SmolLM2; and a disabled adapter does none)
        matrices = [p for name, p in model.named_parameters() if p.dim() == 2 and id(p) not in skip and "lora_" not in name]
        self.body = sum(p.numel() for p in matrices)
        self.body_trained = sum(p.numel() for p in matrices if p.requires_grad) / max(self.body, 1)
        self.head = head.weight.numel() if head is not None else 0
        self.head_trained = head is not None and head.weight.requires_grad
        self.attention = 4 * size["heads"] * size["head_dim"] * size["layers"]  # per (query, key) pair: scores and mixing, all layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, keep: int) -> dict[str, float]:
        """FLOPs of one forward, split into real tokens and padding."""
        rows, new = input_ids.shape
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        real_new = mask[:, -new:].sum(-1).double()
        real_all = mask.sum(-1).double()
        kept = keep if 0 < keep <= new else new
        real_kept = mask[:, -kept:].sum().item()
        done = {"body": 2 * self.body * rows * new, "head": 2 * self.head * rows * kept,
                "attention": self.attention * rows * new * mask.shape[1]}
        real = {"body": 2 * self.body * real_new.sum().item(), "head": 2 * self.head * real_kept,
                "attention": self.attention * (real_new * real_all).sum().item()}
        return {"real": sum(real.values()), "padding": sum(done.values()) - sum(real.values()),
                "backward": 2 * done["attention"] + done["body"] * (1 + self.body_trained)
                + done["head"] * (1 + self.head_trained)}


class FlopCounter:
    """Books the FLOPs of every watched model's forwards to the current phase (the innermost `phase`)."""

    def __init__(self):
        self.flops: dict[str, dict[str, float]] = defaultdict(lambda: {"real": 0.0, "padding": 0.0})
        self.current: str | None = None
        self._handles = []

    def watch(self, model: nn.Module) -> None:
        """Count `model`'s forwards (a peft model: its base, which every adapter and the disabled-adapter
        reference run through)."""
        model = model.get_base_model() if hasattr(model, "get_base_model") else model
        shape = ModelShape(model)

        def hook(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None or self.current is None:
                return
            keep = kwargs.get("logits_to_keep", 0)
            work = shape.forward(ids, kwargs.get("attention_mask"), keep if isinstance(keep, int) else 0)
            self.flops[self.current]["real"] += work["real"]
            self.flops[self.current]["padding"] += work["padding"]
            if torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters()):
                self.flops[BACKWARD_PHASE]["real"] += work["backward"]  # padding's backward is not split out

        self._handles.append(model.register_forward_pre_hook(hook, with_kwargs=True))

    @contextlib.contextmanager
    def phase(self, name: str):
        outer, self.current = self.current, name
        try:
            yield
        finally:
            self.current = outer

    def book(self, name: str, fn):
        """`fn` wrapped so that its forwards count towards phase `name`."""

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with self.phase(name):
                return fn(*args, **kwargs)

        return wrapped

    def take(self) -> dict[str, dict[str, float]]:
        """The counts so far (GFLOP), and a fresh start."""
        out = {k: {kind: v / 1e9 for kind, v in work.items()} for k, work in self.flops.items()}
        self.flops.clear()
        return out
