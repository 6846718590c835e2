"""`python -m cory.assets all|sentiment|smollm2|gsm8k-sft`: build the offline assets once."""
from cory.assets.build import main

main()
