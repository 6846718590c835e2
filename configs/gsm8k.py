"""GSM8K: grade-school math; reward 1 if the completion's final number equals the reference answer, else 0.

`defaults` is what runs when no preset is named (`--preset offline` names it too): the local GSM8K files, problems
of at most 2 calculation steps (train and held-out alike), and SmolLM2-135M-Instruct after a short SFT on training
solutions (`python -m cory.assets gsm8k-sft`): untrained, it almost never answers right, so RL would see no reward
(results/gsm8k/summary.md). A preset is a whole other setting, written as what differs from the library defaults
(the dataclasses in cory/; the paper's one-shot prompt and exact-answer reward are GSM8KConfig's); a `ppo` / `cory`
sub-dict applies only to that script (the paper trains PPO at lr 1e-5 and CORY at 1e-4); `--key value` on the
command line overrides all. Presets:
- paper: the paper's Table 2 (Llama-2-7b-chat, 4-bit + LoRA; a CUDA GPU and the hub).
`python gsm8k_train/cory.py --help` lists every key with its value and the layer that set it.
"""

paper = dict(
    # model: 4-bit base + LoRA (rank/targets are not given in the paper; these are peft's usual choice for Llama)
    model_name="meta-llama/Llama-2-7b-chat-hf",
    load_in_4bit=True,
    dtype="bfloat16",
    mixed_precision="bf16",
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    lora_target_modules="q_proj,k_proj,v_proj,o_proj",
    # sampling: one length, pure sampling
    response_min_tokens=256,
    response_max_tokens=256,
    repetition_penalty=1.0,
    # PPO (Table 2)
    learning_rate=1e-5,
    batch_size=32,
    mini_batch_size=2,
    gradient_accumulation_steps=16,
    init_kl_coef=0.01,
    cory=dict(learning_rate=1e-4),
)

defaults = dict(
    model_name="smollm2-135m-gsm8k-sft",  # built from this setting's prompt and subset (cory.assets.build, cory.assets.sft)
    mixed_precision="bf16",  # resolved per machine: no native bf16 on the CPU -> fp32 (cory/platform/precision.py)
    lora_r=16,  # the paper's LoRA shape on the small model
    lora_alpha=32,
    lora_dropout=0.05,
    lora_target_modules="q_proj,k_proj,v_proj,o_proj",
    use_chat_template=True,  # the instruct model answers a user turn; the bare one-shot text often gets EOS
    prompt_template='{question}\nSolve it step by step, then give the final answer as "#### <number>".',
    max_solution_steps=2,
    dataset_path="../shared/data/gsm8k/train.jsonl",
    eval_dataset_path="../shared/data/gsm8k/test.jsonl",
    response_min_tokens=96,
    response_max_tokens=96,
    repetition_penalty=1.0,
    steps=10,  # what one session of this 2-core CPU affords (a CORY step at batch 32: ~5 min on one core); make demo-gsm8k runs 2 at batch 8
    learning_rate=1e-5,  # the paper's PPO rate; CORY's below
    batch_size=32,  # as in the paper: a batch holds several correct answers at the warm start's rate
    mini_batch_size=8,
    ppo_epochs=1,
    init_kl_coef=0.01,
    cory=dict(
        learning_rate=1e-4,
        observer_template='{question}\nA first attempt: {pioneer_response}\nSolve it step by step, then give the final answer as "#### <number>".',
    ),
)

presets = dict(paper=paper)
