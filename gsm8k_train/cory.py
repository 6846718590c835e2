"""CORY on GSM8K: pioneer and observer (two LoRA adapters on one base) trained on the collective exact-answer reward.

    python gsm8k_train/cory.py                      # offline preset: SmolLM2-135M-Instruct, local GSM8K, CPU
    python gsm8k_train/cory.py --preset paper       # Table 2: Llama-2-7b-chat, 4-bit + LoRA, lr 1e-4 (CUDA + hub)
    python -m cory.eval.gsm8k --model runs/gsm8k-cory-offline-seed0/final/agent_a    # one agent alone, pass@k
"""
import sys
from pathlib import Path

# This file is named like the package, and Python puts a script's own folder first on the import path, so
# `import cory` would import this file: the one line below drops that folder (the package is installed: make venv).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
from cory.config import RunConfig
from cory.algorithms.cory import CORY, CORYConfig
from cory.errors import run_script
from cory.tasks.gsm8k import GSM8KConfig, GSM8KTask
from cory.run.plots import per_agent
from cory.ppo.config import PPOConfig
from cory.run.loop import train
from cory.run.setup import build_agents, setup

PLOTS = {"accuracy (task reward)": "task_reward", "KL to reference": "objective/kl",
         "response length": "tokens/responses_len_mean"}  # one curve per agent
CONSOLE = {"pioneer/task_reward": "acc_pio", "observer/task_reward": "acc_obs", "agent_a/objective/kl": "kl_a",
           "agent_b/objective/kl": "kl_b", "cory/pioneer_agent": "pio", "time/step": "s/step"}


def main(argv=None, config: dict | None = None) -> dict:
    """`argv`: the command line's flags; `config`: settings as a dict, over them (cory.sweep.run passes it)."""
    exp = setup("gsm8k", "cory", __doc__, (RunConfig, PPOConfig, CORYConfig, GSM8KConfig), argv, config=config)
    # 1. the task: one-shot prompts, binary exact-answer reward
    task = GSM8KTask.from_config(exp.task, exp.tokenizer, exp.run.seed, exp.accelerator.device)
    # 2. n_agents (2: the paper) sharing one frozen reference (with LoRA: one adapter each on one base)
    agents = build_agents(exp, exp.cory.n_agents)
    # 3. the observer answers with the pioneer's solution as its reference; both learn the summed reward
    cory = CORY(exp.cory, agents, exp.tokenizer, task)
    return train(exp, cory, task, exp.ppo.batch_size, per_agent(cory.names, PLOTS), CONSOLE)


if __name__ == "__main__":
    run_script(main)
