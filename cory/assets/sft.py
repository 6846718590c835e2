"""A supervised warm start for GSM8K: LoRA on the train split's reference solutions, merged into a plain model.

Why: the offline SmolLM2-135M-Instruct almost never solves a GSM8K problem, so RL with the binary
exact-answer reward sees no correct answer to learn from. The paper's Llama-2-7b-chat starts with signal;
a few CPU minutes of SFT on *training* solutions (never the held-out ones) give ours some. The result is a
plain transformers directory: the RL starting policy and its frozen reference.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cory.models.lora import lora_config, with_lora
from cory.platform.paths import save_model_directory
from cory.platform.precision import bf16_supported
from cory.tasks.gsm8k import CALCULATION, GSM8KConfig, GSM8KTask

IGNORE = -100
"""label of a token the loss skips (prompt and padding)"""


@dataclass
class SFTConfig:
    n_examples: int = 768
    """training problems used (a fixed random subset of the filtered train split); a batch of 8 takes ~12 s
    on one core of a 2-core EPYC, so 768 cost ~20 min on one core (256 gave held-out pass@8 0.12: too few)"""
    epochs: int = 1
    batch_size: int = 8
    learning_rate: float = 1e-3
    """high for LoRA, because the warm start gets only ~100 optimizer steps"""
    lora_r: int = 16
    lora_alpha: int = 32
    seed: int = 0


def solution_text(solution: str) -> str:
    """A reference solution as a model should write it: the `<<...>>` calculator annotations removed."""
    return CALCULATION.sub("", solution).strip()


def sft_examples(task: GSM8KTask, tokenizer, n_examples: int, rng: np.random.Generator) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per problem: the task's prompt, then the solution and EOS; only the solution is learnt."""
    problems = task.problems("train")
    prompts = task.prompts_of(problems)
    examples = []
    for i in rng.permutation(len(prompts))[:n_examples]:
        prompt_ids = prompts[i].input_ids.tolist()
        target = tokenizer(" " + solution_text(problems[i][0]["answer"]), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        examples.append((prompt_ids + target, [IGNORE] * len(prompt_ids) + target))
    return examples


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask and labels (padding never learnt)."""
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id)
    labels = torch.full((len(batch), width), IGNORE)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (x, y) in enumerate(batch):
        ids[row, : len(x)], labels[row, : len(y)], mask[row, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return ids, mask, labels


def train_sft(model, tokenizer, examples: list, config: SFTConfig) -> tuple[torch.nn.Module, list[float]]:
    """LoRA on `model`'s linear layers; returns the merged model and the loss per batch.

    Gradient checkpointing recomputes each layer's activations in the backward pass instead of keeping them: the
    same weights to the bit (the whole offline build checked against one built without it), and the build peaks at
    6.5 GB instead of over 11 GB (where it was OOM-killed beside two IMDB runs). It costs no time on a quiet 2-core
    AVX-512-bf16 EPYC (5.1–6.3 s a batch against 5.9–6.4 without over two runs, the same losses; `benchmarks/sft_checkpointing.py`)."""

    torch.manual_seed(config.seed)
    model.activation_checkpointing_enable()  # transformers 5 name; non-reentrant, as LoRA needs
    peft_model = with_lora(model, lora_config(model, config.lora_r, config.lora_alpha, 0.0, "all-linear"))
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=config.learning_rate)
    batches = [examples[i : i + config.batch_size] for i in range(0, len(examples), config.batch_size)] * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / len(batches))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=model.device.type == "cpu" and bf16_supported(cuda=False))
    losses = []
    peft_model.train()
    for batch in (bar := tqdm(batches, desc="GSM8K SFT warm start", unit="batch")):
        ids, mask, labels = (t.to(model.device) for t in collate(batch, tokenizer.pad_token_id))
        with autocast:
            loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.activation_checkpointing_disable()
    return peft_model.merge_and_unload().eval(), losses


def sft_settings(base: str, task_config: GSM8KConfig, config: SFTConfig) -> dict:
    """What a built warm start depends on (recorded in its sft.json; a cached one with other settings is rebuilt)."""
    return {"base": base, **asdict(config), "prompt_template": task_config.prompt_template,
            "use_chat_template": task_config.use_chat_template, "max_solution_steps": task_config.max_solution_steps,
            "dataset_path": Path(task_config.dataset_path).name}


def sft_inputs(base: str, task_config: GSM8KConfig, config: SFTConfig) -> tuple[torch.nn.Module, object, list]:
    """What `train_sft` starts from: the fp32 base model, its tokenizer and the seeded examples (the build and the
    checkpointing benchmark train on the same)."""
    from cory.models.load import load_causal_lm, load_tokenizer

    tokenizer, model = load_tokenizer(base), load_causal_lm(base, "float32")
    return model, tokenizer, sft_examples(GSM8KTask(task_config, tokenizer), tokenizer, config.n_examples, np.random.default_rng(config.seed))


def build_sft_model(base: str, task_config: GSM8KConfig, target: Path, config: SFTConfig = SFTConfig()) -> Path:
    """Train the warm start on `task_config`'s train problems and save it (with sft.json) to `target`, atomically."""
    model, tokenizer, examples = sft_inputs(base, task_config, config)
    start = time.time()
    model, losses = train_sft(model, tokenizer, examples, config)
    report = {**sft_settings(base, task_config, config), "examples_used": len(examples), "loss_first_10": float(np.mean(losses[:10])),
              "loss_last_10": float(np.mean(losses[-10:])), "seconds": round(time.time() - start, 1)}
    print(f"GSM8K SFT: loss {report['loss_first_10']:.3f} -> {report['loss_last_10']:.3f} over {len(losses)} batches, "
          f"{report['seconds']:.0f} s", flush=True)
    save_model_directory(target, model, tokenizer, {"sft.json": json.dumps(report, indent=2)})
    return target
