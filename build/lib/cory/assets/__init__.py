"""Building the offline assets (`python -m cory.assets all`): models, the sentiment classifier, the GSM8K warm start."""
