"""Benchmark of retrieval's search-and-draw path against its floor and a naive baseline.

    .venv/bin/python bench/retrieve.py            # 100,000 x 512 pool, 20,000 concepts, 10,000 distinct

The measured path is the product's own code after text encoding (vectors are given): dedupe the
concept texts, exact top-k of the distinct texts (`vector_index`: matmul + torch.topk, or faiss
with `--index flat`), Algorithm 1 for every concept with its seeded draws, and the pairs rows
(`stages.retrieve.draws.build_pairs`). It is compared,
in the same run, with
  * the floor: one float32 matrix product of the distinct queries against the pool, nothing else
    (done in blocks into one reused output buffer, so it does not need 4 GB at once);
  * a naive baseline: per concept, without dedup, a numpy matrix-vector product against the pool,
    a top-k and the same draw. It is timed on a sample of concepts and scaled to all of them.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch  # noqa: F401  (loaded before timing: in `sonify retrieve` the CLAP has loaded it already)

from sonify_toolkit.stages.retrieve import ConceptItems, DrawParams, PoolColumns, TopK, algorithm, build_pairs
from sonify_toolkit.vector_index import IndexSpec, build_index, search


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_items(texts: list[str]) -> ConceptItems:
    """One image per concept here (the sharing of texts across images is what dedup exploits)."""
    items = ConceptItems()
    for i, text in enumerate(texts):
        items.pairs.append({"pair_id": f"img{i}|vlm", "image_id": f"img{i}", "image_source": None, "vlm": "vlm"})
        items.pair_of.append(i)
        items.pair_ids.append(f"img{i}|vlm")
        items.index.append(0)
        items.names.append(text)
        items.descriptions.append(text)
        items.texts.append(text)
    return items


def product_path(
    texts: list[str], vectors_of: dict[str, np.ndarray], pool: np.ndarray, index: object, k: int, cols: PoolColumns
) -> tuple[int, dict[str, float]]:
    t0 = time.perf_counter()
    distinct = sorted(set(texts))
    queries = np.stack([vectors_of[t] for t in distinct])
    t1 = time.perf_counter()
    sims, rows = search(index, queries, k, pool)
    t2 = time.perf_counter()
    topk = TopK(where={t: i for i, t in enumerate(distinct)}, rows=rows, similarity=sims)
    table, _ = build_pairs(make_items(texts), topk, cols, DrawParams())
    t3 = time.perf_counter()
    return table.num_rows, {"dedup": t1 - t0, "search": t2 - t1, "draws and rows": t3 - t2}


def floor(queries: np.ndarray, pool: np.ndarray, block: int = 2048) -> None:
    out = np.empty((block, pool.shape[0]), np.float32)
    for s in range(0, len(queries), block):
        q = queries[s : s + block]
        np.matmul(q, pool.T, out=out[: len(q)])


def naive(texts: list[str], vectors_of: dict[str, np.ndarray], pool: np.ndarray, k: int) -> None:
    for i, text in enumerate(texts):
        s = pool @ vectors_of[text]
        top = np.argpartition(-s, k)[:k]
        top = top[np.argsort(-s[top])]
        d = algorithm.item_draws(0, [f"img{i}|vlm"], [0], -24.0, -22.0)
        algorithm.select(s[top][None, :], d.u)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--concepts", type=int, default=20_000)
    ap.add_argument("--distinct", type=int, default=10_000)
    ap.add_argument("--top-k", type=int, default=16)
    ap.add_argument("--index", default="exact", help="exact (matmul + torch.topk) or flat (faiss IndexFlatIP)")
    ap.add_argument("--naive-sample", type=int, default=300, help="concepts timed for the naive baseline")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    pool = unit_rows(rng, args.pool, args.dim)
    distinct_vecs = unit_rows(rng, args.distinct, args.dim)
    vectors_of = {f"concept text {j}": distinct_vecs[j] for j in range(args.distinct)}
    names = list(vectors_of)
    # every distinct text appears at least once, the rest repeat at random (as VLM outputs do)
    picks = np.concatenate([np.arange(args.distinct), rng.integers(0, args.distinct, args.concepts - args.distinct)])
    texts = [names[j] for j in rng.permutation(picks)]
    n = args.pool
    cols = PoolColumns(
        clip_id=[f"src/f{i}.wav#0" for i in range(n)],
        source=["src"] * n,
        path=[f"f{i}.wav" for i in range(n)],
        segment=[0] * n,
        source_sha256=["0" * 64] * n,
        lufs=np.full(n, -20.0),
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    t0 = time.perf_counter()
    index = build_index(pool, IndexSpec(args.index))
    t1 = time.perf_counter()
    made, phases = product_path(texts, vectors_of, pool, index, args.top_k, cols)
    t_product = time.perf_counter() - t1
    t_index = t1 - t0
    rss_product = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert made == args.concepts

    queries = np.stack([vectors_of[t] for t in sorted(set(texts))])
    t0 = time.perf_counter()
    floor(queries, pool)
    t_floor = time.perf_counter() - t0

    sample = texts[: args.naive_sample]
    t0 = time.perf_counter()
    naive(sample, vectors_of, pool, args.top_k)
    t_naive = (time.perf_counter() - t0) * len(texts) / len(sample)

    total = t_product + t_index
    print(
        f"pool {args.pool:,} x {args.dim}, {args.concepts:,} concepts ({len(queries):,} distinct), "
        f"k={args.top_k}, index {args.index}"
    )
    print(f"floor (one float32 matmul, distinct x pool)  {t_floor:8.2f} s")
    print(f"sonify retrieve path (dedup+search+draw+rows) {t_product:8.2f} s  = {t_product / t_floor:.2f} x floor")
    print("  phases: " + ", ".join(f"{name} {sec:.2f} s" for name, sec in phases.items()))
    print(f"  + index set-up                               {t_index:8.2f} s  = {total / t_floor:.2f} x floor")
    print(
        f"naive per-concept numpy (no dedup)            {t_naive:8.2f} s  (timed on {len(sample)} concepts, scaled)"
        f"  = {t_naive / total:.1f} x slower than sonify"
    )
    print(
        f"peak RSS (getrusage): {rss_before:,.0f} MiB after making the data (pool {pool.nbytes / 2**20:,.0f} MiB), "
        f"{rss_product:,.0f} MiB after the retrieve path (+{rss_product - rss_before:,.0f} MiB)"
    )


if __name__ == "__main__":
    main()
