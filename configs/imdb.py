"""IMDB: continue a review prefix positively; reward = positive logit of a sentiment classifier.

`defaults` is what runs when no preset is named (`--preset offline` names it too): SmolLM2-135M and the locally built
sentiment classifier on a 2-core CPU, no hub needed. A preset is a whole other setting, written as what differs from
the library defaults (the dataclasses in cory/, which hold legacy trl's PPO settings, the official code's sampling
and the paper's IMDB data, template and CORY settings); `--key value` on the command line overrides either. Presets:
- paper:    the paper's Table 1 (GPT2-Large; GPU; hub models gpt2-large and lvwerra/distilbert-imdb).
- official: the official CORY script's settings where they differ from the paper
            (init KL 0.4, score scaling and normalisation on).
`python imdb_train/cory.py --help` lists every key with its value and the layer that set it.
"""

paper = dict(
    model_name="gpt2-large",
    mixed_precision="bf16",  # bf16 autocast, fp32 master weights (every GPU the paper presets need has bf16)
    init_kl_coef=0.3,  # Table 1 (trl's default is 0.2)
    kl_penalty="full",  # exact KL over the vocabulary, the paper's measure
)

defaults = dict(
    model_name="smollm2-135m-instruct",
    reward_model="sentiment-minilm-imdb-fast",  # built in ~2 min; the evidence study pins the first recipe (cory/assets/build.py)
    dataset_path="../shared/data/imdb/train.parquet",
    eval_dataset_path="../shared/data/imdb/test.parquet",
    init_kl_coef=0.3,  # the paper's, as in every preset
    kl_penalty="full",
    steps=20,  # the demo: 13m38 from bare on a 2-core AVX2-only CPU in fp32 (~18 on its slowest hour; README); the study runs 60
    batch_size=32,
    mini_batch_size=16,
    ppo_epochs=1,  # two optimizer steps per PPO step
    learning_rate=5e-5,
    eval_every=20,  # before and after, each agent alone; the change with its CI over the prompts at the end
    eval_prompts=256,  # on 64 prompts agent B's gain held 0 on both seeds; on 256 both agents' gains exclude 0 on
    # both (the same training, a CI half as wide, ~2 min more: results/demo-size)
    eval_roles=False,  # the observer-role evaluations (~2.5 min on a 2-core CPU) are the study's; compare.py turns them on
    mixed_precision="no",  # fp32 on every CPU kind: the demo's evidence (results/demo-size) is fp32, and in bf16 on
    # an AVX-512-bf16 EPYC agent B's gain held 0 (+0.028 [-0.053, +0.113]; 6m33 from bare); --mixed_precision bf16 is ~2x faster there
)

presets = dict(
    paper=paper,
    official={**paper, "init_kl_coef": 0.4, "use_score_scaling": True, "use_score_norm": True},
)
