"""Benchmark of retrieval's search-and-draw path against its floor and a naive baseline.

    .venv/bin/python bench/retrieve.py            # 100,000 x 512 pool, 20,000 concepts, 10,000 distinct
    .venv/bin/python bench/retrieve.py --mode memory --pool 1000000 --workers 2   # mmap search, peak RSS
    .venv/bin/python bench/retrieve.py --mode recall --pool 200000                # float16 vs float32 recall@k
    .venv/bin/python bench/retrieve.py --mode plan --images 1000000               # the search plan at 1M images

Modes other than the default:
  * memory: the pool written as embeddings shard files (as `sonify pool` leaves them), searched
    memory-mapped (`pool_files.PoolVectors`, streamed by `vector_index.ExactIndex`) by `--workers`
    processes at once; prints each worker's peak RSS against the pool's size, and checks the top-k
    is byte-identical to the in-memory search on a sample;
  * recall: recall@k against float32 exact search of (a) float16 *storage* (vectors stored and
    rescored in float16) and (b) the GPU rule emulated on the CPU (float16 inputs and scores,
    2k+16 candidates, float64 rescoring from the float32 vectors);
  * plan: a synthetic concepts folder of `--images` images (1,000 per shard, written with the
    project's writers), `distinct_texts` cold and cached, `concept_items` over every shard, and the
    previous row-by-row reading timed on a sample of shards and scaled.
Where CUDA exists, the default mode also prints GPU search figures (texts/s) at the pool sizes of `--gpu-pools`.

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
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch  # loaded before timing: in `sonify retrieve` the CLAP has loaded it already

from sonify_toolkit.stages.retrieve import ConceptItems, DrawParams, PoolColumns, TopK, algorithm, build_pairs
from sonify_toolkit.vector_index import ExactIndex, IndexSpec, build_index, candidates_for, rescore, search


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


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_pool_shards(folder: Path, n: int, dim: int, rows_per_shard: int = 200_000) -> list[Path]:
    """Unit vectors as `sonify pool` leaves them: one float32 .npy per embeddings shard."""
    rng = np.random.default_rng(0)
    paths = []
    for i, s in enumerate(range(0, n, rows_per_shard)):
        paths.append(folder / f"{i:05d}.npy")
        np.save(paths[-1], unit_rows(rng, min(rows_per_shard, n - s), dim))
    return paths


def _memory_worker(paths: list[Path], queries: np.ndarray, k: int, out: mp.Queue) -> None:
    from sonify_toolkit.pool_files import PoolVectors

    t0 = time.perf_counter()
    _, rows = ExactIndex(PoolVectors(paths)).search(queries, k)
    out.put((time.perf_counter() - t0, peak_rss_mib(), rows[:8].tobytes()))


def memory_mode(args: argparse.Namespace) -> None:
    """Peak RSS of `--workers` processes searching one memory-mapped pool at once."""
    from sonify_toolkit.pool_files import PoolVectors

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        paths = write_pool_shards(Path(tmp), args.pool, args.dim)
        queries = unit_rows(np.random.default_rng(1), args.distinct, args.dim)
        ctx = mp.get_context("spawn")
        out: mp.Queue = ctx.Queue()
        procs = [
            ctx.Process(target=_memory_worker, args=(paths, queries, args.top_k, out)) for _ in range(args.workers)
        ]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        pool_mib = args.pool * args.dim * 4 / 2**20
        print(
            f"pool {args.pool:,} x {args.dim} float32 = {pool_mib:,.0f} MiB in {len(paths)} shard files (memory-mapped)"
        )
        for i, (sec, rss, _) in enumerate(results):
            print(
                f"  worker {i}: {args.distinct:,} texts in {sec:.1f} s ({args.distinct / sec:,.0f} texts/s), "
                f"peak RSS {rss:,.0f} MiB"
            )
        print(f"  sum of the workers' peak RSS {sum(r for _, r, _ in results):,.0f} MiB (the page cache is shared)")
        if args.pool <= 1_000_000:
            pool = np.asarray(PoolVectors(paths))
            _, ref = search(build_index(pool, IndexSpec()), queries[:8], args.top_k, pool)
            same = all(r[2] == ref.tobytes() for r in results)
            print(f"  top-k of the first 8 texts byte-identical to the in-memory search: {same}")


def recall_mode(args: argparse.Namespace) -> None:
    """recall@k vs float32 exact: float16 storage, and the GPU's half-precision scoring rule emulated."""
    rng = np.random.default_rng(0)
    # clustered vectors: many near neighbours, the hard case for a rounding error at the k-th place
    centers = unit_rows(rng, 2_000, args.dim)
    pool = centers[rng.integers(0, len(centers), args.pool)] + 0.6 * unit_rows(rng, args.pool, args.dim)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    queries = centers[rng.integers(0, len(centers), args.distinct)] + 0.6 * unit_rows(rng, args.distinct, args.dim)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    k, kc = args.top_k, candidates_for(args.top_k, args.pool)
    _, exact = search(build_index(pool, IndexSpec()), queries, k, pool)
    p16, q16 = pool.astype(np.float16), queries.astype(np.float16)
    hits_storage = hits_gpu = 0
    for s in range(0, len(queries), 256):
        scores = q16[s : s + 256].astype(np.float32) @ p16.T.astype(np.float32)
        top = np.argpartition(-scores, k, axis=1)[:, :k]  # float16 storage: its own top-k, no margin
        hits_storage += sum(len(np.intersect1d(a, e)) for a, e in zip(top, exact[s : s + 256], strict=True))
        half = scores.astype(np.float16).astype(np.float32)  # float16 scores as a GPU half matmul returns
        cand = np.argpartition(-half, kc, axis=1)[:, :kc]
        r64 = rescore(pool, queries[s : s + 256], cand).astype(np.float32)
        order = np.lexsort((cand, -r64), axis=-1)[:, :k]
        picked = np.take_along_axis(cand, order, 1)
        hits_gpu += int((np.sort(picked, 1) == np.sort(exact[s : s + 256], 1)).all(1).sum()) * k
    total = exact.size
    print(f"pool {args.pool:,} x {args.dim} (clustered), {args.distinct:,} queries, k={k}")
    print(f"  float16 storage (top-k of float16 vectors)                    recall@{k} {hits_storage / total:.5f}")
    print(
        f"  half-precision scores + {kc} candidates + float64 rescoring   identical top-k sets {hits_gpu / total:.5f}"
    )


def synthetic_concepts(workdir: Path, images: int, vlms: int, distinct: int) -> int:
    """A concepts folder per VLM written with `StageDir`; ~2.9 concepts per image drawn from `distinct` texts."""
    import pyarrow as pa

    from sonify_toolkit import schema
    from sonify_toolkit.settings import IMAGES_PER_SHARD
    from sonify_toolkit.shards import StageDir

    rng = np.random.default_rng(0)
    vocab = pa.array([f"the sound of thing number {j} somewhere" for j in range(distinct)], pa.string())
    names = pa.array([f"thing {j}" for j in range(distinct)], pa.string())
    shards = -(-images // IMAGES_PER_SHARD)
    for v in range(vlms):
        sd = StageDir(workdir / "concepts" / f"vlm-{v}")
        sd.prepare("extract", {"vlm": f"vlm-{v}"}, shards, overwrite=True)
        for i in range(shards):
            ids = [f"sa_{j}" for j in range(i * IMAGES_PER_SHARD, min(images, (i + 1) * IMAGES_PER_SHARD))]
            n = len(ids)
            counts = rng.integers(1, 6, n)
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
            m = int(offsets[-1])  # half the concepts common (Zipf), half from the long tail (uniform)
            pick = pa.array(
                np.where(rng.random(m) < 0.5, np.minimum(rng.zipf(1.3, m), distinct) - 1, rng.integers(0, distinct, m))
            )
            concepts = pa.ListArray.from_arrays(
                pa.array(offsets),
                pa.StructArray.from_arrays([names.take(pick), vocab.take(pick)], fields=list(schema.CONCEPT)),
            )
            table = pa.table(
                {
                    "image_id": ids,
                    "image_path": [f"images/{x}.jpg" for x in ids],
                    "vlm": [f"vlm-{v}"] * n,
                    "caption": ["a photo"] * n,
                    "concepts": concepts,
                    "keep": rng.random(n) > 0.05,
                },
            )
            sd.write_shard(i, {"": schema.conform(table, schema.CONCEPTS)}, {"items": n})
    return shards


def plan_mode(args: argparse.Namespace) -> None:
    """The search plan over a synthetic 1M-image concepts folder: columnar, cached, vs the row-by-row reading."""
    from sonify_toolkit.stages.retrieve import concept_items, distinct_texts
    from sonify_toolkit.stages.retrieve.plan import concept_shards, read_concepts

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        shards = synthetic_concepts(work, args.images, args.vlms, args.distinct)
        print(
            f"{args.images:,} images x {args.vlms} VLM(s), {shards} shards each, "
            f"written in {time.perf_counter() - t0:.1f} s"
        )
        t0, c0 = time.perf_counter(), time.process_time()
        texts = distinct_texts(work, "description")
        cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        again = distinct_texts(work, "description")
        cached = time.perf_counter() - t0
        assert again == texts
        print(
            f"  distinct_texts (columnar): {len(texts):,} texts in {cold:.2f} s ({cold_cpu:.2f} CPU-s, all threads); "
            f"from the fingerprint cache {cached:.2f} s"
        )
        t0 = time.perf_counter()
        found = concepts = 0
        for vlm_dir, i in concept_shards(work):
            items = concept_items(read_concepts(work, vlm_dir, i), "description")
            concepts += len(items.texts)
            found += 1
        print(f"  concept_items over all {found:,} shards ({concepts:,} concepts): {time.perf_counter() - t0:.2f} s")
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.retrieve.test_plan import reference_items

        sample = concept_shards(work)[:: max(1, found // args.sample_shards)][: args.sample_shards]
        t0 = time.perf_counter()
        for vlm_dir, i in sample:
            reference_items(read_concepts(work, vlm_dir, i), "description")
        old = (time.perf_counter() - t0) * found / len(sample)
        print(f"  previous row-by-row concept_items: {old:.1f} s for all shards (timed on {len(sample)}, scaled)")
    print(f"peak RSS {peak_rss_mib():,.0f} MiB")


def gpu_figures(args: argparse.Namespace) -> None:
    """Texts/s of the streamed half-precision search on CUDA at each pool size (pool kept in host memory)."""
    import torch

    rng = np.random.default_rng(0)
    queries = unit_rows(rng, args.gpu_texts, args.dim)
    for n in args.gpu_pools:
        pool = unit_rows(rng, n, args.dim)
        index = ExactIndex(pool, device="cuda")
        index.search(queries[:64], args.top_k)  # warm-up (kernels, allocator)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        index.search(queries, args.top_k)
        sec = time.perf_counter() - t0
        name = torch.cuda.get_device_name()
        print(
            f"GPU ({name}) pool {n:,} x {args.dim}: {args.gpu_texts:,} texts in {sec:.2f} s "
            f"= {args.gpu_texts / sec:,.0f} texts/s"
        )
        del pool, index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--concepts", type=int, default=20_000)
    ap.add_argument("--distinct", type=int, default=10_000)
    ap.add_argument("--top-k", type=int, default=16)
    ap.add_argument("--index", default="exact", help="exact (matmul + torch.topk) or flat (faiss IndexFlatIP)")
    ap.add_argument("--naive-sample", type=int, default=300, help="concepts timed for the naive baseline")
    ap.add_argument("--mode", choices=["path", "memory", "recall", "plan"], default="path")
    ap.add_argument("--workers", type=int, default=2, help="memory mode: processes searching at once")
    ap.add_argument("--images", type=int, default=1_000_000, help="plan mode: images per VLM")
    ap.add_argument("--vlms", type=int, default=1, help="plan mode: VLMs")
    ap.add_argument("--sample-shards", type=int, default=20, help="plan mode: shards timed for the old reading")
    ap.add_argument("--tmp", default=None, help="where memory and plan modes write their synthetic folders")
    ap.add_argument("--gpu-pools", type=int, nargs="*", default=[1_000_000, 4_000_000])
    ap.add_argument("--gpu-texts", type=int, default=50_000)
    args = ap.parse_args()
    if args.mode != "path":
        {"memory": memory_mode, "recall": recall_mode, "plan": plan_mode}[args.mode](args)
        return

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
    if torch.cuda.is_available():
        gpu_figures(args)
    else:
        print("no CUDA device: GPU figures skipped (run this where one exists)")


if __name__ == "__main__":
    main()
