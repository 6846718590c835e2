"""The GSM8K warm start: what is learnt (the solution, not the prompt), padding, and that the loss goes down."""
import json

import numpy as np
import torch

from cory.tasks.gsm8k import GSM8KConfig, GSM8KTask
from cory.assets.sft import IGNORE, SFTConfig, collate, sft_examples, solution_text, train_sft
from tests.tiny import tiny_gpt2


def test_solution_text_drops_calculator_annotations():
    assert solution_text("She has 2+3=<<2+3=5>>5 eggs.\n#### 5\n") == "She has 2+3=5 eggs.\n#### 5"


def test_examples_learn_only_the_solution(tmp_path, tokenizer):
    rows = [{"question": "What is 1 plus 2?", "answer": "1+2=<<1+2=3>>3\n#### 3"},
            {"question": "Hard?", "answer": "<<1+1=2>>2 <<2+2=4>>4 <<4+4=8>>8\n#### 8"}]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = GSM8KTask(GSM8KConfig(dataset_path=str(path), prompt_template="Q: {question} A:", max_solution_steps=2), tokenizer)
    [(ids, labels)] = sft_examples(task, tokenizer, 10, np.random.default_rng(0))  # the 3-step problem is filtered out
    prompt_len = len(tokenizer("Q: What is 1 plus 2? A:")["input_ids"])
    assert labels[:prompt_len] == [IGNORE] * prompt_len
    assert tokenizer.decode(labels[prompt_len:]) == " 1+2=3\n#### 3<|endoftext|>" and labels[prompt_len:] == ids[prompt_len:]


def test_collate_pads_right_and_never_learns_padding():
    ids, mask, labels = collate([([1, 2, 3], [IGNORE, 2, 3]), ([4], [4])], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert labels.tolist() == [[IGNORE, 2, 3], [4, IGNORE, IGNORE]]


def test_sft_learns_the_labelled_tokens_and_returns_a_plain_model(tokenizer):
    examples = [([5, 6, 7, 8, 9], [IGNORE, IGNORE, 7, 8, 9])] * 8
    model, losses = train_sft(tiny_gpt2(vocab_size=16, n_embd=32), tokenizer, examples,
                              SFTConfig(epochs=10, batch_size=4, learning_rate=0.01, lora_r=8, lora_alpha=16))
    assert len(losses) == 20 and losses[-1] < losses[0] - 0.5
    assert model(torch.tensor([[5, 6, 7, 8]])).logits.argmax(-1)[0, 1:].tolist() == [7, 8, 9]  # the solution after the prompt
    assert not hasattr(model, "peft_config")  # merged: a plain transformers model


def test_a_cached_warm_start_is_reused_only_with_the_same_settings(tmp_path, monkeypatch):
    import cory.assets.build
    import cory.assets.sft
    from cory.config import load_task_config

    monkeypatch.setenv("CORY_CACHE", str(tmp_path))
    builds = []
    monkeypatch.setattr(cory.assets.sft, "build_sft_model", lambda base, task_config, target: builds.append(target) or target)
    monkeypatch.setattr(cory.assets.build, "smollm2_dir", lambda: None)  # the base (converting its GGUF costs ~30 s) is not under test
    target = tmp_path / "models" / "smollm2-135m-gsm8k-sft"
    target.mkdir(parents=True)
    preset = load_task_config("gsm8k", "offline")
    task_config = GSM8KConfig(prompt_template=preset["prompt_template"], use_chat_template=True,
                              max_solution_steps=preset["max_solution_steps"], dataset_path=preset["dataset_path"])
    settings = cory.assets.sft.sft_settings("smollm2-135m-instruct", task_config, SFTConfig())
    (target / "sft.json").write_text(json.dumps(settings))
    assert cory.assets.build.gsm8k_sft_dir() == target and builds == []
    (target / "sft.json").write_text(json.dumps({**settings, "n_examples": 1}))
    assert cory.assets.build.gsm8k_sft_dir() == target and builds == [target]


def test_sft_recomputes_activations_and_learns_the_same_weights_as_without(tokenizer, monkeypatch):
    """Gradient checkpointing bounds the warm start's memory; it must not change what is learnt, not even a bit."""
    examples = [([5, 6, 7, 8, 9], [IGNORE, IGNORE, 7, 8, 9]), ([9, 8, 7, 6, 5], [IGNORE, 8, 7, 6, 5])] * 4
    config = SFTConfig(epochs=2, batch_size=4, learning_rate=0.01, lora_r=8, lora_alpha=16)

    def train(checkpointing: bool):
        torch.manual_seed(0)
        model = tiny_gpt2(vocab_size=16, n_embd=32)
        if not checkpointing:
            monkeypatch.setattr(model, "activation_checkpointing_enable", lambda: None)
        attention_calls = []
        model.transformer.h[0].attn.register_forward_hook(lambda *args: attention_calls.append(1))
        merged, _ = train_sft(model, tokenizer, examples, config)
        return merged.state_dict(), len(attention_calls), model.is_activation_checkpointing

    plain, plain_calls, _ = train(checkpointing=False)
    checkpointed, checkpointed_calls, left_on = train(checkpointing=True)
    batches = 4
    assert plain_calls == batches and checkpointed_calls == 2 * batches  # the first layer's attention ran again in each backward
    assert not left_on  # the returned model generates without recomputation hooks
    assert plain.keys() == checkpointed.keys() and all(torch.equal(plain[k], checkpointed[k]) for k in plain)
