"""PPO on IMDB: continue review prefixes so that a sentiment classifier finds them positive (the baseline).

    python imdb_train/ppo.py                       # offline preset: SmolLM2-135M, local IMDB, 2-core CPU
    python imdb_train/ppo.py --preset paper        # the paper's Table 1 (GPT2-Large; needs a GPU and the hub)
    python imdb_train/ppo.py --steps 50 --batch_size 16 --seed 1 --save_every 10 --resume_from auto
"""
import sys
from pathlib import Path

# This folder holds cory.py, named like the package, and Python puts a script's own folder first on the import path,
# so `import cory` would import that file: the one line below drops the folder (the package is installed: make venv).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
from cory.config import RunConfig
from cory.errors import run_script
from cory.tasks.imdb import IMDBConfig, IMDBTask
from cory.ppo.config import PPOConfig
from cory.run.loop import train
from cory.run.setup import build_agents, setup
from cory.algorithms.single import SinglePPO

PLOTS = {"task reward": ["env/reward_mean"], "KL to reference": ["objective/kl", "objective/kl_exact"],
         "KL coefficient": ["objective/kl_coef"]}
CONSOLE = {"env/reward_mean": "reward", "objective/kl": "kl", "objective/kl_exact": "kl_exact",
           "objective/kl_coef": "kl_coef", "time/step": "s/step"}


def main(argv=None, config: dict | None = None) -> dict:
    """`argv`: the command line's flags; `config`: settings as a dict, over them (cory.sweep.run passes it)."""
    # CORY's keys (the task file's `cory` sub-dict) are not this script's: --swap_freq here is an error
    exp = setup("imdb", "ppo", __doc__, (RunConfig, PPOConfig, IMDBConfig), argv, config=config)
    # 1. the task: review prefixes, sentiment reward
    task = IMDBTask.from_config(exp.task, exp.tokenizer, exp.run.seed, exp.accelerator.device)
    # 2. one policy and its frozen reference
    [trainer] = build_agents(exp, 1)
    # 3. sample, score, PPO step
    return train(exp, SinglePPO(trainer, exp.tokenizer, task), task, exp.ppo.batch_size, PLOTS, CONSOLE)


if __name__ == "__main__":
    run_script(main)
