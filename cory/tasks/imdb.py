"""IMDB: continue a review prefix so that a sentiment classifier finds it positive (the paper's first task)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from cory.errors import UsageError
from cory.tasks.data import LengthSampler, read_records
from cory.tasks.rewards import SentimentReward
from cory.tasks.task import Prompt


@dataclass
class IMDBConfig:
    """Prompts = the first 2..8 tokens of long reviews; reward = the positive logit of a classifier."""

    dataset_path: str = "imdb"
    """hub dataset id or a local parquet/jsonl/csv with a `text` column (train split)"""
    eval_dataset_path: str = "imdb"
    """held-out prompts (test split of a hub id, or a local file)"""
    reward_model: str = "lvwerra/distilbert-imdb"
    """text classifier (hub id, local dir, or an offline alias: sentiment-minilm-imdb-fast, sentiment-minilm-imdb)"""
    positive_label: str = "POSITIVE"
    """label whose logit is the reward"""
    min_review_chars: int = 200
    """only reviews longer than this become prompts"""
    query_min_tokens: int = 2
    query_max_tokens: int = 8
    template_fields: ClassVar[set[str]] = set()
    """text fields each prompt offers to an observer template (none: the query's tokens only)"""
    responses_always_cut: ClassVar[bool] = True
    """a continuation ends at its sampled length, not at an EOS (so no response is complete)"""

    def __post_init__(self) -> None:
        if not 0 < self.query_min_tokens <= self.query_max_tokens:
            raise UsageError(f"need 0 < query_min_tokens <= query_max_tokens, got {self.query_min_tokens}, {self.query_max_tokens}")


def imdb_prompts(path: str, tokenizer, min_chars: int, query_len: tuple[int, int], seed: int, split: str = "train") -> list[Prompt]:
    """IMDB review prefixes as in the paper: reviews over `min_chars` characters, their first 2..8 tokens."""
    reviews = [r["text"] for r in read_records(path, {"text": str}, split) if len(r["text"]) > min_chars]
    if not reviews:
        raise UsageError(f"no review in {path} is longer than {min_chars} characters")
    sampler = LengthSampler(*query_len, np.random.default_rng(seed))
    encoded = tokenizer([t[:400] for t in reviews], add_special_tokens=False)["input_ids"]
    prefixes = [ids[: sampler()] for ids in encoded]
    texts = tokenizer.batch_decode(prefixes, skip_special_tokens=True)
    return [Prompt(torch.tensor(ids), text) for ids, text in zip(prefixes, texts)]


class IMDBTask:
    name = "imdb"
    template_fields = IMDBConfig.template_fields
    observer_template = 'I can make this sentence "{query}{pioneer_response}" more positive: {query}'  # the paper's
    response_template = "{response}"  # N > 2: the earlier continuations follow each other inside the quotes

    def __init__(self, config: IMDBConfig, tokenizer, seed: int, device="cpu"):
        self.config, self.tokenizer, self.seed = config, tokenizer, seed
        self.sentiment = SentimentReward(config.reward_model, config.positive_label, device=device)

    @classmethod
    def from_config(cls, config: IMDBConfig, tokenizer, seed: int, device) -> "IMDBTask":
        return cls(config, tokenizer, seed, device)

    def wrap_template(self, template: str) -> str:
        return template

    def prompts(self, split: str = "train") -> list[Prompt]:
        cfg = self.config
        path = cfg.dataset_path if split == "train" else cfg.eval_dataset_path
        return imdb_prompts(path, self.tokenizer, cfg.min_review_chars, (cfg.query_min_tokens, cfg.query_max_tokens), self.seed, split)

    def reward(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        """Positive logit of prefix + continuation (the observer is scored on x + y2, not on its template)."""
        return self.sentiment([p.text + r for p, r in zip(prompts, responses)])
