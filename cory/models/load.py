"""Load causal LMs and tokenizers from a hub id, a local directory, or a built-in offline alias."""
from __future__ import annotations

import importlib.util
import json
import pickle
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from cory import _trl
from cory.errors import MissingInput, UsageError
from cory.platform.paths import MANIFEST, cache_dir, file_sha256, hub_offline, manifest_problems

SMOLLM2_ALIAS = "smollm2-135m-instruct"


def _no_weight_loading_bar(factory, args, kwargs):
    """transformers 5 draws a 'Loading weights' bar for every model it loads (several per run, each gone in a
    blink): not news, so not shown. Every other transformers bar (downloads, shards) stays."""
    if kwargs.get("desc") == "Loading weights":
        kwargs = {**kwargs, "disable": True}
    return factory(*args, **kwargs)


hf_logging.set_tqdm_hook(_no_weight_loading_bar)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


GSM8K_SFT_ALIAS = "smollm2-135m-gsm8k-sft"
SENTIMENT_ALIAS = "sentiment-minilm-imdb-fast"  # the offline preset's reward
STUDY_SENTIMENT_ALIAS = "sentiment-minilm-imdb"  # the first recipe: the evidence study's and earlier results' reward
ALIASES = {SMOLLM2_ALIAS: ("config.json", "smollm2"), SENTIMENT_ALIAS: ("accuracy.json", "sentiment"),
           STUDY_SENTIMENT_ALIAS: ("accuracy.json", STUDY_SENTIMENT_ALIAS), GSM8K_SFT_ALIAS: ("sft.json", "gsm8k-sft")}
"""offline alias -> (the file a finished build leaves last, the `python -m cory.assets` target that builds it)"""


def alias_dir(alias: str) -> Path:
    return cache_dir() / "models" / alias


def resolve_alias(alias: str) -> Path:
    """An offline alias's built directory. Loading never trains: if it is not built, one line says how."""
    marker, target = ALIASES[alias]
    directory = alias_dir(alias)
    if not (directory / marker).exists():
        raise MissingInput(f"the offline model {alias} is not built on this machine (in {cache_dir()}): run "
                           f"`python -m cory.assets {target}` (or `make assets`) first")
    damage = manifest_problems(directory, hashes=False)  # sizes only: a stat per file (the hashes: `check_weights`)
    if damage:
        raise MissingInput(f"the offline model {alias} in {directory} is damaged ({damage[0]}): build it again with "
                           f"`python -m cory.assets {target}`")
    return directory


def check_weights(name: str, sha256: str) -> None:
    """A run hashes the weights it loads anyway (its ledger fingerprint): for an offline alias, that hash must be
    the build's, else the cached weights changed since they were built (flipped bytes, a partial copy)."""
    if name not in ALIASES or not (alias_dir(name) / MANIFEST).is_file():
        return
    want = json.loads((alias_dir(name) / MANIFEST).read_text()).get("model.safetensors", {}).get("sha256")
    if want and want != sha256:
        raise MissingInput(f"the offline model {name}'s model.safetensors differs from its build (sha256): build it again "
                           f"with `python -m cory.assets {ALIASES[name][1]}`")


def resolve_model(name: str) -> str:
    """A local path for an alias, the path itself if it exists, else the hub id (checked when offline)."""
    if name in ALIASES:
        return str(resolve_alias(name))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise MissingInput(f"model directory {path} has no config.json")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # a hub id is 'name' or 'owner/name'
        raise MissingInput(f"model path {name} does not exist (no such directory, and not a hub id)")
    if hub_offline():
        raise MissingInput(
            f"model {name!r} is neither a local directory nor an alias, and HF_HUB_OFFLINE=1 forbids the hub; "
            f"pass a local path or the offline alias {SMOLLM2_ALIAS!r}"
        )
    return name


def load_tokenizer(name: str):
    """Tokenizer padded on the left (for batched generation), pad = eos when it has none."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(load_in_4bit: bool, dtype: str):
    """NF4 settings of QLoRA, or None; a clear error where bitsandbytes cannot run."""
    if not load_in_4bit:
        return None
    if not torch.cuda.is_available():
        raise UsageError("load_in_4bit needs a CUDA GPU (bitsandbytes); this machine has none: drop --load_in_4bit")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModuleNotFoundError("load_in_4bit needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    compute = DTYPES[dtype] if dtype != "float32" else torch.bfloat16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)


def check_generative(path: str) -> None:
    """A policy must be a causal LM: a sequence classifier (e.g. the reward model given as --model_name) would
    otherwise get a fresh LM head and train silently."""
    config_file = Path(path) / "config.json"
    if config_file.is_file():
        architectures = json.loads(config_file.read_text()).get("architectures") or []
        wrong = [a for a in architectures if not a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration"))]
        if wrong and len(wrong) == len(architectures):
            raise UsageError(f"model {path} is a {', '.join(wrong)}, not a causal language model: a policy must generate text "
                             "(the classifier goes to --reward_model)")


def load_causal_lm(name: str, dtype: str = "float32", device: str | torch.device = "cpu", load_in_4bit: bool = False):
    """A causal LM in eval mode with dropout off (its own and anything from `from_config`)."""
    if dtype not in DTYPES:
        raise UsageError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    quantization = quantization_config(load_in_4bit, dtype)
    path = resolve_model(name)
    if Path(path).exists() and not any(Path(path).glob("*.safetensors")) and not any(Path(path).glob("*.bin")):
        raise MissingInput(f"model directory {path} has no weights (*.safetensors or *.bin)")
    check_generative(path)
    with readable_weights(f"model {path}"):
        if quantization is not None:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype], quantization_config=quantization, device_map={"": device})
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype]).to(device)
    _trl.disable_dropout_in_model(model)
    return model.eval()


@contextmanager
def readable_weights(what: str):
    """Weights that cannot be read become one line naming them: pickled objects in a pytorch_model.bin (refused
    unread by torch.load(weights_only=True)) or a corrupt safetensors file."""
    try:
        yield
    except pickle.UnpicklingError:
        raise UsageError(f"{what}: its pytorch_model.bin holds more than weights (pickled objects, possibly code) and is "
                         "refused unread; use a *.safetensors copy of the weights") from None
    except SafetensorError as error:
        raise UsageError(f"{what}: its weights cannot be read (safetensors: {error}); the file is damaged or not "
                         "safetensors") from None


def weight_fingerprints(config: dict) -> dict[str, str]:
    """sha256 (first 16 hex digits) of the policy's and the reward model's weights as this machine has them (an
    offline alias or a local directory with one `model.safetensors`): an offline alias is built on each machine, so
    the runs of one setting on two machines may score with builds that differ; a ledger entry says which."""
    prints = {}
    for key in ("model_name", "reward_model"):
        name = config.get(key)
        if not isinstance(name, str):
            continue
        directory = alias_dir(name) if alias_dir(name).is_dir() else Path(name)
        weights = directory / "model.safetensors"
        if weights.is_file():
            digest = file_sha256(weights)
            check_weights(name, digest)
            prints[key] = digest[:16]
    return prints
