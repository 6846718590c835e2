"""CORY on IMDB: a pioneer and an observer (two copies of one LLM) trained together on the collective reward.

    python imdb_train/cory.py                        # offline preset: SmolLM2-135M, local IMDB, 2-core CPU
    python imdb_train/cory.py --preset paper         # the paper's Table 1 (GPU; hub models)
    python imdb_train/cory.py --preset official      # the official script's settings (init KL 0.4, score norm)
    python imdb_train/cory.py --swap_freq 0 --knowledge_transfer false --other_reward_coef 0   # ablations
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cory.agents import AGENT_NAMES, build_policies, save_policy  # noqa: E402
from cory.config import RunConfig, build, check_known_keys, parse_args  # noqa: E402
from cory.cory import CORY, CORYConfig  # noqa: E402
from cory.data import LengthSampler, PromptLoader, imdb_prompts  # noqa: E402
from cory.models import load_tokenizer  # noqa: E402
from cory.plots import plot_curves  # noqa: E402
from cory.ppo import PPOConfig, PPOTrainer  # noqa: E402
from cory.rewards import SentimentReward  # noqa: E402
from cory.tracking import Tracker, read_metrics, summary_line  # noqa: E402

CONSOLE_KEYS = {"pioneer/task_reward": "r_pio", "observer/task_reward": "r_obs", "agent_a/kl": "kl_a",
                "agent_b/kl": "kl_b", "cory/pioneer_agent": "pio", "time/step": "s/step"}


def main(argv=None) -> dict:
    sections = (RunConfig, PPOConfig, CORYConfig)
    preset, raw = parse_args("imdb", __doc__, sections, argv)
    check_known_keys(raw, sections)
    run, ppo, cory_cfg = build(RunConfig, raw), build(PPOConfig, raw), build(CORYConfig, raw)
    run_dir = Path(run.output_dir) / (run.run_name or f"cory-{preset}-seed{run.seed}")
    set_seed(run.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())  # one accelerator owns both agents

    # 1. data, reward, two agents sharing one frozen reference
    tokenizer = load_tokenizer(run.model_name)
    prompts = imdb_prompts(run.dataset_path, tokenizer, run.min_review_chars, (run.query_min_tokens, run.query_max_tokens), run.seed)
    loader = PromptLoader(prompts, ppo.batch_size, run.seed)
    reward = SentimentReward(run.reward_model, run.positive_label, device=accelerator.device)
    policies, reference = build_policies(run, 2, accelerator.device)
    agents = [PPOTrainer(ppo, policy, reference, tokenizer, accelerator, seed=run.seed + i) for i, policy in enumerate(policies)]
    cory = CORY(cory_cfg, agents, tokenizer, reward)
    response_len = LengthSampler(run.response_min_tokens, run.response_max_tokens, np.random.default_rng(run.seed))
    tracker = Tracker(run_dir, {"preset": preset, **raw}, run.log_with)

    bar = tqdm(range(run.steps), desc="cory", disable=not accelerator.is_main_process)
    for step in bar:
        # 2. pioneer answers, observer answers with the pioneer's answer in view, both learn the collective reward
        t0 = time.perf_counter()
        stats, samples = cory.step(step, loader.next_batch(), run.generation_kwargs(response_len()))
        stats["time/step"] = time.perf_counter() - t0
        # 3. log
        logged_samples = samples[:4] if run.log_samples_every and step % run.log_samples_every == 0 else None
        tracker.log(step, stats, logged_samples)
        bar.set_postfix_str(summary_line(stats, CONSOLE_KEYS))
        tqdm.write(f"step {step:4d} " + summary_line(stats, CONSOLE_KEYS))

    if run.save_model:
        for name, agent in zip(AGENT_NAMES, agents):
            save_policy(agent.policy, tokenizer, run_dir / "final" / name)
    rows = read_metrics(tracker.metrics_path)
    plot_curves(rows, {"task reward": ["pioneer/task_reward", "observer/task_reward", "agent_a/task_reward", "agent_b/task_reward"],
                       "KL to reference (penalty estimator)": ["agent_a/kl", "agent_b/kl"],
                       "KL coefficient": ["agent_a/kl_coef", "agent_b/kl_coef"]}, run_dir / "curves.png", title=run_dir.name)
    tracker.close()
    print(f"metrics, curves.png and both final agents are in {run_dir}")
    return stats


if __name__ == "__main__":
    main()
