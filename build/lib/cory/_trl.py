"""The one place where `cory` imports trl's internal helpers.

trl does not export these; if a release moves them, this file is the only fix.
"""
from trl.models import unwrap_model_for_generation
from trl.models.utils import prepare_deepspeed
from trl.trainer.utils import disable_dropout_in_model, entropy_from_logits, selective_log_softmax

__all__ = [
    "disable_dropout_in_model",
    "entropy_from_logits",
    "prepare_deepspeed",
    "selective_log_softmax",
    "unwrap_model_for_generation",
]
