"""Updates that did not happen are counted, and a run that stops making any, or whose loss blows up, is stopped.

A minibatch is skipped (no optimizer step, Adam's moments untouched) when its mean ratio exceeds `ratio_threshold` or
its loss or gradients are not finite; a whole step is skipped on non-finite scores. `max_consecutive_skips` steps in a
row without an update stop the run, as does a loss above `divergence_loss`.
"""
from __future__ import annotations

from cory.errors import RunStopped


class SkipGuard:
    def __init__(self, max_consecutive_skips: int, divergence_loss: float | None):
        self.max_consecutive_skips, self.divergence_loss = max_consecutive_skips, divergence_loss
        self.skipped_minibatches = 0
        self.skipped_steps = 0
        self.consecutive_skips = 0

    def skip_step(self, why: str) -> dict[str, float]:
        """Count a step without any update; too many in a row means the run is broken, so stop."""
        self.skipped_steps += 1
        self.consecutive_skips += 1
        if self.consecutive_skips >= self.max_consecutive_skips:
            raise RunStopped(
                f"{self.consecutive_skips} PPO steps in a row made no update (last: {why}); stopping. Check the reward "
                "function, lower learning_rate, or set max_grad_norm."
            )
        return self.counts()

    def stepped(self, updates: int) -> None:
        """After a step's update: none at all counts as a skipped step."""
        if updates == 0:
            self.skip_step("every minibatch had a non-finite loss or gradient, or a ratio over ratio_threshold")
        else:
            self.consecutive_skips = 0

    def stop_if_diverged(self, loss: float) -> None:
        if self.divergence_loss and abs(loss) > self.divergence_loss:  # a NaN loss is the skip counter's business
            raise RunStopped(f"the update diverged: loss {loss:.3g} > divergence_loss {self.divergence_loss:g}; lower "
                             "learning_rate or set max_grad_norm (this step is not saved: the newest checkpoint is from before it)")

    def counts(self) -> dict[str, float]:
        return {"ppo/skipped_steps": float(self.skipped_steps), "ppo/skipped_minibatches": float(self.skipped_minibatches)}

    def state_dict(self) -> dict:
        return {"skipped_minibatches": self.skipped_minibatches, "skipped_steps": self.skipped_steps,
                "consecutive_skips": self.consecutive_skips}

    def load_state_dict(self, state: dict) -> None:
        self.skipped_minibatches = state["skipped_minibatches"]
        self.skipped_steps = state["skipped_steps"]
        self.consecutive_skips = state["consecutive_skips"]
