"""The one place where `cory` imports trl's internal helpers, on first use.

trl does not export these; if a release moves them, this file is the only fix. They are looked up lazily (module
`__getattr__`) because their modules pull in datasets, pandas, peft and FSDP (about 2 s of a 2-core CPU): a
`--help`, a refused flag or a report then answers without paying for a training run's imports. Callers write
`_trl.name(...)` at call time, never `from cory._trl import name` at module top, which would load them at once.
"""
import importlib

_HOME = {
    "disable_dropout_in_model": "trl.trainer.utils",
    "entropy_from_logits": "trl.trainer.utils",
    "selective_log_softmax": "trl.trainer.utils",
    "prepare_deepspeed": "trl.models.utils",
    "unwrap_model_for_generation": "trl.models",
}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    helper = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = helper  # later lookups skip this function
    return helper
