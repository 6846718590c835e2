"""IMDB: continue a review prefix positively; reward = positive logit of a sentiment classifier.

`defaults` is the paper's Table 1 (GPT2-Large, PPO and CORY share every PPO setting). A preset overrides
some keys; `--key value` on the command line overrides both. Presets:
- paper:    Table 1 as is (GPU; hub models gpt2-large and lvwerra/distilbert-imdb).
- official: the official CORY script's settings where they differ from the paper
            (init KL 0.4, score scaling and normalisation on).
- offline:  the default here: SmolLM2-135M and the locally built sentiment classifier on a 2-core CPU.
"""

defaults = dict(
    # models and data
    model_name="gpt2-large",
    reward_model="lvwerra/distilbert-imdb",
    dataset_path="imdb",
    eval_dataset_path="imdb",
    min_review_chars=200,
    query_min_tokens=2,
    query_max_tokens=8,
    # precision: bf16 autocast with fp32 master weights (every GPU the paper presets need has bf16)
    mixed_precision="bf16",
    # sampling (the official code's settings)
    response_min_tokens=4,
    response_max_tokens=16,
    top_k=0,
    top_p=1.0,
    repetition_penalty=1.1,
    # PPO (Table 1)
    steps=100,
    learning_rate=1.41e-5,
    batch_size=256,
    mini_batch_size=256,
    gradient_accumulation_steps=1,
    ppo_epochs=4,
    init_kl_coef=0.3,
    adap_kl_ctrl=True,
    target=6.0,
    horizon=10000.0,
    gamma=1.0,
    lam=0.95,
    cliprange=0.2,
    cliprange_value=0.2,
    vf_coef=0.1,
    kl_penalty="full",
    # CORY (Table 1: PPO's settings plus the role-exchange period); only imdb_train/cory.py reads this sub-dict
    cory=dict(
        swap_freq=5,
        other_reward_coef=1.0,
        knowledge_transfer=True,
        observer_template='I can make this sentence "{query}{pioneer_response}" more positive: {query}',
    ),
)

presets = dict(
    paper=dict(),
    official=dict(init_kl_coef=0.4, use_score_scaling=True, use_score_norm=True),
    offline=dict(
        model_name="smollm2-135m-instruct",
        reward_model="sentiment-minilm-imdb",
        dataset_path="../shared/data/imdb/train.parquet",
        eval_dataset_path="../shared/data/imdb/test.parquet",
        steps=30,
        batch_size=32,
        mini_batch_size=16,
        ppo_epochs=1,  # two optimizer steps per PPO step: what a 2-core CPU affords in ~15 minutes
        learning_rate=5e-5,
        eval_every=30,  # before and after: each agent alone on 32 held-out prompts, a table at the end (~1 min)
        eval_prompts=32,
        # bf16 stays (inherited): on a CPU with avx512_bf16/AMX a step is ~2x faster and learns like fp32
        # (results/precision); a CPU without native bf16 falls back to fp32 with one line
    ),
)
