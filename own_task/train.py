r"""PPO or CORY on your own task: prompts from a file, the reward a plain Python function (cory/tasks/text.py).

    python own_task/train.py --algorithm cory --dataset_path ../shared/data/imdb/train.parquet --prompt_column text \
        --max_prompt_tokens 8 --reward_fn own_task.example_reward:upbeat     # CORY (default), offline model, CPU
    python own_task/train.py --algorithm ppo ...                             # the PPO baseline on the same task
    python own_task/train.py --help                                          # every setting

--algorithm ppo | cory picks the method; every other --key value is a setting (configs/text.py holds the defaults).
"""
import argparse

from cory.config import RunConfig
from cory.algorithms.cory import CORY, CORYConfig
from cory.errors import run_script
from cory.run.plots import per_agent
from cory.ppo.config import PPOConfig
from cory.run.loop import train
from cory.run.setup import build_agents, setup
from cory.algorithms.single import SinglePPO
from cory.tasks.text import TextTask, TextTaskConfig

PLOTS = {"task reward": "task_reward", "KL to reference (penalty estimator)": "objective/kl"}
CONSOLE = {"env/reward_mean": "reward", "pioneer/task_reward": "r_pio", "observer/task_reward": "r_obs",
           "objective/kl": "kl", "time/step": "s/step"}


def main(argv=None, config: dict | None = None) -> dict:
    """`argv`: the command line's flags; `config`: settings as a dict, over them (cory.sweep.run passes it)."""
    config = dict(config or {})
    picked = argparse.ArgumentParser(add_help=False)
    picked.add_argument("--algorithm", choices=("ppo", "cory"), default=config.pop("algorithm", "cory"))
    args, rest = picked.parse_known_args(argv)
    sections = (RunConfig, PPOConfig, *((CORYConfig,) if args.algorithm == "cory" else ()), TextTaskConfig)
    exp = setup("text", args.algorithm, __doc__, sections, rest,
                (("--algorithm", "ppo or cory: which to train (default: cory); CORY's settings below apply to cory only"),), config)
    task = TextTask.from_config(exp.task, exp.tokenizer, exp.run.seed, exp.accelerator.device)
    if args.algorithm == "ppo":
        [trainer] = build_agents(exp, 1)
        return train(exp, SinglePPO(trainer, exp.tokenizer, task), task, exp.ppo.batch_size,
                     {"task reward": ["env/reward_mean"], "KL to reference": ["objective/kl"]}, CONSOLE)
    cory = CORY(exp.cory, build_agents(exp, exp.cory.n_agents), exp.tokenizer, task)
    return train(exp, cory, task, exp.ppo.batch_size, per_agent(cory.names, PLOTS), CONSOLE)


if __name__ == "__main__":
    run_script(main)
