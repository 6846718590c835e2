"""How each arm's held-out responses change over training, from a study's ledger alone: per evaluation step the mean
length, the share that ended early, distinct-2 against step 0's, and each seed's commonest response, decoded. It
shows where a collapse (early EOS, one answer for every prompt) sets in, in any study, whether or not the study
registered degeneration as an endpoint.

    python scripts/degeneration.py imdb-frontier
    python scripts/degeneration.py imdb-robustness --setting lr10x
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cory.errors import run_script
from cory.studies.addendum import degeneration_lines
from cory.studies.arms import response_decoder, study_arms
from cory.studies.evaluations import load
from cory.studies.queue import setting_entries

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the study: results/<name>/")
    parser.add_argument("--setting", default="default", help="which of the study's settings (default: default)")
    parser.add_argument("--results_dir", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    study, entries, refused = setting_entries(args.results_dir / args.name, args.setting)
    runs = load(args.results_dir / args.name, list(entries), study_arms(study))[args.setting]
    text = "\n".join([*(f"{path}: refused: {why}" for path, why in refused.items()),
                      *degeneration_lines(runs, response_decoder(study), {})])
    print(text)
    return text


if __name__ == "__main__":
    run_script(main)
