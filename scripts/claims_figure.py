"""Claim 1 in one picture: reward at matched KL, each CORY agent minus its study's baseline, with the interval its
study decides on, from the committed reports (`cory.studies.overview`; `compare.py --report_only` of a study shown
redraws it too).

    python scripts/claims_figure.py            # -> results/claims.png

Filled: decided by the study's rule (above or below 0, or bounded within the dashed +-0.1); hollow: undecided;
x: a level too few seeds reached (the interval over those that did). imdb-claims is its post-hoc re-reading.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cory.errors import run_script
from cory.studies.overview import draw_claims

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--out", type=Path, default=None, help="default: <results>/claims.png")
    args = parser.parse_args(argv)
    print(f"{draw_claims(args.results, args.out)}")


if __name__ == "__main__":
    run_script(main)
