"""What each arm of a study spends, computed from its settings, and the study's claim of what is matched, checked.

Two agents that share "64 responses a step" each learn from half of them and take half the optimizer steps of one
policy trained on all 64: a lower KL by construction. So a study states per what its budgets match — per trained
model (the responses each model learns from, its optimizer steps, its FLOPs) or per system (the responses
generated, the optimizer steps and FLOPs of all models together) — and `check` refuses a claim the settings do not
bear out. The table is never written by hand.

Counting rule, per training step (k = samples_per_prompt, B = batch_size, the rows one model trains on):
- queries: B / k; a PPO arm trains one model on B rows; a CORY arm trains n_agents models, each position B rows
  (the last position B x observer_samples with group_by prompt), and each model takes every position in turn;
- steps: the arm's own run length (an arm may run longer than the study's `steps`, e.g. to travel further);
- optimizer steps of a model at a position: ppo_epochs x ceil(rows / mini_batch_size) / gradient_accumulation_steps;
- tokens of a row: the mean query length plus the mean response length (IMDB: the means of the sampled ranges), an
  observer's query also holding the earlier responses (knowledge transfer; the template's own tokens not counted);
- token-FLOPs, in units of the model's parameter count N: 2 per token for each of 3 forward passes (generation, the
  policy's and the reference's rollout forwards) and 6 per token for each of ppo_epochs forward+backward passes.
"""
from __future__ import annotations

import math

from cory.errors import UsageError

QUANTITIES = {
    "queries_per_step": ("queries_per_step", "queries_per_step"),
    "responses_per_step": ("responses_learnt_per_model_per_step", "responses_generated_per_step"),
    "optimizer_steps": ("optimizer_steps_per_model", "optimizer_steps_per_system"),
    "optimizer_steps_per_step": ("optimizer_steps_per_model_per_step", "optimizer_steps_per_system_per_step"),
    "token_flops": ("token_flops_per_model", "token_flops_per_system"),
}
"""a quantity a claim may name -> its (per model, per system) column"""
MATCHES = {"per model": 0, "per system": 1}


def arm_budget(config: dict, algorithm: str) -> dict:
    """One arm's budget over its run, from its resolved config (what the training script would run)."""
    batch, k, epochs = config["batch_size"], config["samples_per_prompt"], config["ppo_epochs"]
    models = config.get("n_agents", 2) if algorithm == "cory" else 1
    rows = [batch] * models
    if algorithm == "cory" and config.get("group_by") == "prompt":
        rows[-1] = batch * config["observer_samples"]
    updates = [epochs * math.ceil(r / config["mini_batch_size"]) / config["gradient_accumulation_steps"] for r in rows]
    query = (config["query_min_tokens"] + config["query_max_tokens"]) / 2 if "query_min_tokens" in config else None
    response = (config["response_min_tokens"] + config["response_max_tokens"]) / 2
    transfer = algorithm == "cory" and config.get("knowledge_transfer", True)
    steps = config["steps"]
    table = {"models": models, "steps": steps, "queries_per_step": batch // k, "responses_generated_per_step": sum(rows),
             "responses_learnt_per_model_per_step": sum(rows) / models,
             "optimizer_steps_per_model_per_step": sum(updates) / models, "optimizer_steps_per_system_per_step": sum(updates),
             "optimizer_steps_per_model": steps * sum(updates) / models, "optimizer_steps_per_system": steps * sum(updates)}
    if query is None:  # the prompts' lengths come from the data (GSM8K, your own task): no token count from settings
        table["token_flops_per_model"] = table["token_flops_per_system"] = None
        return table
    tokens = [r * (query + (position + 1 if transfer else 1) * response) for position, r in enumerate(rows)]
    system = steps * sum(tokens) * (2 * 3 + 6 * epochs)
    return {**table, "token_flops_per_model": system / models, "token_flops_per_system": system}


def check(table: dict[str, dict], claim: dict, names: dict[str, str] | None = None) -> list[str]:
    """The ways `claim` ({"match": "per model" | "per system", "equal": [quantity, ...], "arms": [...] (default:
    every arm)}) fails on `table` (arm -> `arm_budget`); empty if it holds."""
    names = names or {}
    if claim.get("match") not in MATCHES:
        return [f"budget claim {claim!r}: 'match' must be one of {sorted(MATCHES)}"]
    unknown = [q for q in claim.get("equal", []) if q not in QUANTITIES]
    arms = claim.get("arms") or list(table)
    if unknown or not claim.get("equal") or set(arms) - set(table):
        return [f"budget claim {claim!r}: 'equal' must list some of {sorted(QUANTITIES)} and 'arms' some of {sorted(table)}"]
    problems = []
    for quantity in claim["equal"]:
        column = QUANTITIES[quantity][MATCHES[claim["match"]]]
        values = {arm: table[arm][column] for arm in arms}
        if len({v for v in values.values()}) > 1:
            shown = ", ".join(f"{names.get(arm, arm)} {_number(v)}" for arm, v in values.items())
            problems.append(f"{quantity} {claim['match']} differs: {shown}")
    return problems


def require(table: dict[str, dict], claims: list[dict], names: dict[str, str] | None = None) -> None:
    """Refuse (one line) a study whose stated budget match does not hold, or that states none."""
    if not claims:
        raise UsageError("study.json states no budget match ('budget': [{'match': 'per model' | 'per system', 'equal': "
                         f"[...]}}]): say per what the arms are matched (quantities: {sorted(QUANTITIES)})")
    problems = [p for claim in claims for p in check(table, claim, names)]
    if problems:
        raise UsageError(f"the study's budget claim does not hold: {'; '.join(problems)}")


def markdown_rows(table: dict[str, dict], names: dict[str, str]) -> list[str]:
    """The budget table as markdown lines, one row per arm."""
    columns = ["models", "steps", "queries_per_step", "responses_generated_per_step", "responses_learnt_per_model_per_step",
               "optimizer_steps_per_model", "optimizer_steps_per_system", "token_flops_per_model", "token_flops_per_system"]
    heads = ["arm", "models", "steps", "queries / step", "responses generated / step (system)", "responses each model learns from / step",
             "optimizer steps per model (run)",
             "optimizer steps per system (run)", "token-FLOPs / N per model (run)",
             "token-FLOPs / N per system (run)"]
    lines = ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    lines += ["| " + " | ".join([names.get(arm, arm), *(_number(row[c]) for c in columns)]) + " |" for arm, row in table.items()]
    return lines


def _number(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and v >= 1e6:
        return f"{v:.3g}"
    return f"{v:g}" if isinstance(v, float) else str(v)
