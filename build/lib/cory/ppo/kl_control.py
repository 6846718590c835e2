"""The KL coefficient's controllers (adaptive, legacy trl's; or fixed) and the running moments of the scores.
"""
from __future__ import annotations

import math

import torch


class RunningMoments:
    """Running mean and std of scores (Chan et al. parallel update), as legacy trl's `RunningMoments`."""

    def __init__(self) -> None:
        self.mean, self.var, self.std, self.count = 0.0, 1.0, 1.0, 1e-24

    def update(self, xs: torch.Tensor) -> None:
        xs = xs.detach().double()
        xs_count = xs.numel()
        xs_var, xs_mean = torch.var_mean(xs, unbiased=False)
        self.merge(xs_mean.item(), xs_var.item(), xs_count)

    def merge(self, xs_mean: float, xs_var: float, xs_count: float) -> None:
        """Fold in the (biased) mean and variance of `xs_count` new values."""
        delta = xs_mean - self.mean
        total = self.count + xs_count
        old_sum = self.var * self.count + delta**2 * self.count * xs_count / total
        self.mean += delta * xs_count / total
        self.var = (old_sum + xs_var * xs_count) / total
        self.std = math.sqrt(self.var * total / (total - 1)) if total > 1 else 1.0
        self.count = total

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "std": self.std, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.std, self.count = (state[k] for k in ("mean", "var", "std", "count"))


class AdaptiveKLController:
    """Ziegler et al. (2019): move the KL coefficient towards a target KL over `horizon` samples."""

    def __init__(self, init_kl_coef: float, target: float, horizon: float) -> None:
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_samples: int) -> None:
        proportional_error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + proportional_error * n_samples / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = state["value"]


class FixedKLController(AdaptiveKLController):
    """A KL coefficient that never moves."""

    def __init__(self, kl_coef: float) -> None:
        super().__init__(kl_coef, target=1.0, horizon=1.0)

    def update(self, current_kl: float, n_samples: int) -> None:
        pass
