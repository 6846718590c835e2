"""CORY: Coevolving with the Other You — cooperative multi-agent RL fine-tuning of LLMs.

Importing the package changes nothing in the process; a run tunes the CPU allocator when it starts
(`cory.platform.cpu_memory.tune_allocator`, called by `cory.run.setup.setup`, the asset builder and the benchmarks).
"""

__version__ = "0.1.0"
