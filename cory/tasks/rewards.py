"""Task rewards. Sentiment: the raw logit of the positive class of a text classifier."""
from __future__ import annotations

import torch

from cory.errors import UsageError
from cory.models.load import resolve_model


class SentimentReward:
    """Score texts with the positive-class logit (the paper's `function_to_apply="none"`).

    The class is looked up by label name: with `top_k=None` the pipeline sorts labels by score,
    so a fixed index (trl#117) picks NEGATIVE whenever it wins.
    """

    def __init__(self, model: str, positive_label: str = "POSITIVE", batch_size: int = 64, device: str | int = -1):
        from transformers import pipeline  # its import chain costs ~2 s: a refused flag or --help need not pay it

        self.pipe = pipeline(
            "text-classification", model=resolve_model(model), device=device, dtype=torch.float32
        )
        labels = set(self.pipe.model.config.id2label.values())
        if positive_label not in labels:
            raise UsageError(f"reward model {model!r} has no label {positive_label!r}; its labels are {sorted(labels)}")
        self.positive_label, self.batch_size = positive_label, batch_size

    def __call__(self, texts: list[str]) -> list[float]:
        outputs = self.pipe(texts, top_k=None, function_to_apply="none", batch_size=self.batch_size, truncation=True)
        return [next(o["score"] for o in out if o["label"] == self.positive_label) for out in outputs]
