"""The PNGs a study commits stay small enough for results/ (< 300 KB) and keep their colours."""

import json

import numpy as np
from PIL import Image

from cory.run.plots import plot_grid
from cory.studies.overview import draw_claims, matched_kl_rows

LIMIT = 300_000
TAB_BLUE = (31, 119, 180)  # matplotlib's first line colour


def test_a_grid_of_seed_bands_is_saved_paletted_under_the_results_limit(tmp_path):
    """The densest plot a report draws: 3 settings x 3 metrics, 3 curves each with an overlapping +-std band over
    seeds that spread widely. In RGBA this was 293 KB for the robustness study at 9 of 30 runs."""
    rng = np.random.default_rng(0)
    curve = lambda: {m: {s: list(rng.normal(s / 10, 1 + s / 20, 5)) for s in range(0, 61, 5)} for m in ("r", "kl", "v")}  # noqa: E731
    grid = {setting: {name: curve() for name in ("PPO", "CORY agent A", "CORY agent B")} for setting in ("lr10x", "lr4x", "default")}
    path = plot_grid(grid, {"r": "task reward", "kl": "KL", "v": "VADER"}, tmp_path / "sweep.png")
    image = Image.open(path)
    assert image.mode == "P" and path.stat().st_size < LIMIT
    colours = np.array(image.convert("RGB")).reshape(-1, 3)
    assert np.abs(colours - TAB_BLUE).sum(axis=1).min() <= 6  # the first curve's blue survives the palette



def test_the_claims_figure_reads_each_study_s_matched_kl_intervals_against_its_own_baseline(tmp_path):
    """Decided, undecided and not-reached levels get their own marks; another baseline's rows and a level no seed
    reached (no estimate) are left out; a study without a report is skipped."""
    level = lambda kl, label, diff=0.01: {"level": kl, "seeds": 5, "label": label, "diff": diff, "low": diff - 0.05, "high": diff + 0.05}  # noqa: E731
    rows = {"reward at kl: CORY-GRPO agent A - GRPO per-model": [level(3, "below 0", -0.06), level(5, "undecided (~8 seeds)"),
                                                                  level(8, "not reached (2 of 5)"), {"level": 12, "seeds": 5, "label": "not reached (0 of 5)"}],
            "reward at kl: CORY-GRPO agent A - GRPO per-system": [level(3, "above 0")],
            "kl at reward: CORY-GRPO agent A - GRPO per-model": [level(0.4, "above 0")]}
    (tmp_path / "imdb-critic-free-matched").mkdir()
    (tmp_path / "imdb-critic-free-matched" / "summary.json").write_text(json.dumps({"frontier": {"default": {"frontier": rows}}}))
    got = matched_kl_rows(tmp_path)
    assert [(r["name"].split(", KL ")[1], r["kind"]) for r in got] == [("3, 5 seeds", "decided"), ("5, 5 seeds", "undecided"),
                                                                       ("8, 5 seeds", "not reached")]
    assert got[0]["diff"] == -0.06 and got[0]["name"].startswith("imdb-critic-free-matched: CORY-GRPO agent A - GRPO per-model")
    assert Image.open(draw_claims(tmp_path)).mode == "P" and (tmp_path / "claims.png").exists()
