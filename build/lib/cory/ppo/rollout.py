"""A batch of queries and responses as the model sees it: padding, masks from lengths, where a response ends."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from cory.errors import UsageError


@dataclass
class Rollout:
    """One batch laid out as [left-padded queries | right-padded responses]."""

    input_ids: torch.Tensor  # [B, Q + R]
    attention_mask: torch.Tensor  # [B, Q + R]
    responses: torch.Tensor  # [B, R]
    response_mask: torch.Tensor  # [B, R], from lengths

    @classmethod
    def from_lists(cls, queries: list[torch.Tensor], responses: list[torch.Tensor], pad_id: int, device) -> "Rollout":
        if len(queries) != len(responses):
            raise ValueError(f"{len(queries)} queries but {len(responses)} responses")
        if any(len(r) == 0 for r in responses):
            raise ValueError("empty response: every response needs at least one token (an EOS counts)")
        query_ids, query_mask = left_pad(queries, pad_id)
        resp_len = max(len(r) for r in responses)
        resp_ids = torch.full((len(responses), resp_len), pad_id, dtype=torch.long)
        resp_mask = torch.zeros((len(responses), resp_len), dtype=torch.long)
        for i, r in enumerate(responses):
            resp_ids[i, : len(r)] = r
            resp_mask[i, : len(r)] = 1
        return cls(
            input_ids=torch.cat([query_ids, resp_ids], 1).to(device),
            attention_mask=torch.cat([query_mask, resp_mask], 1).to(device),
            responses=resp_ids.to(device),
            response_mask=resp_mask.to(device),
        )

    def rows(self, idx) -> "Rollout":
        return Rollout(self.input_ids[idx], self.attention_mask[idx], self.responses[idx], self.response_mask[idx])


def left_pad(seqs: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-d token tensors, padded on the left, with their attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, -len(s) :] = s.to(torch.long).cpu()
            mask[i, -len(s) :] = 1
    return ids, mask


def truncate_after_eos(tokens: torch.Tensor, eos_ids: set[int]) -> torch.Tensor:
    """Keep a generated row up to and including its first EOS."""
    ends = is_eos(tokens, eos_ids)
    if ends.any():
        return tokens[: int(ends.nonzero()[0, 0]) + 1]
    return tokens


def is_eos(tokens: torch.Tensor, eos_ids: set[int]) -> torch.Tensor:
    """Where `tokens` holds an end-of-response token (any of `eos_ids`)."""
    return torch.isin(tokens, torch.tensor(sorted(eos_ids), device=tokens.device))


def eos_token_ids(lm, tokenizer) -> set[int]:
    """Every token id that ends a response: the tokenizer's EOS and the generation config's."""
    ids = set()
    gen_eos = getattr(getattr(lm, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, gen_eos):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(value)
    if not ids:
        raise UsageError("the tokenizer has no EOS token: set tokenizer.eos_token")
    return ids


def context_length(lm) -> int:
    """The longest sequence the model accepts (max_position_embeddings, or a large number if unbounded)."""
    config = lm.config.get_text_config()
    return int(getattr(config, "max_position_embeddings", None) or 1_000_000)
