"""Top-k inner-product search of query vectors against the pool: exact, or faiss IVF / HNSW.

Exact search is the default and the paper's. It streams the pool in row blocks (from the
memory-mapped embeddings shards, `pool_files.PoolVectors`, or any array) through the retrieval
device: each block is scored against every query by a matrix product, a few more than k
candidates per query are kept by `torch.topk`, and the kept candidates are rescored in float64 on
the CPU, where the final k are chosen. On the 2-core project machine, `bench/retrieve.py`
(100,000 x 512 pool, 10,000 distinct texts) measured the whole retrieve path (dedup, search,
draws, rows) at 1.5x the bare float32 matmul floor with this index and 4.0x with faiss's
`IndexFlatIP` (kept as `--index flat` for comparison). On a GPU the block scores are half
precision (float16 inputs, float16 scores); the candidate margin absorbs their rounding, so the
chosen k are the float64 top k as on the CPU. The approximate kinds (faiss) exist for pools far
beyond 0.5M segments and come with a recall@k measurement against exact search.

Results are always exactly min(k, pool) rows per query; the k similarities are recomputed in
float64 from the vectors and rows are ordered by them, ties broken by pool row, so the stored
numbers do not depend on the device, BLAS blocking, precision or the index's internal order.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError

INDEX_KINDS = ("exact", "flat", "ivf", "hnsw")
POOL_BLOCK_ROWS = 65_536  # 128 MB of 512-d float32 per streamed block
ADD_BLOCK_ROWS = 65_536  # rows handed to faiss per `add`, so the pool is never held twice


class IndexSpecError(InputError):
    """An index option that does not exist."""


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
            raise IndexSpecError(f"unknown --index '{self.kind}' (choose: {', '.join(INDEX_KINDS)})")

    def as_dict(self) -> dict[str, Any]:
        """Flat, named like the CLI options, so a recorded run can be rebuilt into its command."""
        if self.kind in ("exact", "flat"):
            return {"index": self.kind}
        if self.kind == "ivf":
            return {"index": "ivf", "nlist": self.nlist, "nprobe": self.nprobe}
        return {"index": "hnsw", "hnsw_m": self.hnsw_m, "ef_search": self.ef_search}


def row_blocks(vectors: Any, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 block) over an array or anything with `blocks(rows)` (the memory-mapped pool)."""
    if hasattr(vectors, "blocks"):
        yield from vectors.blocks(rows)
        return
    for s in range(0, len(vectors), rows):
        yield s, np.asarray(vectors[s : s + rows], dtype=np.float32)


def candidates_for(k: int, ntotal: int) -> int:
    """How many rows a block search keeps per query before the float64 rescoring picks the k."""
    return min(ntotal, 2 * k + 16)


class ExactIndex:
    """Exact inner-product top-k streamed over pool blocks (faiss-like `search`).

    `half` scores in float16 (the default on CUDA; on the CPU it exists to test that path).
    """

    def __init__(
        self,
        vectors: Any,
        device: str = "cpu",
        block_floats: int = 1 << 27,
        pool_block_rows: int = POOL_BLOCK_ROWS,
        half: bool | None = None,
    ):
        import torch

        self.vectors = vectors
        self.device = torch.device(device)
        self.half = self.device.type == "cuda" if half is None else half
        self.ntotal = len(vectors)
        self.pool_block_rows = max(1, min(pool_block_rows, self.ntotal))
        self.block = max(1, min(4096, block_floats // self.pool_block_rows))  # queries per score block (<= 512 MB)

    def candidates(self, queries: np.ndarray, k: int) -> np.ndarray:
        """(n, candidates_for(k)) pool rows holding each query's top k, in no particular order."""
        import torch

        n, kc = len(queries), candidates_for(k, self.ntotal)
        dtype = torch.float16 if self.half else torch.float32
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device, dtype)
        best_scores = torch.full((n, 0), -math.inf, dtype=dtype, device=self.device)
        best_rows = torch.zeros((n, 0), dtype=torch.int64, device=self.device)
        with torch.inference_mode():
            for start, block in row_blocks(self.vectors, self.pool_block_rows):
                with warnings.catch_warnings():  # a read-only memory map: torch only reads it
                    warnings.simplefilter("ignore", UserWarning)
                    pool = torch.from_numpy(block).to(self.device, dtype)
                scores, rows = [], []
                for s in range(0, n, self.block):
                    top = torch.topk(q[s : s + self.block] @ pool.T, min(kc, len(block)), dim=1)
                    scores.append(top.values)
                    rows.append(top.indices + start)
                merged_scores = torch.cat([best_scores, torch.cat(scores)], dim=1)
                merged_rows = torch.cat([best_rows, torch.cat(rows)], dim=1)
                keep = torch.topk(merged_scores, min(kc, merged_scores.shape[1]), dim=1).indices
                best_scores = torch.gather(merged_scores, 1, keep)
                best_rows = torch.gather(merged_rows, 1, keep)
                del pool
        return best_rows.cpu().numpy()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(float64-rescored similarities as float32, rows), (n, min(k, pool)), best first, ties by row."""
        k = min(k, self.ntotal)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if k == 0 or len(q) == 0:
            return np.zeros((len(q), k), np.float32), np.zeros((len(q), k), np.int64)
        rows = self.candidates(q, k)
        scores, rows = canonical_order(rescore(self.vectors, q, rows).astype(np.float32), rows)
        return scores[:, :k], rows[:, :k]


def build_index(vectors: np.ndarray, spec: IndexSpec, device: str = "cpu") -> Any:
    """An inner-product index over the pool rows (row i of `vectors` gets id i).

    `vectors` is an array or the memory-mapped pool. faiss indexes receive the rows block by block,
    so the process never holds the pool twice (faiss's copy plus ours); IVF's k-means alone reads
    its training rows into memory first and drops them before the rows are added.
    """
    if spec.kind == "exact":
        return ExactIndex(vectors, device)
    import faiss

    n, dim = len(vectors), int(vectors.shape[1])
    if spec.kind == "flat" or n == 0:
        index = faiss.IndexFlatIP(dim)
    elif spec.kind == "ivf":
        nlist = max(1, min(n, spec.nlist or int(4 * math.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234  # k-means initialisation: fixed, so rebuilding gives the same cells
        index.train(np.ascontiguousarray(np.asarray(vectors), dtype=np.float32))
        index.nprobe = min(spec.nprobe, nlist)
    else:
        index = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = spec.ef_search
    for _, block in row_blocks(vectors, ADD_BLOCK_ROWS):
        index.add(np.ascontiguousarray(block, dtype=np.float32))
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


def search(index: Any, queries: np.ndarray, k: int, pool: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores float32, pool rows int64), each (n, min(k, pool size)), best first.

    `pool` is an array or the memory-mapped pool. Approximate indexes can return fewer than k hits
    for a query (-1 ids); those queries are answered exactly from `pool` instead, so every concept
    gets a full top-k.
    """
    if isinstance(index, ExactIndex):
        return index.search(queries, k)  # already rescored in float64 and in canonical order
    k = min(k, index.ntotal)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if k == 0 or len(q) == 0:
        return np.zeros((len(q), k), np.float32), np.zeros((len(q), k), np.int64)
    scores, rows = index.search(q, k)
    short = (rows < 0).any(axis=1)
    if short.any():
        if pool is None:
            raise ValueError("the index returned fewer than k results and no pool was given to complete them")
        scores[short], rows[short] = ExactIndex(pool).search(q[short], k)
    if pool is not None:
        scores = rescore(pool, q, rows)
    return canonical_order(scores.astype(np.float32), rows.astype(np.int64))


RESCORE_PAIRS = 1 << 16  # (query, row) pairs scored per einsum call on an in-memory pool


def _dots(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row-wise dot products in float64 (one formula for every path, so the bits agree)."""
    return np.einsum("nd,nd->n", vectors, queries, dtype=np.float64)


def rescore(pool: Any, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The similarities of each query with its `rows` in float64: independent of device, BLAS and blocking.

    The memory-mapped pool is read once more in row order, block by block, each block scoring the
    candidates that fall in it: random reads of a memory map would map the neighbouring cached
    pages too (the kernel's fault-around), up to the whole pool in every worker's resident memory.
    """
    queries = np.asarray(queries, dtype=np.float32)
    flat = np.asarray(rows, dtype=np.int64).reshape(-1)
    which = np.repeat(np.arange(len(queries)), rows.shape[1] if rows.ndim == 2 else 0)
    out = np.empty(flat.size, np.float64)
    if hasattr(pool, "blocks"):
        order = np.argsort(flat, kind="stable")
        by_row = flat[order]
        for start, block in pool.blocks(POOL_BLOCK_ROWS):
            lo, hi = np.searchsorted(by_row, [start, start + len(block)])
            if lo < hi:
                sel = order[lo:hi]
                out[sel] = _dots(block[by_row[lo:hi] - start], queries[which[sel]])
    else:
        for s in range(0, flat.size, RESCORE_PAIRS):
            part = slice(s, s + RESCORE_PAIRS)
            out[part] = _dots(np.asarray(pool[flat[part]], dtype=np.float32), queries[which[part]])
    return out.reshape(rows.shape)


def recall_at_k(approx_rows: np.ndarray, exact_rows: np.ndarray) -> float:
    """Share of the exact top-k found by the approximate search (averaged over queries)."""
    if exact_rows.size == 0:
        return 1.0
    hits = sum(len(np.intersect1d(a, e)) for a, e in zip(approx_rows, exact_rows, strict=True))
    return hits / exact_rows.size
