"""PNG curves of logged metrics."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(rows: list[dict], panels: dict[str, list[str]], path: Path, title: str = "") -> Path:
    """One panel per entry of `panels` (panel title -> metric keys), metric vs step."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (panel, keys) in zip(axes[0], panels.items()):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), label=key)
        _decorate(ax, panel)
    return _save(fig, path, title)


def _decorate(ax, panel: str) -> None:
    ax.set_title(panel)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _save(fig, path: Path, title: str) -> Path:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_mean_std(series: dict[str, dict[int, list[float]]], panels: dict[str, str], path: Path, title: str = "") -> Path:
    """One panel per metric: for each curve, the mean over seeds vs step with a +-1 std band.

    `series[curve][metric]` maps a metric to {step: [value per seed]}; `panels` maps metric -> panel title.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
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


def plot_pareto(points: dict[str, list[tuple[float, float, int]]], path: Path, title: str = "") -> Path:
    """Task reward vs KL, one point per (run, evaluation); the last evaluation of each run is drawn larger."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for curve, pts in points.items():
        if not pts:
            continue
        kl, reward, final = zip(*pts)
        line = ax.scatter(kl, reward, s=12, alpha=0.5, label=curve)
        ends = [(k, r) for k, r, f in pts if f]
        if ends:
            ax.scatter(*zip(*ends), s=60, color=line.get_facecolor()[0], edgecolors="black")
    ax.set_xlabel("KL(pi || pi_ref), exact, summed over the response")
    ax.set_ylabel("held-out task reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "reward vs KL (large: end of training)")
    return _save(fig, path, "")
