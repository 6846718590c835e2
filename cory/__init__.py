"""CORY: Coevolving with the Other You — cooperative multi-agent RL fine-tuning of LLMs."""
from cory.cpu_memory import tune_allocator

tune_allocator()  # before anything imports torch: see cory/cpu_memory.py (a 2x faster step on these CPUs)

__version__ = "0.1.0"
