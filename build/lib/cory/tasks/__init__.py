"""Tasks: prompts and rewards (IMDB, GSM8K, your own text task), templates and data files."""
