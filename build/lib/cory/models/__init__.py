"""Loading language models and classifiers (hub id, local directory, offline alias) and LoRA adapters."""
