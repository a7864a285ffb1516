"""Algorithm 1 over one concepts shard, as arrays: search results + seeded draws -> pairs rows.

`build_pairs` is the pure core of a pairs shard. For every concept it looks its text up in the
search results (`TopK`), draws with the concept's own generator (`algorithm.item_draws`, seeded by
(seed, pair_id, concept index)), runs SSR, the mean top-k threshold and the weighted draw
(`algorithm.select`), and copies the chosen pool segment's fields (`PoolColumns`) into the pair's
ordered sources. The reuse cap, when on, only overrides the drawn row (see `reuse.py`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ... import schema
from ...settings import LUFS_MAX, LUFS_MIN, SEED
from . import algorithm
from .plan import ConceptItems
from .search import TopK


@dataclass
class PoolColumns:
    """The pool fields a pair source copies, indexed by embedding row."""

    clip_id: list[str]
    source: list[str]
    path: list[str]
    segment: list[int]
    source_sha256: list[str]
    lufs: np.ndarray

    @classmethod
    def from_table(cls, segments: pa.Table) -> PoolColumns:
        cols = {n: segments.column(n).to_pylist() for n in ("clip_id", "source", "path", "segment", "source_sha256")}
        return cls(**cols, lufs=segments.column("lufs").to_numpy())


@dataclass(frozen=True)
class DrawParams:
    seed: int = SEED
    lufs_min: float = LUFS_MIN
    lufs_max: float = LUFS_MAX


def select_sources(
    items: ConceptItems, topk: TopK, params: DrawParams
) -> tuple[np.ndarray, algorithm.Selection, algorithm.ItemDraws]:
    """Algorithm 1 for every concept of `items` (all searched): (top-k row per concept, selection, draws)."""
    where = np.array([topk.where[t] for t in items.texts], np.int64)
    draws = algorithm.item_draws(params.seed, items.pair_ids, items.index, params.lufs_min, params.lufs_max)
    sims = topk.similarity[where] if len(where) else np.zeros((0, max(1, topk.similarity.shape[1])), np.float32)
    return where, algorithm.select(sims, draws.u), draws


def build_pairs(
    items: ConceptItems,
    topk: TopK,
    pool: PoolColumns,
    params: DrawParams,
    assigned: Mapping[tuple[str, int], int] | None = None,
) -> tuple[pa.Table, Counter[str]]:
    """Pure core of a pairs shard: concepts -> one row per (image, VLM) with its ordered sources.

    `assigned` (from the reuse cap's global pass) overrides the drawn pool row of a concept.
    """
    counters: Counter[str] = Counter(items.counters)
    where, sel, draws = select_sources(items, topk, params)
    sources: list[list[dict[str, Any]]] = [[] for _ in items.pairs]
    for i in range(len(items.texts)):
        t = where[i]
        rank = int(sel.rank[i])
        if assigned is not None:
            row = assigned[(items.pair_ids[i], items.index[i])]
            moved = int(np.flatnonzero(topk.rows[t] == row)[0])
            counters["sources_moved_by_reuse_cap"] += moved != rank
            rank = moved
        row = int(topk.rows[t, rank])
        sources[items.pair_of[i]].append(
            {
                "concept": items.names[i],
                "description": items.descriptions[i],
                "clip_id": pool.clip_id[row],
                "source": pool.source[row],
                "path": pool.path[row],
                "segment": pool.segment[row],
                "source_sha256": pool.source_sha256[row],
                "similarity": float(topk.similarity[t, rank]),
                "score": float(sel.score[i, rank]),
                "threshold": float(sel.threshold[i]),
                "clip_lufs": float(pool.lufs[row]),
                "target_lufs": float(draws.target_lufs[i]),
            }
        )
        counters["candidates_total"] += int(sel.candidates[i].sum())
    rows = []
    for pair, srcs in zip(items.pairs, sources, strict=True):
        if not srcs:
            counters["pairs_without_sources"] += 1
            continue
        rows.append({**pair, "seed": params.seed, "sources": srcs})
    counters["pairs"] = len(rows)
    counters["sources"] = sum(len(r["sources"]) for r in rows)
    return schema.table(rows, schema.PAIRS), counters
