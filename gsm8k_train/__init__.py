"""The paper's GSM8K scripts. A package so that `import cory` in them names the library for readers and tools (run them as
`python gsm8k_train/cory.py`, or `python -m gsm8k_train.cory` from the repo root)."""
