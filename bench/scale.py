"""Scale run: synthetic 1M images x 2 VLMs against 1M and 4M pools, every reader of the big tables timed.

    .venv/bin/python bench/scale.py --scale 0.05      # 50k images, 50k and 200k pools: a few minutes
    .venv/bin/python bench/scale.py                   # the full run (needs ~25 GB of disk, ~1 h of CPU)

The inputs are written with the project's own writers (`StageDir.prepare`/`write_shard`, the table
schemas, `.npy` embeddings shards), columnar so that writing them is not the slow part:
  * two pools of 1M x scale and 4M x scale segments with 512-d unit CLAP vectors,
  * `concepts/<vlm>` for 2 VLMs over 1M x scale images (1-5 concepts each, ~7.5 % dropped as
    non-sonic), and the `pairs` of the kept rows (~1.85M x scale), sources drawn from the 1M pool.
Then each stage runs in its own process (so its peak RSS is its own) on those folders:
  * search-1M / search-4M: `load_pool` (memory-mapped vectors) + exact top-k of `--texts` random
    text vectors (retrieve's search on a sample of its distinct texts),
  * publish: `build_release` (statistics, plots, card, streamed shards; no upload),
  * publish-holdout: the same with `--holdout 0.01`,
  * report: `build_report` (statistics, plots, a 240-pair gallery),
  * status: `workdir_status` + the printed table,
  * render: the render stage over `--render-pairs` pairs of real recordings (bench/render.py's pool).
Printed per stage: items, wall seconds, items/s, peak RSS of the process (ru_maxrss). Multiply the
time of the linear stages by 1/scale to project the full run; RSS is measured, not projected.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sonify_toolkit import schema
from sonify_toolkit.shards import StageDir, atomic_write_json

VLMS = ("llava-1.5-7b", "cogvlm-chat")
DIM = 512
SEGMENTS_PER_FILE = 6
POOL_ROWS_PER_SHARD = 100_000
IMAGES_PER_SHARD = 5_000
FULL_TEXTS = 2_800_000  # distinct concept texts of the full run (issue 13)
FULL_PAIRS = 1_850_000
VOCAB = 20_000  # distinct concept names (Zipf-distributed use, as VLM answers are)
STEPS = (
    "search-1M",
    "search-4M",
    "tally-arrow",
    "tally-polars",
    "publish",
    "publish-holdout",
    "report",
    "status",
    "render",
)


def _stats(rows: dict[str, int], items: int) -> dict:
    return {"items": items, "rows": rows, "errors": {}, "counters": {}, "seconds": 0.0}


def _table(columns: dict, table_schema: pa.Schema, n: int) -> pa.Table:
    """Columns in the schema's order and types; a column the bench does not model is null."""
    return pa.table(
        [pa.array(columns[f.name]).cast(f.type) if f.name in columns else pa.nulls(n, f.type) for f in table_schema],
        schema=table_schema,
    )


# --- writing the synthetic run ------------------------------------------------------------------
def write_pool(workdir: Path, n: int, rng: np.random.Generator) -> None:
    """`pool/` (segments shards, manifest) and `pool/clap/` (unit float32 vectors), n segments."""
    pool, clap = StageDir(workdir / "pool"), StageDir(workdir / "pool" / "clap")
    shards = max(1, -(-n // POOL_ROWS_PER_SHARD))
    pool.prepare("pool", {"bench": "scale", "segments": n}, shards)
    clap.prepare("pool-embed", {"bench": "scale", "segments": n}, shards)
    collections = np.array(["audioset", "fsd50k", "bbc_sfx"])
    for s in range(shards):
        rows = np.arange(s * POOL_ROWS_PER_SHARD, min(n, (s + 1) * POOL_ROWS_PER_SHARD))
        files, segment = rows // SEGMENTS_PER_FILE, (rows % SEGMENTS_PER_FILE).astype(np.int32)
        source = pa.array(collections[files % 3])
        path = pa.array([f"f{f:08d}.flac" for f in files])
        seg_text = pa.array(segment.astype(str))
        table = _table(
            {
                "clip_id": pc.binary_join_element_wise(source, pc.binary_join_element_wise(path, seg_text, "#"), "/"),
                "source": source,
                "path": path,
                "segment": segment,
                "num_frames": np.full(rows.size, 80_000, np.int32),
                "source_sha256": pa.array([hashlib.sha256(f.tobytes()).hexdigest() for f in files]),
                "lufs": rng.uniform(-45, -15, rows.size),
                "peak": rng.uniform(0.05, 1, rows.size).astype(np.float32),
                "labels": pa.array([[]] * rows.size, pa.list_(pa.string())),
            },
            schema.POOL_SEGMENTS,
            rows.size,
        )
        pool.write_shard(s, {"segments": table, "errors": schema.ERRORS.empty_table()}, _stats({}, rows.size))
        vectors = rng.standard_normal((rows.size, DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        clap.write_shard(s, {"errors": schema.ERRORS.empty_table()}, _stats({}, rows.size), {"embeddings": vectors})
    per_source = {str(c): int(np.sum(np.arange(n) // SEGMENTS_PER_FILE % 3 == i)) for i, c in enumerate(collections)}
    atomic_write_json(
        workdir / "pool" / "manifest.json",
        {
            "segments": {"count": n, "per_source": per_source, "params": {"sample_rate": 16000}},
            "clap": {"model": "laion/clap-htsat-unfused", "dim": DIM, "count": n},
        },
    )


def write_concepts_and_pairs(workdir: Path, images: int, pool: pa.Table, rng: np.random.Generator) -> int:
    """`concepts/<vlm>` for every image and VLM, and `pairs` for the kept rows; returns the pair count."""
    names = pa.array([f"concept {i}" for i in range(VOCAB)])
    descriptions = pa.array([f"the sound of concept {i} nearby" for i in range(VOCAB)])
    zipf = 1.0 / np.arange(1, VOCAB + 1)
    zipf /= zipf.sum()
    shards = max(1, -(-images // IMAGES_PER_SHARD))
    concept_dirs = {v: StageDir(workdir / "concepts" / v) for v in VLMS}
    for v, sd in concept_dirs.items():
        sd.prepare("extract", {"vlm": v, "prompt": "List the sounding concepts.", "bench": "scale"}, shards)
    pairs_dir = StageDir(workdir / "pairs")
    pairs_dir.prepare("retrieve", {"top_k": 16, "lufs_min": -24.0, "lufs_max": -22.0, "seed": 0}, shards)
    total = 0
    for s in range(shards):
        ids = np.arange(s * IMAGES_PER_SHARD, min(images, (s + 1) * IMAGES_PER_SHARD))
        image_id = pa.array([f"sa_{i:08d}" for i in ids])
        parts = []
        for v, sd in concept_dirs.items():
            k = rng.choice([1, 2, 3, 4, 5], size=ids.size, p=[0.12, 0.28, 0.32, 0.18, 0.10]).astype(np.int32)
            offsets = pa.array(np.concatenate([[0], np.cumsum(k)]).astype(np.int32))
            m = int(k.sum())
            which = pa.array(rng.choice(VOCAB, size=m, p=zipf))
            name, description = names.take(which), descriptions.take(which)
            keep = rng.random(ids.size) >= 0.075
            vlm = pa.array([v] * ids.size)
            caption = pa.array([f"A photo taken outdoors, with things that sound ({v})"] * ids.size)
            concept = pa.StructArray.from_arrays([name, description], fields=list(schema.CONCEPT))
            concepts = pa.ListArray.from_arrays(offsets, concept)
            table = _table(
                {
                    "image_id": image_id,
                    "image_path": pc.binary_join_element_wise("/data/sa1b/", image_id, ".jpg", ""),
                    "vlm": vlm,
                    "caption": caption,
                    "concepts": concepts,
                    "keep": keep,
                    "drop_reason": pa.array(np.where(keep, None, "non_sonic_keyword"), pa.string()),
                    "raw_response": pa.array(['{"concepts": [...], "caption": "..."}'] * ids.size),
                },
                schema.CONCEPTS,
                ids.size,
            )
            sd.write_shard(s, {"": table}, _stats({"": ids.size}, ids.size))
            clip = pa.array(rng.integers(0, pool.num_rows, m))
            sim = rng.uniform(0.05, 0.7, m).astype(np.float32)
            fields = {
                "concept": name,
                "description": description,
                "clip_id": pool.column("clip_id").take(clip),
                "source": pool.column("source").take(clip),
                "path": pool.column("path").take(clip),
                "segment": pool.column("segment").take(clip),
                "source_sha256": pool.column("source_sha256").take(clip),
                "similarity": sim,
                "score": np.sqrt(sim),
                "threshold": np.full(m, 0.45, np.float32),
                "clip_lufs": pool.column("lufs").take(clip).cast(pa.float32()),
                "target_lufs": rng.uniform(-24, -22, m).astype(np.float32),
            }
            sources = pa.StructArray.from_arrays(
                [pa.array(fields[f.name]).cast(f.type) for f in schema.PAIR_SOURCE],
                fields=list(schema.PAIR_SOURCE),
            )
            pairs = _table(
                {
                    "pair_id": pc.binary_join_element_wise(image_id, vlm, "|"),
                    "image_id": image_id,
                    "image_source": pa.array(["sa1b"] * ids.size),
                    "vlm": vlm,
                    "caption": caption,
                    "seed": np.zeros(ids.size, np.int64),
                    "sources": pa.ListArray.from_arrays(offsets, sources),
                },
                schema.PAIRS,
                ids.size,
            )
            parts.append(pairs.filter(pa.array(keep)))
        pairs = pa.concat_tables(parts)
        total += pairs.num_rows
        pairs_dir.write_shard(s, {"": pairs}, _stats({"": pairs.num_rows}, pairs.num_rows))
    return total


def write_run(root: Path, scale: float, seed: int = 0, big_pool: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    n1, n4, images = max(1000, int(1e6 * scale)), max(4000, int(4e6 * scale)), max(200, int(1e6 * scale))
    if big_pool:  # only the search-4M step reads it
        write_pool(root / "w4", n4, rng)
    write_pool(root / "w1", n1, rng)
    pool = StageDir(root / "w1" / "pool").read_table("segments", schema.POOL_SEGMENTS)
    pairs = write_concepts_and_pairs(root / "w1", images, pool, rng)
    return {"pool_1m": n1, "pool_4m": n4, "images": images, "pairs": pairs, "seconds": time.perf_counter() - t0}


# --- the stages, one per process ----------------------------------------------------------------
def preload(step: str) -> None:
    """Import what a step needs before its clock starts (imports cost seconds that do not grow with scale)."""
    import sonify_toolkit.stats

    if step.startswith("search"):
        import torch  # noqa: F401  (the search imports it lazily; in `sonify retrieve` CLAP has loaded it)

        import sonify_toolkit.vector_index
    if step.startswith("publish"):
        import sonify_toolkit.stages.publish
    if step == "report":
        import sonify_toolkit.report.build
    if step == "status":
        import sonify_toolkit.status
    if step == "render":
        import sonify_toolkit.stages.render  # noqa: F401
    if step == "tally-polars":
        import polars  # noqa: F401


def run_step(step: str, root: Path, args: argparse.Namespace) -> dict:
    """Run one stage in this process; returns its items and seconds (peak RSS is added by `child`)."""
    w = root / "w1"
    t0 = time.perf_counter()
    if step.startswith("search"):
        from sonify_toolkit.pool_files import load_pool
        from sonify_toolkit.vector_index import IndexSpec, build_index, search

        pool = load_pool(root / ("w4" if step == "search-4M" else "w1"))
        rng = np.random.default_rng(1)
        queries = rng.standard_normal((args.texts, DIM), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        t1 = time.perf_counter()
        index = build_index(pool.embeddings, IndexSpec())
        search(index, queries, 16, pool.embeddings)
        t2 = time.perf_counter()
        return {
            "items": args.texts,
            "unit": "texts",
            "load_s": t1 - t0,
            "rate_s": t2 - t1,
            "pool": len(pool.embeddings),
        }
    if step.startswith("publish"):
        from sonify_toolkit.stages.publish import build_release

        holdout = 0.01 if step == "publish-holdout" else None
        summary = build_release(w, root / f"release-{step}", repo_id="bench/scale", holdout=holdout)
        return {"items": summary.rows, "unit": "pairs", "files": len(summary.data_files)}
    if step == "report":
        from sonify_toolkit.report.build import build_report
        from sonify_toolkit.stats import load_run

        summary = build_report(w, root / "report")
        return {"items": load_run(w).pairs.num_rows, "unit": f"pairs ({summary.pairs_shown} in the gallery)"}
    if step == "status":
        from rich.console import Console

        from sonify_toolkit.status import print_status

        with open(os.devnull, "w") as sink:
            states = print_status(w, Console(file=sink))
        return {"items": sum(s.shards_total for s in states), "unit": "shards"}
    if step == "tally-arrow":  # the statistics pass alone, as stats.py streams it
        from sonify_toolkit.stats import compute_stats, load_run

        run = load_run(w)
        compute_stats(run)
        return {"items": run.pairs.num_rows, "unit": "pairs"}
    if step == "tally-polars":  # the same counts through polars' streaming engine, for the choice between them
        import polars as pl

        from sonify_toolkit.stats import load_run

        files = [str(f) for f in load_run(w).pairs.files]
        lazy = pl.scan_parquet(files)
        sources = lazy.select(pl.col("sources").explode()).unnest("sources")
        pl.collect_all(
            [
                lazy.select(pl.len(), pl.col("image_id").n_unique(), pl.col("sources").list.len().sum()),
                lazy.group_by("vlm").len(),
                sources.group_by(pl.col("concept").fill_null("").str.strip_chars().str.to_lowercase()).len(),
                sources.drop_nulls("clip_id").group_by("clip_id").len(),
                sources.group_by("source").len(),
                sources.select(pl.col(n) for n in ("similarity", "score", "threshold", "clip_lufs", "target_lufs")),
            ],
            engine="streaming",
        )
        return {"items": int(pl.scan_parquet(files).select(pl.len()).collect().item()), "unit": "pairs"}
    if step == "render":
        return render_sample(root, args.render_pairs)
    raise ValueError(step)


def render_sample(root: Path, n_pairs: int) -> dict:
    """The render stage on pairs of real recordings (bench/render.py's generated pool and Zipf reuse)."""
    import pyarrow.parquet as pq

    from sonify_toolkit.runner import run_stage
    from sonify_toolkit.stages.render import RenderStage

    spec = importlib.util.spec_from_file_location("bench_render", Path(__file__).with_name("render.py"))
    bench_render = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(bench_render)
    rng = np.random.default_rng(2)
    sounds = root / "sounds"
    files = bench_render.make_pool(sounds, 48, rng)
    rows = bench_render.make_pairs(sounds, files, n_pairs, rng)
    (root / "render-pairs").mkdir(exist_ok=True)
    pq.write_table(schema.table(rows, schema.PAIRS), root / "render-pairs" / "00000.parquet")
    t0 = time.perf_counter()
    stage = RenderStage(str(root / "render-pairs"), {"pool": str(sounds)}, str(root / "render"), pairs_per_shard=500)
    summary = run_stage(stage, root / "render", show_progress=False)
    return {"items": int(summary.counters.get("rendered", 0)), "unit": "pairs", "stage_s": time.perf_counter() - t0}


def peak_rss_kb() -> int:
    """This process's peak RSS: VmHWM, which starts afresh at exec (ru_maxrss keeps the forking parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(step: str, root: Path, args: argparse.Namespace) -> None:
    preload(step)
    t0 = time.perf_counter()
    out = run_step(step, root, args)
    out["seconds"] = out.pop("stage_s", time.perf_counter() - t0)
    out["peak_rss_gb"] = peak_rss_kb() / 1024**2
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of 1M images / 1M and 4M pools")
    ap.add_argument("--texts", type=int, default=2000, help="distinct concept texts searched (a sample)")
    ap.add_argument("--render-pairs", type=int, default=300)
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--keep", type=Path, help="write the run here and keep it (default: a temporary folder)")
    ap.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one stage in this process
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        child(args.step, args.root, args)
        return
    with tempfile.TemporaryDirectory(dir=args.keep.parent if args.keep else None) as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        facts = write_run(root, args.scale, big_pool="search-4M" in args.steps.split(","))
        print(
            f"scale {args.scale}: {facts['images']:,} images x {len(VLMS)} VLMs -> {facts['pairs']:,} pairs; "
            f"pools {facts['pool_1m']:,} / {facts['pool_4m']:,} segments (written in {facts['seconds']:.1f} s)"
        )
        print("| stage | items | wall s | items/s | peak RSS GB | projected wall s at scale 1 |")
        print("|---|---|---|---|---|---|")
        for step in args.steps.split(","):
            cmd = [sys.executable, __file__, "--step", step, "--root", str(root), "--texts", str(args.texts),
                   "--render-pairs", str(args.render_pairs)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not lines:
                print(f"| {step} | failed: {proc.stderr.strip().splitlines()[-1:]} | | | | |")
                continue
            r = json.loads(lines[-1][len("RESULT ") :])
            rate_s = r.get("rate_s", r["seconds"])
            if step.startswith("search"):  # per-text cost grows with the pool: project to the full pool
                full = FULL_TEXTS * rate_s / r["items"] / args.scale
                projected = f"{full:,.0f} for {FULL_TEXTS / 1e6:.1f}M texts, 1 process"
            elif step == "render":
                projected = f"{FULL_PAIRS * rate_s / r['items']:,.0f} for {FULL_PAIRS / 1e6:.2f}M pairs, 1 process"
            elif step in ("status", "report"):
                projected = "see docs/scaling.md"
            else:
                projected = f"{r['seconds'] / args.scale:,.0f}"
            extra = f" (pool {r['pool']:,}, load {r['load_s']:.1f} s)" if "load_s" in r else ""
            print(
                f"| {step}{extra} | {r['items']:,} {r['unit']} | {r['seconds']:.1f} | {r['items'] / rate_s:,.1f} "
                f"| {r['peak_rss_gb']:.2f} | {projected} |",
                flush=True,
            )
        if args.keep is None:
            print("(the synthetic run was written to a temporary folder, now removed; --keep DIR keeps it)")


if __name__ == "__main__":
    main()
