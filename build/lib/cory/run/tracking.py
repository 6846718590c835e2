"""Per-step metrics: a JSONL file (always), a one-line console summary, optionally Weights & Biases."""
from __future__ import annotations

import json
import math
from pathlib import Path

from cory.platform.paths import atomic_file


class Tracker:
    """Appends one JSON object per step to `run_dir/metrics.jsonl`; resumes without duplicating steps."""

    def __init__(self, run_dir: Path, config: dict, log_with: str = "", project: str = "cory", resume_step: int = 0,
                 enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.eval_path = self.run_dir / "eval.jsonl"
        self.enabled = enabled  # False on every process but the main one
        self.wandb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_file(self.run_dir / "config.json", json.dumps(config, indent=2, default=str))
        self._truncate_after(resume_step)
        if log_with == "wandb":
            import wandb

            self.wandb = wandb.init(project=project, name=self.run_dir.name, config=config, resume="allow")

    def _truncate_after(self, step: int) -> None:
        """Keep only the lines of steps < `step` (a fresh run keeps none): a resumed run logs no step twice."""
        # an evaluation logged as step N > 0 ran after N steps, before the checkpoint of step N: it stays; a run that
        # starts afresh (N = 0, e.g. killed before its first checkpoint) evaluates step 0 again, so none stays
        evals_until = step + 1 if step > 0 else 0
        for path, limit in ((self.metrics_path, step), (self.run_dir / "samples.jsonl", step), (self.eval_path, evals_until)):
            if path.exists():
                kept = [line for line in path.read_text().splitlines() if _complete_before(line, limit)]
                atomic_file(path, "".join(line + "\n" for line in kept))  # a kill here loses no line

    def log(self, step: int, stats: dict, samples: list[dict] | None = None) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: _clean(v) for k, v in stats.items()}}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if samples:
            with open(self.run_dir / "samples.jsonl", "a") as f:
                f.write(json.dumps({"step": step, "samples": samples}) + "\n")
        if self.wandb is not None:
            payload = dict(row)
            if samples:
                import wandb

                columns = list(samples[0])
                payload["samples"] = wandb.Table(columns=columns, data=[[s[c] for c in columns] for s in samples])
            self.wandb.log(payload, step=step)

    def log_eval(self, steps_done: int, agent: str, evaluation: dict, role: str = "alone") -> None:
        """One held-out evaluation of one agent in one role after `steps_done` steps, to eval.jsonl
        (with its per-prompt values) and to wandb as eval/<agent>/... (eval/<agent>/<role>/... for other roles)."""
        if not self.enabled:
            return
        row = {"step": steps_done, "agent": agent, "role": role, **{k: _clean(v) for k, v in evaluation["metrics"].items()},
               "samples": evaluation["samples"], "per_prompt": evaluation.get("per_prompt")}
        with open(self.eval_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.wandb is not None:
            prefix = f"eval/{agent}/" if role == "alone" else f"eval/{agent}/{role}/"
            self.wandb.log({prefix + k: v for k, v in evaluation["metrics"].items()}, step=steps_done)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def summary_line(stats: dict, keys: dict[str, str]) -> str:
    """'short=value' pairs for the keys present, for a tqdm postfix or a log line."""
    return " ".join(f"{short}={stats[k]:.3g}" for k, short in keys.items() if k in stats)


def _complete_before(line: str, step: int) -> bool:
    """A whole JSON line of a step before `step` (a line cut off by a crash is dropped)."""
    try:
        return json.loads(line)["step"] < step
    except (json.JSONDecodeError, KeyError, TypeError):
        return False


def _clean(value):
    value = float(value) if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
