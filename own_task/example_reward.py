r"""An example reward for `own_task/train.py`: a plain function of the prompts and the responses.

    python own_task/train.py --algorithm cory --dataset_path ../shared/data/imdb/train.parquet --prompt_column text \
        --max_prompt_tokens 8 --reward_fn own_task.example_reward:upbeat
"""
POSITIVE = {"good", "great", "love", "loved", "best", "fun", "wonderful", "excellent", "beautiful", "enjoy", "enjoyed"}
NEGATIVE = {"bad", "worst", "boring", "awful", "terrible", "hate", "waste", "poor", "stupid", "dull"}


def upbeat(prompts: list[str], responses: list[str]) -> list[float]:
    """Positive words minus negative words in the response, per word (a lexicon, no model)."""
    scores = []
    for response in responses:
        words = [w.strip(".,!?;:\"'()").lower() for w in response.split()]
        hits = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
        scores.append(hits / max(len(words), 1))
    return scores
