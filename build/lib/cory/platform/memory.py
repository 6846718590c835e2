"""Peak memory of this process: what a run or a benchmark needed at most, for choosing a machine."""
from __future__ import annotations

import resource
import sys

import torch


def peak_memory_mb() -> float:
    """The GPU's peak allocated memory when training on CUDA, else the process's peak resident set size."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB; macOS: bytes
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
