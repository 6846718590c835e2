"""The PNGs a study commits stay small enough for results/ (< 300 KB) and keep their colours."""

import numpy as np
from PIL import Image

from cory.run.plots import plot_grid

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
