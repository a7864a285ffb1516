"""How evenly retrieval uses the pool: the paper notes that a few clips get over-sampled at scale.

One definition of the reuse figures, shared by the retrieve stats, the dataset card and the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def gini(counts: Iterable[int]) -> float:
    """Gini coefficient of non-negative counts: 0 = every clip used equally, ->1 = one clip takes all."""
    x = np.sort(np.asarray(list(counts), dtype=np.float64))
    n = x.size
    if n == 0 or x.sum() == 0:
        return 0.0
    # mean absolute difference form, on sorted values: sum_i (2i - n - 1) x_i / (n * sum x)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * ranks - n - 1) * x).sum() / (n * x.sum()))


def clip_usage(clip_ids: Iterable[str] | Mapping[str, int], pool_size: int | None = None) -> dict[str, Any]:
    """Reuse statistics of the chosen clips: one clip id per use, or already counted as {clip id: uses}.

    At scale pass the counts (e.g. a `Counter` filled shard by shard) rather than a list of every use.

    The Gini is computed over the whole pool when `pool_size` is known (unused clips count as 0,
    which is what "the pool is used evenly" means), otherwise over the clips that were used.
    """
    uses = Counter(clip_ids)
    counts = np.fromiter(uses.values(), dtype=np.int64, count=len(uses))
    most_used = [[c, n] for c, n in sorted(uses.items(), key=lambda kv: (-kv[1], kv[0]))[:MOST_USED]]
    return usage_figures(counts, most_used, pool_size)


MOST_USED = 20


def usage_figures(counts: np.ndarray, most_used: list[list[Any]], pool_size: int | None) -> dict[str, Any]:
    """The reuse figures from the uses of each distinct clip (any order) and the already ranked most used.

    The one place the figures are computed: `clip_usage` counts with a dict, the release statistics
    count with arrow (no Python object per clip id), and both land here.
    """
    counts = np.asarray(counts, dtype=np.int64)
    padded = counts
    if pool_size is not None and pool_size > counts.size:
        padded = np.concatenate([counts, np.zeros(pool_size - counts.size, dtype=np.int64)])
    return {
        "sources": int(counts.sum()) if counts.size else 0,
        "distinct_clips": int(counts.size),
        "pool_size": pool_size,
        "pool_share": (counts.size / pool_size) if pool_size else None,
        "max_reuse": int(counts.max()) if counts.size else 0,
        "p99_reuse": float(np.percentile(counts, 99)) if counts.size else 0.0,
        "mean_reuse": float(counts.mean()) if counts.size else 0.0,
        "gini": gini(padded),
        "most_used": most_used,
    }
