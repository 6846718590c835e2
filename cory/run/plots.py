"""PNG curves of logged metrics."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

PALETTE_COLOURS = 256
"""a line plot needs no more; with them a committed PNG shrinks ~3x (a 3x3 grid of seed bands: 293 -> 93 KB), under
the 300 KB a plot in results/ may take"""


def _figure(size: tuple[float, float]):
    """A figure outside pyplot's global state (no backend to pick, nothing to close; imported on first plot)."""
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def per_agent(names: tuple[str, ...], panels: dict[str, str]) -> dict[str, list[str]]:
    """`plot_curves` panels with one curve per agent: panel title -> the metric key after `<agent>/`."""
    return {panel: [f"{name}/{key}" for name in names] for panel, key in panels.items()}


def plot_curves(rows: list[dict], panels: dict[str, list[str]], path: Path, title: str = "", smooth: int = 5) -> Path:
    """One panel per entry of `panels` (panel title -> metric keys), metric vs step: the raw values faint, a
    `smooth`-step moving average on top. In a CORY run the steps where agent B is the pioneer are shaded."""
    fig = _figure((5 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    b_leads = [r["step"] for r in rows if r.get("cory/pioneer_agent") == 1.0]
    for ax, (panel, keys) in zip(axes[0], panels.items()):
        for step in b_leads:
            ax.axvspan(step - 0.5, step + 0.5, color="0.9", lw=0)
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                steps, values = map(np.array, zip(*points))
                line, = ax.plot(steps, values, alpha=0.3 if len(values) > smooth > 1 else 1.0)
                if len(values) > smooth > 1:
                    ax.plot(steps[smooth - 1:], np.convolve(values, np.ones(smooth) / smooth, "valid"), color=line.get_color(),
                            label=f"{key} ({smooth}-step mean)")
                else:
                    line.set_label(key)
        if b_leads:
            ax.plot([], [], color="0.85", lw=6, label="shaded: agent B is the pioneer")
        _decorate(ax, panel)
    return _save(fig, path, title)


def _decorate(ax, panel: str) -> None:
    ax.set_title(panel)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)  # a KL coefficient near 0.3 reads 0.3, not 1e-5+2.999e-1


def _save(fig, path: Path, title: str) -> Path:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=110)
    from PIL import Image  # matplotlib's own dependency

    paletted = Image.open(rendered).convert("RGB").quantize(PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT)
    paletted.save(path, format="PNG", optimize=True)
    return Path(path)


def plot_mean_std(series: dict[str, dict[int, list[float]]], panels: dict[str, str], path: Path, title: str = "") -> Path:
    """One panel per metric: for each curve, the mean over seeds vs step with a +-1 std band.

    `series[curve][metric]` maps a metric to {step: [value per seed]}; `panels` maps metric -> panel title.
    """
    fig = _figure((5 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (metric, panel) in zip(axes[0], panels.items()):
        for curve, metrics in series.items():
            by_step = metrics.get(metric, {})
            steps = sorted(by_step)
            if not steps:
                continue
            mean = np.array([np.mean(by_step[s]) for s in steps])
            std = np.array([np.std(by_step[s]) for s in steps])
            ax.plot(steps, mean, marker="o", ms=3, label=curve)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        _decorate(ax, panel)
    return _save(fig, path, title)


def plot_trajectories(series: dict[str, dict[str, dict[int, list[float]]]], x: str, y: str, path: Path, title: str = "") -> Path:
    """One trajectory per curve in the (x, y) plane: the mean over seeds at each step, in step order, the
    last point drawn large (the paper's reward-KL plane)."""
    fig = _figure((5.5, 4.2))
    ax = fig.subplots()
    for curve, metrics in series.items():
        steps = sorted(set(metrics.get(x, {})) & set(metrics.get(y, {})))
        if not steps:
            continue
        xs, ys = [np.mean(metrics[x][s]) for s in steps], [np.mean(metrics[y][s]) for s in steps]
        (line,) = ax.plot(xs, ys, marker="o", ms=3, label=curve)
        ax.scatter(xs[-1:], ys[-1:], s=80, color=line.get_color(), edgecolors="black", zorder=3)
    ax.set_xlabel("KL(pi || pi_ref), exact, summed over the response" if x == "kl_exact" else x)
    ax.set_ylabel("held-out task reward" if y == "reward_mean" else y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return _save(fig, path, "")


def plot_grid(grid: dict[str, dict[str, dict[str, dict[int, list[float]]]]], rows: dict[str, str], path: Path, title: str = "") -> Path:
    """A panel per (metric, setting): `grid[setting]` is a `plot_mean_std` series; `rows` maps metric -> row title."""
    fig = _figure((4.2 * len(grid), 3.0 * len(rows)))
    axes = fig.subplots(len(rows), len(grid), squeeze=False)
    for col, (setting, series) in enumerate(grid.items()):
        for row, (metric, label) in enumerate(rows.items()):
            ax = axes[row][col]
            for curve, metrics in series.items():
                by_step = metrics.get(metric, {})
                steps = sorted(by_step)
                if steps:
                    mean = np.array([np.mean(by_step[s]) for s in steps])
                    std = np.array([np.std(by_step[s]) for s in steps])
                    ax.plot(steps, mean, marker="o", ms=2, label=curve)
                    ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
            _decorate(ax, f"{setting}: {label}" if row == 0 else label)
            ax.title.set_fontsize(8)
    return _save(fig, path, title)


def plot_frontier(paths: dict[str, dict[int, tuple[list[float], list[float]]]], means: dict[str, tuple[list[float], list[float]]],
                  path: Path, title: str = "") -> Path:
    """The reward-KL frontier per arm: each seed's held-out trajectory thin, the mean over seeds bold (its end large)."""
    fig = _figure((6.0, 4.4))
    ax = fig.subplots()
    for curve, by_seed in paths.items():
        kl, reward = means[curve]
        (line,) = ax.plot(kl, reward, lw=2.2, marker="o", ms=3, label=f"{curve} (mean of {len(by_seed)} seeds)")
        ax.scatter(kl[-1:], reward[-1:], s=70, color=line.get_color(), edgecolors="black", zorder=3)
        for seed_kl, seed_reward in by_seed.values():
            ax.plot(seed_kl, seed_reward, lw=0.6, alpha=0.35, color=line.get_color())
    ax.set_xlabel("KL(pi || pi_ref), exact, summed over the response")
    ax.set_ylabel("held-out task reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, path, "")


def plot_intervals(rows: list[dict], path: Path, bound: float, xlabel: str, title: str = "") -> Path:
    """A forest plot: one line per row ({"name", "diff", "low", "high", "kind"}), its estimate and interval, top to
    bottom in order; 0 solid and +-`bound` dashed (inside both ends: bounded). `kind` ("decided", "undecided", "not
    reached") sets the marker, so a reader sees which intervals the study's rule decides on. The x range fits the
    reached levels' intervals; a not-reached level's wider one (a few seeds) runs off the edge."""
    markers = {"decided": ("o", "black"), "undecided": ("o", "white"), "not reached": ("x", "0.5")}
    reach = max([abs(v) for row in rows if row["kind"] != "not reached" for v in (row["low"], row["high"])] + [1.5 * bound])
    fig = _figure((10.0, 1.2 + 0.32 * len(rows)))
    ax = fig.subplots()
    for y, row in enumerate(reversed(rows)):
        marker, face = markers[row["kind"]]
        ax.plot([row["low"], row["high"]], [y, y], color="0.3", lw=1.4)
        ax.plot([row["diff"]], [y], marker=marker, ms=6, mfc=face, mec="black", color="black", lw=0)
    ax.set_yticks(range(len(rows)), [row["name"] for row in reversed(rows)], fontsize=7)
    ax.axvline(0, color="black", lw=0.8)
    for edge in (-bound, bound):
        ax.axvline(edge, color="0.5", lw=0.8, ls="--")
    for kind, (marker, face) in markers.items():
        ax.plot([], [], marker=marker, ms=6, mfc=face, mec="black", color="black", lw=0, label=kind)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xlim(-1.15 * reach, 1.15 * reach)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(title, fontsize=9)
    return _save(fig, path, "")
