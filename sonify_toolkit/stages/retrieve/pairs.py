"""Retrieval's per-shard phase: one pairs shard (`W/pairs/NNNNN.parquet`) per concepts shard.

`RetrievePairsStage` reads the search stage's complete top-k table (`search.TopK`), the pool's
columns and, with `--max-reuse`, its shard's assignments from the global reuse pass
(`prepare_reuse`, see `reuse.py`); each shard is then `draws.build_pairs` over its concepts.
`finalize` measures clip usage over the whole pairs table (`usage.json` and the summary lines).
The order the command runs search, reuse pass and pairs in is `pipeline.run_retrieve`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...pool_files import load_pool
from ...settings import LUFS_MAX, LUFS_MIN, SEED
from ...shards import StageDir, atomic_write_json, fingerprint, shard_name
from ...stage import ItemCallback, Resources, Shard, ShardContext, ShardResult, Stage
from ...usage import clip_usage
from .draws import DrawParams, PoolColumns, build_pairs
from .plan import (
    RetrieveInputError,
    concept_items,
    concept_shards,
    concepts_fingerprints,
    pairs_dir,
    read_concepts,
    retrieve_dir,
)
from .reuse import assignments_done, read_assignments, reuse_assignments, write_assignments
from .search import TOPK, RetrieveSearchStage, TopK


@dataclass
class RetrievePairsStage(Stage):
    """Per concepts shard: Algorithm 1's draw for each concept and the pairs table (the metadata release)."""

    workdir: str
    search: RetrieveSearchStage
    seed: int = SEED
    lufs_min: float = LUFS_MIN
    lufs_max: float = LUFS_MAX
    max_reuse: int | None = None

    name = "retrieve"
    resources = Resources(num_cpus=1)
    transient = ("_plan", "_state")  # top-k, pool and reuse assignment, loaded per worker in setup

    def __post_init__(self) -> None:
        if self.lufs_min > self.lufs_max:
            raise RetrieveInputError(f"--lufs-min ({self.lufs_min}) must not exceed --lufs-max ({self.lufs_max})")
        if self.max_reuse is not None and self.max_reuse < 1:
            raise RetrieveInputError("--max-reuse must be at least 1")
        self._plan: list[Shard] | None = None
        self._state: dict[str, Any] = {}

    @property
    def draw_params(self) -> DrawParams:
        return DrawParams(self.seed, self.lufs_min, self.lufs_max)

    def output_dir(self, workdir: Path) -> Path:
        return pairs_dir(workdir)

    def plan(self) -> list[Shard]:
        if self._plan is None:
            shards = concept_shards(Path(self.workdir), self.search.vlms)
            self._plan = [Shard(i, (item,)) for i, item in enumerate(shards)]
        return self._plan

    def params(self) -> dict[str, Any]:
        search_manifest = StageDir(self.search.output_dir(Path(self.workdir))).manifest() or {}
        return {
            "seed": self.seed,
            "lufs_min": self.lufs_min,
            "lufs_max": self.lufs_max,
            "max_reuse": self.max_reuse,
            "algorithm": "ssr + mean top-k threshold + draw proportional to r (uniform if any candidate r <= 0)",
            "rng": "PCG64(SeedSequence(sha256(f'{seed}\\x1f{pair_id}\\x1f{concept_index}')))",
            **self.search.params(),
            "search_fingerprint": search_manifest.get("fingerprint"),
            "concepts": concepts_fingerprints(Path(self.workdir), self.search.vlms),
        }

    def _load_topk(self) -> TopK:
        sd = StageDir(self.search.output_dir(Path(self.workdir)))
        if not sd.all_complete():
            raise RetrieveInputError("the search stage is not complete: run `sonify retrieve` until it is")
        return TopK.from_table(sd.read_table("topk", TOPK))

    def setup(self) -> None:
        topk = self._load_topk()
        pool = PoolColumns.from_table(load_pool(Path(self.workdir), with_embeddings=False).segments)
        self._state = {"topk": topk, "pool": pool, "reuse": self.prepare_reuse(topk)}

    def reuse_dir(self) -> Path:
        return retrieve_dir(Path(self.workdir)) / "reuse" / fingerprint(self.params())

    def prepare_reuse(self, topk: TopK | None = None) -> Path | None:
        """The reuse cap's global pass, run once per parameter set: one assignments file per pairs shard,
        then `done.json`. The command runs it before starting workers, so they only read their shard's file
        (setup runs it too, for a stage started otherwise)."""
        if self.max_reuse is None:
            return None
        folder = self.reuse_dir()
        if not assignments_done(folder):
            topk = topk or self._load_topk()
            tables, overflow = reuse_assignments(
                Path(self.workdir),
                self.search.concept_text,
                topk,
                self.draw_params,
                self.max_reuse,
                vlms=self.search.vlms,
            )
            write_assignments(folder, tables, overflow)
        return folder

    def _assigned(self, index: int) -> dict[tuple[str, int], int] | None:
        folder = self._state["reuse"]
        return None if folder is None else read_assignments(folder, index)

    def process(self, shard: Shard, on_item: ItemCallback | None = None) -> ShardResult:
        ctx = ShardContext(shard, on_item)
        (vlm_dir, index) = shard.items[0]
        concepts = read_concepts(Path(self.workdir), vlm_dir, index)
        items = concept_items(concepts, self.search.concept_text, errors=ctx.errors)
        items = items.only_searched(self._state["topk"].where)
        table, counters = build_pairs(
            items, self._state["topk"], self._state["pool"], self.draw_params, self._assigned(shard.index)
        )
        for name, n in counters.items():
            ctx.count(name, n)
        ctx.advance()
        return ctx.result(
            {"": table},
            extra={"concepts_shard": f"{vlm_dir}/{shard_name(index)}", "images": concepts.num_rows},
        )

    def finalize(self, workdir: Path) -> dict[str, Any]:
        """Clip usage over the whole pairs table (the paper's over-sampling, measured): usage.json + summary."""
        sd = StageDir(self.output_dir(workdir))
        uses: Counter[str] = Counter()  # one entry per distinct clip, not per source (8M at 1M images)
        for _, t in sd.iter_tables(""):
            uses.update(t.column("sources").combine_chunks().flatten().field("clip_id").to_pylist())
        pool_size = load_pool(Path(workdir), with_embeddings=False).segments.num_rows
        usage = clip_usage(uses, pool_size)
        atomic_write_json(sd.path / "usage.json", usage)
        share = usage["pool_share"] or 0.0
        facts = {
            "clips used": f"{usage['distinct_clips']:,} of {pool_size:,} pool segments ({share:.1%})",
            "clip reuse": f"max {usage['max_reuse']}, p99 {usage['p99_reuse']:.1f}, "
            f"mean {usage['mean_reuse']:.2f}, Gini {usage['gini']:.3f}",
        }
        counters: Counter[str] = Counter()
        for st in sd.stats():
            counters.update(st.get("counters", {}))
        if counters["sources"]:
            facts["candidates per concept"] = f"{counters['candidates_total'] / counters['sources']:.2f} on average"
        if self.max_reuse is not None:
            over = sum(max(0, n - self.max_reuse) for n in uses.values())
            facts["reuse cap"] = f"{self.max_reuse} per clip; {over:,} sources over it (every candidate already full)"
        return facts
