"""Fast categorical sampling for `generate` on a CPU, and how far the sampler is from the policy.

`torch.multinomial(probs, 1)` draws one exponential variate per vocabulary entry (the "exponential race"):
192 ms for a 32 x 49,152 batch on these CPUs, 3.3 s of a 16-token PPO generation. Inverse-CDF sampling
needs one uniform per row: 4.6 ms. The draw is from the same distribution; only the random stream differs.
"""
from __future__ import annotations

import contextlib

import torch

_multinomial = torch.multinomial


def inverse_cdf_sample(probs: torch.Tensor) -> torch.Tensor:
    """One index per row of `probs` (unnormalised weights), shape [B, 1]; a zero-weight index is never drawn."""
    cdf = probs.float().cumsum(-1)
    u = torch.rand(probs.shape[0], 1, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1)


def _fast_multinomial(input, num_samples, replacement=False, *, generator=None, out=None):
    if num_samples == 1 and input.dim() == 2 and input.device.type == "cpu" and generator is None and out is None:
        return inverse_cdf_sample(input)
    return _multinomial(input, num_samples, replacement, generator=generator, out=out)


@contextlib.contextmanager
def fast_cpu_sampling():
    """Within the block, single draws of `torch.multinomial` on CPU tensors use `inverse_cdf_sample`."""
    torch.multinomial = _fast_multinomial
    try:
        yield
    finally:
        torch.multinomial = _multinomial


def sampler_gap(sampled: list[torch.Tensor], sampler_logprobs: list[torch.Tensor], responses: list[torch.Tensor],
                logprobs: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean over sampled tokens of log q - log pi, q the sampler that drew them (after repetition penalty, top-k/p,
    temperature, min_new_tokens): an unbiased estimate of KL(q || pi) per token, 0 when q is pi. Empty unless
    `responses` are the ones sampled (`sampled`, with their log-probs under q)."""
    if len(sampled) != len(responses) or not all(map(torch.equal, sampled, responses)):
        return {}
    q = torch.zeros_like(logprobs)
    for i, lp in enumerate(sampler_logprobs):
        q[i, : len(lp)] = lp.to(q.device)
    gap = ((q - logprobs) * mask).sum() / mask.sum()
    return {"sampling/kl_sampler_policy": gap.item()}
