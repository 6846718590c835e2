"""The CPU sampling fast path draws from the right distribution, and the cheap gradient check still catches NaN/inf."""
import torch

from cory.ppo.losses import grads_finite
from cory.ppo.sampling import fast_cpu_sampling, inverse_cdf_sample


def test_inverse_cdf_sample_matches_the_probabilities_and_never_draws_a_zero():
    torch.manual_seed(0)
    probs = torch.tensor([[0.0, 0.25, 0.75, 0.0], [0.5, 0.0, 0.0, 0.5]]).repeat(10000, 1)
    draws = inverse_cdf_sample(probs).squeeze(1)
    first, second = draws[0::2], draws[1::2]
    assert set(first.tolist()) == {1, 2} and set(second.tolist()) == {0, 3}
    assert abs((first == 2).float().mean().item() - 0.75) < 0.015  # 3 std of a mean over 10,000 draws
    assert abs((second == 0).float().mean().item() - 0.5) < 0.015
    unnormalised = inverse_cdf_sample(torch.tensor([[0.0, 0.0, 3.0]]))  # weights need not sum to 1
    assert unnormalised.tolist() == [[2]]


def test_fast_sampling_is_scoped_and_reproducible():
    original = torch.multinomial
    probs = torch.softmax(torch.randn(4, 50), -1)
    with fast_cpu_sampling():
        assert torch.multinomial is not original
        torch.manual_seed(1)
        a = torch.multinomial(probs, num_samples=1)
        torch.manual_seed(1)
        b = torch.multinomial(probs, num_samples=1)
        assert torch.multinomial(probs, num_samples=3).shape == (4, 3)  # several draws: torch's own path
    assert torch.multinomial is original and torch.equal(a, b)


def test_cheap_gradient_check_catches_nan_and_inf():
    params = [torch.nn.Parameter(torch.zeros(3)) for _ in range(2)]
    for p in params:
        p.grad = torch.ones(3)
    assert grads_finite(params)
    for bad in (float("nan"), float("inf"), -float("inf")):
        params[1].grad = torch.tensor([1.0, bad, 2.0])
        assert not grads_finite(params)
    assert grads_finite([torch.nn.Parameter(torch.zeros(1))])  # no gradients at all: nothing to refuse
