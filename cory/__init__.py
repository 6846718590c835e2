"""CORY: Coevolving with the Other You — cooperative multi-agent RL fine-tuning of LLMs."""

__version__ = "0.1.0"
