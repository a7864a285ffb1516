"""PNG figures of a run (matplotlib, Agg): the same files feed the dataset card and the HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI backend on a headless machine

import matplotlib.pyplot as plt
import numpy as np

from .stats import RunData, compute_stats, iter_distributions, reuse_counts

TITLES = {
    "similarity": ("CLAP cosine similarity of the chosen clips", "similarity s"),
    "score": ("Signed-square-root score of the chosen clips", "score r = sign(s)·sqrt(|s|)"),
    "threshold": ("Dynamic threshold per concept (mean r over top-k)", "threshold τ"),
    "clip_lufs": ("Loudness of the chosen pool segments", "LUFS"),
    "target_lufs": ("Target loudness per source", "LUFS"),
    "rendered_lufs": ("Loudness of the rendered mixes", "LUFS"),
}


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # no date or software-version chunks: republishing the same run gives the same bytes
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def histogram(values: np.ndarray, title: str, xlabel: str, path: Path, *, smoke: bool = False) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    if values.size:
        ax.hist(values, bins=min(40, max(5, int(np.sqrt(values.size)))), color="#3b6ea8")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    _smoke_mark(ax, smoke)
    _save(fig, path)


def bars(labels: list[str], counts: list[int], title: str, path: Path, *, smoke: bool = False) -> None:
    fig, ax = plt.subplots(figsize=(6, 0.28 * max(len(labels), 4) + 1.0), layout="constrained")
    y = np.arange(len(labels))
    ax.barh(y, counts, color="#3b6ea8")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(title=title, xlabel="count")
    _smoke_mark(ax, smoke)
    _save(fig, path)


def _smoke_mark(ax: Any, smoke: bool) -> None:
    if smoke:
        ax.text(
            0.5, 0.5, "SMOKE RUN", color="red", alpha=0.25, fontsize=28, ha="center", va="center",
            rotation=20, transform=ax.transAxes,
        )  # fmt: skip


def write_plots(run: RunData, out_dir: Path, stats: dict[str, Any] | None = None) -> dict[str, str]:
    """Every standard figure of a run into `out_dir`; returns {figure name: file name}."""
    stats = stats or compute_stats(run)
    smoke = bool(stats["smoke_run"])
    out_dir = Path(out_dir)
    files: dict[str, str] = {}

    hist = stats["concepts_per_pair"]["histogram"]
    name = "concepts_per_pair.png"
    bars([f"{k} sources" for k in hist], list(hist.values()), "Sound sources (concepts) per pair", out_dir / name,
         smoke=smoke)  # fmt: skip
    files["concepts_per_pair"] = name

    top = stats["top_concepts"][:25]
    name = "top_concepts.png"
    bars([c for c, _ in top], [n for _, n in top], "Most frequent sounding concepts", out_dir / name, smoke=smoke)
    files["top_concepts"] = name

    for key, values in iter_distributions(run):
        if key == "rendered_lufs" and run.rendered is None:
            continue
        title, xlabel = TITLES[key]
        name = f"{key}.png"
        histogram(values, title, xlabel, out_dir / name, smoke=smoke)
        files[key] = name

    uses = reuse_counts(run)
    name = "clip_reuse.png"
    fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    if uses.size:
        top_use = int(uses.max())
        ax.hist(uses, bins=np.arange(1, top_use + 2) - 0.5 if top_use <= 60 else 40, color="#3b6ea8")
        ax.set_yscale("log")
    ax.set(title="Clip reuse: how many pairs use each chosen clip", xlabel="pairs using the clip", ylabel="clips")
    _smoke_mark(ax, smoke)
    _save(fig, out_dir / name)
    files["clip_reuse"] = name
    return files
