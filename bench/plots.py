"""The benchmarks' PNG plots (matplotlib, drawn off-screen)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, figure: Any, path: Path) -> None:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def grouped_bars(
    groups: Sequence[str],
    series: dict[str, Sequence[float | None]],
    path: Path,
    *,
    title: str,
    ylabel: str,
    target: float | None = None,
) -> None:
    """One bar per series in each group, log scale (baselines lie orders of magnitude apart);
    a missing value (None) leaves its bar out."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        xs = [g + i * width for g, v in enumerate(values) if v]
        ys = [v for v in values if v]
        axes.bar(xs, ys, width=width, label=label)
    axes.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], list(groups))
    axes.set_yscale("log")
    axes.set_ylabel(ylabel)
    if target is not None:
        axes.axhline(target, color="grey", linestyle="--", linewidth=1, label="target")
    axes.set_title(title)
    axes.grid(True, axis="y", which="both", alpha=0.3)
    axes.legend(loc="best")
    _save(plt, figure, path)


def lines(
    xs: Sequence[float],
    series: dict[str, Sequence[float]],
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for label, values in series.items():
        axes.plot(list(xs), list(values), marker="o", label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best")
    _save(plt, figure, path)


def cdf(
    series: dict[str, Sequence[float]],
    path: Path,
    *,
    title: str,
    xlabel: str,
    marks: Sequence[float] = (),
) -> None:
    """The share of samples at or below each value, log scale: a latency distribution."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for label, samples in series.items():
        values = sorted(samples)
        axes.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=label)
    axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("share at or below")
    for mark, style in zip(marks, (":", "--", "-."), strict=False):
        axes.axvline(mark, color="grey", linestyle=style, linewidth=1)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    _save(plt, figure, path)
