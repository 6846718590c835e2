"""PPO on GSM8K: one policy trained on the binary exact-answer reward (the paper's baseline).

    python gsm8k_train/ppo.py                      # offline preset: SmolLM2-135M-Instruct, local GSM8K, CPU
    python gsm8k_train/ppo.py --preset paper       # Table 2: Llama-2-7b-chat, 4-bit + LoRA, lr 1e-5 (CUDA + hub)
"""
import sys
from pathlib import Path

# This folder holds cory.py, named like the package, and Python puts a script's own folder first on the import path,
# so `import cory` would import that file: the one line below drops the folder (the package is installed: make venv).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
from cory.config import RunConfig
from cory.errors import run_script
from cory.tasks.gsm8k import GSM8KConfig, GSM8KTask
from cory.ppo.config import PPOConfig
from cory.run.loop import train
from cory.run.setup import build_agents, setup
from cory.algorithms.single import SinglePPO

PLOTS = {"accuracy (task reward)": ["env/reward_mean"], "KL to reference": ["objective/kl", "objective/kl_exact"],
         "response length": ["tokens/responses_len_mean"]}
CONSOLE = {"env/reward_mean": "acc", "objective/kl": "kl", "tokens/responses_len_mean": "len", "time/step": "s/step"}


def main(argv=None, config: dict | None = None) -> dict:
    """`argv`: the command line's flags; `config`: settings as a dict, over them (cory.sweep.run passes it)."""
    # CORY's keys (the task file's `cory` sub-dict) are not this script's: --swap_freq here is an error
    exp = setup("gsm8k", "ppo", __doc__, (RunConfig, PPOConfig, GSM8KConfig), argv, config=config)
    task = GSM8KTask.from_config(exp.task, exp.tokenizer, exp.run.seed, exp.accelerator.device)
    [trainer] = build_agents(exp, 1)
    return train(exp, SinglePPO(trainer, exp.tokenizer, task), task, exp.ppo.batch_size, PLOTS, CONSOLE)


if __name__ == "__main__":
    run_script(main)
