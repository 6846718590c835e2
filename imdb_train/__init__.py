"""The paper's IMDB scripts. A package so that `import cory` in them names the library for readers and tools (run them as
`python imdb_train/cory.py`, or `python -m imdb_train.cory` from the repo root)."""
