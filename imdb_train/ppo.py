"""PPO on IMDB: continue review prefixes so that a sentiment classifier finds them positive.

    python imdb_train/ppo.py                       # offline preset: SmolLM2-135M, local IMDB, 2-core CPU
    python imdb_train/ppo.py --preset paper        # the paper's Table 1 (GPT2-Large; needs a GPU and the hub)
    python imdb_train/ppo.py --steps 50 --batch_size 16 --seed 1
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
from cory.agents import build_policies, save_policy  # noqa: E402
from cory.config import RunConfig, build, check_known_keys, parse_args  # noqa: E402
from cory.cory import CORYConfig  # noqa: E402
from cory.data import LengthSampler, PromptLoader, imdb_prompts  # noqa: E402
from cory.models import load_tokenizer  # noqa: E402
from cory.plots import plot_curves  # noqa: E402
from cory.ppo import PPOConfig, PPOTrainer  # noqa: E402
from cory.rewards import SentimentReward  # noqa: E402
from cory.tracking import Tracker, summary_line  # noqa: E402

CONSOLE_KEYS = {"env/reward_mean": "reward", "objective/kl": "kl", "objective/kl_exact": "kl_exact",
                "objective/kl_coef": "kl_coef", "time/step": "s/step"}


def main(argv=None) -> dict:
    preset, raw = parse_args("imdb", __doc__, (RunConfig, PPOConfig, CORYConfig), argv)
    check_known_keys(raw, (RunConfig, PPOConfig, CORYConfig))  # the task file also holds CORY's keys
    run, ppo = build(RunConfig, raw), build(PPOConfig, raw)
    run_dir = Path(run.output_dir) / (run.run_name or f"ppo-{preset}-seed{run.seed}")
    set_seed(run.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())

    # 1. data, reward, models
    tokenizer = load_tokenizer(run.model_name)
    prompts = imdb_prompts(run.dataset_path, tokenizer, run.min_review_chars, (run.query_min_tokens, run.query_max_tokens), run.seed)
    loader = PromptLoader(prompts, ppo.batch_size, run.seed)
    reward = SentimentReward(run.reward_model, run.positive_label, device=accelerator.device)
    [policy], reference = build_policies(run, 1, accelerator.device)
    trainer = PPOTrainer(ppo, policy, reference, tokenizer, accelerator, seed=run.seed)
    response_len = LengthSampler(run.response_min_tokens, run.response_max_tokens, np.random.default_rng(run.seed))
    tracker = Tracker(run_dir, {"preset": preset, **raw}, run.log_with)

    bar = tqdm(range(run.steps), desc="ppo", disable=not accelerator.is_main_process)
    for step in bar:
        t0 = time.perf_counter()
        # 2. sample responses to a batch of review prefixes
        queries = loader.next_batch()
        responses = trainer.generate(queries, **run.generation_kwargs(response_len()))
        t_gen = time.perf_counter()
        # 3. score prefix + response with the sentiment classifier
        query_texts = tokenizer.batch_decode(queries, skip_special_tokens=True)
        response_texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
        scores = reward([q + r for q, r in zip(query_texts, response_texts)])
        t_score = time.perf_counter()
        # 4. one PPO step
        stats = trainer.step(queries, responses, scores)
        stats.update({"time/generate": t_gen - t0, "time/score": t_score - t_gen, "time/step": time.perf_counter() - t0})
        # 5. log
        samples = None
        if run.log_samples_every and step % run.log_samples_every == 0:
            samples = [{"query": q, "response": r, "reward": s} for q, r, s in list(zip(query_texts, response_texts, scores))[:4]]
        tracker.log(step, stats, samples)
        bar.set_postfix_str(summary_line(stats, CONSOLE_KEYS))
        tqdm.write(f"step {step:4d} " + summary_line(stats, CONSOLE_KEYS))

    if run.save_model:
        save_policy(trainer.policy, tokenizer, run_dir / "final")
    from cory.tracking import read_metrics

    plot_curves(read_metrics(tracker.metrics_path), {"task reward": ["env/reward_mean"],
                "KL to reference": ["objective/kl", "objective/kl_exact"], "KL coefficient": ["objective/kl_coef"]},
                run_dir / "curves.png", title=run_dir.name)
    tracker.close()
    print(f"metrics, curves.png and the final model are in {run_dir}")
    return stats


if __name__ == "__main__":
    main()
