"""Top-k inner-product search of query vectors against the pool: exact, or faiss IVF / HNSW.

Exact search is the default and the paper's. It is a blocked matrix product plus `torch.topk`
on the retrieval device: on a GPU that is where the CLAP text tower already runs. On the 2-core
project machine, `bench/retrieve.py` (100,000 x 512 pool, 10,000 distinct texts) measured the whole
retrieve path (dedup, search, draws, rows) at 1.5x the bare float32 matmul floor with this index
and 4.0x with faiss's `IndexFlatIP` (kept as `--index flat` for comparison). The approximate
kinds (faiss) exist for pools far beyond 0.5M segments and come with a recall@k measurement
against exact search, so a user sees what they trade.

Results are always exactly min(k, pool) rows per query; the k similarities are recomputed in
float64 from the vectors and rows are ordered by them, ties broken by pool row, so the stored
numbers do not depend on the device, BLAS blocking or the index's internal order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

INDEX_KINDS = ("exact", "flat", "ivf", "hnsw")


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
        """Flat, named like the CLI options, so a recorded run can be rebuilt into its command."""
        if self.kind in ("exact", "flat"):
            return {"index": self.kind}
        if self.kind == "ivf":
            return {"index": "ivf", "nlist": self.nlist, "nprobe": self.nprobe}
        return {"index": "hnsw", "hnsw_m": self.hnsw_m, "ef_search": self.ef_search}


class ExactIndex:
    """Exact inner-product top-k: blocked `queries @ pool.T` and `torch.topk` (faiss-like `search`)."""

    def __init__(self, vectors: np.ndarray, device: str = "cpu", block_floats: int = 1 << 27):
        import torch

        self.device = device
        self.pool = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)
        self.ntotal = int(self.pool.shape[0])
        self.block = max(1, min(4096, block_floats // max(1, self.ntotal)))  # score block <= 512 MB

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device)
        scores, rows = [], []
        with torch.inference_mode():
            for s in range(0, len(q), self.block):
                top = torch.topk(q[s : s + self.block] @ self.pool.T, k, dim=1)
                scores.append(top.values.cpu().numpy())
                rows.append(top.indices.cpu().numpy())
        return np.concatenate(scores), np.concatenate(rows).astype(np.int64)


def build_index(vectors: np.ndarray, spec: IndexSpec, device: str = "cpu") -> Any:
    """An inner-product index over the pool rows (row i of `vectors` gets id i)."""
    if spec.kind == "exact":
        return ExactIndex(vectors, device)
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if spec.kind == "flat" or n == 0:
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
    if pool is not None:
        scores = rescore(pool, q, rows)
    return canonical_order(scores.astype(np.float32), rows.astype(np.int64))


def rescore(pool: np.ndarray, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The k similarities of each query in float64: independent of device, BLAS and blocking."""
    out = np.empty(rows.shape, np.float64)
    for s in range(0, len(queries), 1024):
        cand = pool[rows[s : s + 1024]]  # (b, k, dim) float32; einsum accumulates in float64
        out[s : s + 1024] = np.einsum("bkd,bd->bk", cand, queries[s : s + 1024], dtype=np.float64)
    return out


def recall_at_k(approx_rows: np.ndarray, exact_rows: np.ndarray) -> float:
    """Share of the exact top-k found by the approximate search (averaged over queries)."""
    if exact_rows.size == 0:
        return 1.0
    hits = sum(len(np.intersect1d(a, e)) for a, e in zip(approx_rows, exact_rows, strict=True))
    return hits / exact_rows.size
