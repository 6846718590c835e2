"""Your own task (`own_task/train.py`): prompts from a file, a reward function in Python.

`defaults` is what runs (`--preset offline` names it too): what differs from the library defaults, sized for a
2-core CPU with the offline model. No presets: a task of your own needs none (pass --key value, sweep from Python
with cory.sweep, or add a preset here: a whole setting, e.g. `presets["fast"] = {**defaults, "steps": 5}`).
"""

defaults = dict(
    model_name="smollm2-135m-instruct",
    steps=30,
    batch_size=32,
    mini_batch_size=16,
    ppo_epochs=1,
    learning_rate=5e-5,
    eval_every=30,
    eval_prompts=32,
)

presets = dict()
