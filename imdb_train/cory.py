"""CORY on IMDB: a pioneer and an observer (two copies of one LLM) trained together on the collective reward.

    python imdb_train/cory.py                        # offline preset: SmolLM2-135M, local IMDB, 2-core CPU
    python imdb_train/cory.py --preset paper         # the paper's Table 1 (GPU; hub models)
    python imdb_train/cory.py --preset official      # the official script's settings (init KL 0.4, score norm)
    python imdb_train/cory.py --swap_freq 0 --knowledge_transfer false --other_reward_coef 0   # ablations
    python imdb_train/cory.py --save_every 5 --resume_from auto                                # crash-safe
"""
import sys
from pathlib import Path

# This file is named like the package, and Python puts a script's own folder first on the import path, so
# `import cory` would import this file: the one line below drops that folder (the package is installed: make venv).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
from cory.config import RunConfig
from cory.algorithms.cory import CORY, CORYConfig
from cory.errors import run_script
from cory.tasks.imdb import IMDBConfig, IMDBTask
from cory.run.plots import per_agent
from cory.ppo.config import PPOConfig
from cory.run.loop import train
from cory.run.setup import build_agents, setup

PLOTS = {"task reward": "task_reward", "KL to reference (penalty estimator)": "objective/kl",
         "KL coefficient": "objective/kl_coef"}  # one curve per agent
CONSOLE = {"pioneer/task_reward": "r_pio", "observer/task_reward": "r_obs", "agent_a/objective/kl": "kl_a",
           "agent_b/objective/kl": "kl_b", "cory/pioneer_agent": "pio", "time/step": "s/step"}


def main(argv=None, config: dict | None = None) -> dict:
    """`argv`: the command line's flags; `config`: settings as a dict, over them (cory.sweep.run passes it)."""
    exp = setup("imdb", "cory", __doc__, (RunConfig, PPOConfig, CORYConfig, IMDBConfig), argv, config=config)
    # 1. the task: review prefixes, sentiment reward
    task = IMDBTask.from_config(exp.task, exp.tokenizer, exp.run.seed, exp.accelerator.device)
    # 2. n_agents (2: the paper) copies of one LLM, or LoRA adapters on one base, and one shared frozen reference
    agents = build_agents(exp, exp.cory.n_agents)
    # 3. pioneer answers, observer answers with the pioneer's answer in view, both learn the collective reward
    cory = CORY(exp.cory, agents, exp.tokenizer, task)
    return train(exp, cory, task, exp.ppo.batch_size, per_agent(cory.names, PLOTS), CONSOLE)


if __name__ == "__main__":
    run_script(main)
