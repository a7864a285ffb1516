"""Top-k inner-product search of query vectors against the pool (faiss): exact, IVF or HNSW.

Exact search is the default and the paper's; the approximate kinds exist for pools far beyond
0.5M segments, and come with a recall@k measurement against exact search so a user sees what
they trade. Results are always exactly min(k, pool) rows per query, best first, ties broken by
pool row, so they are canonical whatever faiss does internally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

INDEX_KINDS = ("exact", "ivf", "hnsw")


@dataclass(frozen=True)
class IndexSpec:
    """Which index to build and its knobs (all recorded in the stage parameters)."""

    kind: str = "exact"
    nlist: int | None = None  # IVF cells; default 4 * sqrt(pool)
    nprobe: int = 32  # IVF cells visited per query
    hnsw_m: int = 32  # HNSW graph degree
    ef_search: int = 128  # HNSW search breadth

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"unknown --index '{self.kind}' (choose: {', '.join(INDEX_KINDS)})")

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "exact":
            return {"kind": "exact"}
        if self.kind == "ivf":
            return {"kind": "ivf", "nlist": self.nlist, "nprobe": self.nprobe}
        return {"kind": "hnsw", "hnsw_m": self.hnsw_m, "ef_search": self.ef_search}


def build_index(vectors: np.ndarray, spec: IndexSpec) -> Any:
    """A faiss inner-product index over the pool rows (row i of `vectors` gets id i)."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if spec.kind == "exact" or n == 0:
        index = faiss.IndexFlatIP(dim)
    elif spec.kind == "ivf":
        nlist = max(1, min(n, spec.nlist or int(4 * math.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234  # k-means initialisation: fixed, so rebuilding gives the same cells
        index.train(x)
        index.nprobe = min(spec.nprobe, nlist)
    else:
        index = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = spec.ef_search
    index.add(x)
    return index


def canonical_order(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each result row by score (desc) then pool row (asc): ties no longer depend on faiss."""
    order = np.lexsort((rows, -scores), axis=-1)
    return np.take_along_axis(scores, order, -1), np.take_along_axis(rows, order, -1)


def exact_topk(pool: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by one matrix product (the reference for recall checks on small samples)."""
    k = min(k, pool.shape[0])
    sims = np.asarray(queries, np.float32) @ np.asarray(pool, np.float32).T
    rows = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < pool.shape[0] else np.tile(np.arange(k), (len(sims), 1))
    scores = np.take_along_axis(sims, rows, 1)
    return canonical_order(scores, rows.astype(np.int64))


def search(index: Any, queries: np.ndarray, k: int, pool: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores float32, pool rows int64), each (n, min(k, pool size)), best first.

    Approximate indexes can return fewer than k hits for a query (-1 ids); those queries are
    answered exactly from `pool` instead, so every concept gets a full top-k.
    """
    k = min(k, index.ntotal)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if k == 0 or len(q) == 0:
        return np.zeros((len(q), k), np.float32), np.zeros((len(q), k), np.int64)
    scores, rows = index.search(q, k)
    short = (rows < 0).any(axis=1)
    if short.any():
        if pool is None:
            raise ValueError("the index returned fewer than k results and no pool was given to complete them")
        scores[short], rows[short] = exact_topk(pool, q[short], k)
    return canonical_order(scores.astype(np.float32), rows.astype(np.int64))


def recall_at_k(approx_rows: np.ndarray, exact_rows: np.ndarray) -> float:
    """Share of the exact top-k found by the approximate search (averaged over queries)."""
    if exact_rows.size == 0:
        return 1.0
    hits = sum(len(np.intersect1d(a, e)) for a, e in zip(approx_rows, exact_rows, strict=True))
    return hits / exact_rows.size
