"""A fixed synthetic rollout (token ids and scores) shared by our benchmark and the legacy-trl one.

Imports torch only, so the throw-away trl 0.11 environment can use it too.
"""
import torch


def synthetic_rollout(batch_size: int, query_tokens: int, response_tokens: int, vocab_size: int, seed: int = 0):
    """Queries and responses of exactly the given lengths (no EOS inside), and scores ~ N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    high = min(vocab_size, 30000) - 1
    queries = [torch.randint(100, high, (query_tokens,), generator=g) for _ in range(batch_size)]
    responses = [torch.randint(100, high, (response_tokens,), generator=g) for _ in range(batch_size)]
    scores = torch.randn(batch_size, generator=g)
    return queries, responses, scores
