"""The optional reuse cap (`--max-reuse`, beyond the paper) as one global pass over every concept.

Every concept of every concepts shard is drawn as in `draws.py`; its preferences are its draw,
then its other candidates by rank (`algorithm.preferences`). `algorithm.cap_reuse` then walks all
concepts once in the order of their seeded hash (ties broken by pair_id and concept index), so the
assignment does not depend on how the concepts are sharded. The pairs stage runs the pass once per
parameter set and keeps it as one assignments file per pairs shard (`write_assignments`), which
each shard reads back (`read_assignments`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...shards import atomic_write_json, atomic_write_table, shard_name
from . import algorithm
from .draws import DrawParams, select_sources
from .plan import concept_items, concept_shards, read_concepts
from .search import TopK


def reuse_assignments(
    workdir: Path,
    mode: str,
    topk: TopK,
    params: DrawParams,
    max_reuse: int,
    vlms: Sequence[str] | None = None,
) -> tuple[list[pa.Table], int]:
    """The reuse cap's global pass over every concept of every shard; returns the overflow count and,
    per concepts shard (plan order), its concepts' (pair_id, concept_index, row) in `concept_items` order.

    Held as arrays (preferences (n, k) int32, ids in arrow), not Python objects per concept: at a
    million images x 2 VLMs that is ~8M concepts, gigabytes as lists and dicts.
    """
    prefs: list[np.ndarray] = []
    order: list[np.ndarray] = []
    ids: list[pa.Table] = []
    for vlm_dir, shard in concept_shards(workdir, vlms):
        items = concept_items(read_concepts(workdir, vlm_dir, shard), mode).only_searched(topk.where)
        where, sel, draws = select_sources(items, topk, params)
        ranks = algorithm.preferences(sel)
        rows = np.take_along_axis(topk.rows[where], np.maximum(ranks, 0), 1) if len(where) else ranks
        prefs.append(np.where(ranks >= 0, rows, -1).astype(np.int32))
        order.append(draws.order)
        ids.append(
            pa.table(
                {"pair_id": pa.array(items.pair_ids, pa.string()), "concept_index": pa.array(items.index, pa.int32())}
            )
        )
    if not ids:
        return [], 0
    # canonical order (hash key, then pair_id, concept index): colliding keys cannot depend on the shard layout
    keys = pa.concat_tables(ids).append_column("order", pa.array(np.concatenate(order), pa.uint64()))
    sort = [("order", "ascending"), ("pair_id", "ascending"), ("concept_index", "ascending")]
    position = np.empty(keys.num_rows, np.uint64)
    position[pc.sort_indices(keys, sort_keys=sort).to_numpy()] = np.arange(keys.num_rows, dtype=np.uint64)
    width = max(p.shape[1] for p in prefs)
    padded = np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=-1) for p in prefs])
    chosen, overflow = algorithm.cap_reuse(position, padded, max_reuse)
    out, start = [], 0
    for t in ids:
        out.append(t.append_column("row", pa.array(chosen[start : start + t.num_rows], pa.int64())))
        start += t.num_rows
    return out, int(overflow.sum())


def write_assignments(folder: Path, tables: list[pa.Table], overflow: int) -> None:
    """One assignments file per pairs shard, then `done.json` (written last: the pass's completion marker)."""
    for i, table in enumerate(tables):
        atomic_write_table(folder / f"{shard_name(i)}.parquet", table)
    atomic_write_json(folder / "done.json", {"shards": len(tables), "overflow": overflow})


def assignments_done(folder: Path) -> bool:
    return (folder / "done.json").exists()


def read_assignments(folder: Path, index: int) -> dict[tuple[str, int], int]:
    """The pool row the pass assigned to each (pair_id, concept index) of pairs shard `index`."""
    t = pq.read_table(folder / f"{shard_name(index)}.parquet")
    cols = [t.column(n).to_pylist() for n in ("pair_id", "concept_index", "row")]
    return {(p, c): r for p, c, r in zip(*cols, strict=True)}
