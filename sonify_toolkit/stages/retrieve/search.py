"""Retrieval's global phase: every distinct concept text -> its exact top-k pool rows.

`RetrieveSearchStage` (`W/retrieve/search/`) plans over the sorted distinct concept texts of
every concepts shard of every VLM. Each shard embeds its texts with the pool's CLAP text tower
through the on-disk `TextVectorCache` (so CLAP loads only for texts never seen with this
checkpoint and precision) and writes their top-k pool rows and similarities
(`W/retrieve/search/topk/NNNNN.parquet`, schema `TOPK`). A search result depends only on its
text, so the table is the same for any sharding. `TopK` is that table as arrays, as the draws read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ...pool_files import PoolVectors, pool_vectors
from ...settings import CLAP_BATCH_SIZE, RECALL_SAMPLE, TEXTS_PER_SHARD, TOP_K
from ...shards import StageDir, atomic_write_bytes, fingerprint
from ...stage import ItemCallback, Resources, Shard, ShardContext, ShardResult, Stage, chunk, model_resources
from ...vector_index import ExactIndex, IndexSpec, build_index, recall_at_k, search
from .plan import CONCEPT_TEXT_MODES, RetrieveInputError, distinct_texts, pool_fingerprint, retrieve_dir, search_dir
from .text_cache import TextVectorCache

TOPK = pa.schema(
    [
        pa.field("text", pa.string(), nullable=False),
        pa.field("rows", pa.list_(pa.int32()), nullable=False),  # pool rows, best first
        pa.field("similarity", pa.list_(pa.float32()), nullable=False),
    ]
)


@dataclass
class RetrieveSearchStage(Stage):
    """Embed each distinct concept text once (cached) and find its top-k pool segments."""

    workdir: str
    clap: dict[str, Any]  # the pool's CLAP identity: model, revision, dim
    top_k: int = TOP_K
    concept_text: str = "description"
    index: IndexSpec = field(default_factory=IndexSpec)
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = CLAP_BATCH_SIZE
    texts_per_shard: int = TEXTS_PER_SHARD
    vlms: tuple[str, ...] | None = None  # the concepts folders to read (`--vlm`); None: every complete one

    name = "retrieve-search"
    transient = ("_plan", "_state")  # the pool index, text cache and encoder, loaded per worker in setup

    @property  # type: ignore[override]
    def resources(self) -> Resources:
        return model_resources(self.device)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise RetrieveInputError("--top-k must be at least 1")
        if self.concept_text not in CONCEPT_TEXT_MODES:
            raise RetrieveInputError(
                f"unknown --concept-text '{self.concept_text}' (choose: {', '.join(CONCEPT_TEXT_MODES)})"
            )
        self._plan: list[Shard] | None = None
        self._state: dict[str, Any] = {}

    def output_dir(self, workdir: Path) -> Path:
        return search_dir(workdir)

    def plan(self) -> list[Shard]:
        if self._plan is None:
            self._plan = chunk(distinct_texts(Path(self.workdir), self.concept_text, self.vlms), self.texts_per_shard)
        return self._plan

    def params(self) -> dict[str, Any]:
        return {
            "clap": dict(self.clap),
            "pool": pool_fingerprint(Path(self.workdir)),
            "top_k": self.top_k,
            "concept_text": self.concept_text,
            "dtype": self.dtype,
            "text_normalization": "collapse whitespace",
            **self.index.as_dict(),
            "texts_per_shard": self.texts_per_shard,
        }

    def setup(self) -> None:
        workdir = Path(self.workdir)
        pool = pool_vectors(workdir)  # memory-mapped: workers on one machine share its pages
        self._state = {
            "pool": pool,
            "index": self._load_index(pool),
            "cache": TextVectorCache(retrieve_dir(workdir) / "text_cache", self.cache_identity()),
            "encoder": None,
        }

    def cache_identity(self) -> dict[str, Any]:
        """Cached vectors are only reused from the same checkpoint at the same precision (bf16 != fp32)."""
        from ...models.device import pick_device, torch_dtype

        return {**self.clap, "dtype": str(torch_dtype(self.dtype, pick_device(self.device)))}

    def _load_index(self, pool: PoolVectors) -> Any:
        """Exact: built in memory. Approximate: built once and cached, so every shard searches the same one."""
        if self.index.kind == "exact":
            from ...models.device import pick_device

            return build_index(pool, self.index, pick_device(self.device))
        import faiss

        key = fingerprint({"pool": pool_fingerprint(Path(self.workdir)), **self.index.as_dict()})
        path = retrieve_dir(Path(self.workdir)) / "index" / f"{self.index.kind}-{key}.faiss"
        if path.exists():
            return faiss.read_index(str(path))
        index = build_index(pool, self.index)
        atomic_write_bytes(path, faiss.serialize_index(index).tobytes())
        return index

    def _encoder(self) -> Any:
        """CLAP loads only when a text is not cached: a rerun over known texts needs no model."""
        if self._state["encoder"] is None:
            from ...models.clap import ClapEncoder

            enc = ClapEncoder(
                self.clap["model"],
                device=self.device,
                dtype=self.dtype,
                revision=self.clap.get("revision"),
                batch_size=self.batch_size,
            )
            if enc.identity.dim != self.clap["dim"]:
                raise RetrieveInputError(
                    f"CLAP {self.clap['model']} gives {enc.identity.dim}-d text vectors but the pool holds "
                    f"{self.clap['dim']}-d audio vectors"
                )
            self._state["encoder"] = enc
        return self._state["encoder"]

    def embed(self, texts: Sequence[str], on_item: ItemCallback | None = None) -> tuple[np.ndarray, int]:
        """Unit text vectors, from the cache where possible; returns them and how many were embedded now."""
        cache: TextVectorCache = self._state["cache"]
        vectors, found = cache.get(texts)
        if on_item and found.any():
            on_item(int(found.sum()))
        missing = np.flatnonzero(~found)
        step = max(self.batch_size * 8, 1)  # cache and report progress every few batches
        for s in range(0, len(missing), step):
            idx = missing[s : s + step]
            batch = [texts[i] for i in idx]
            vecs = self._encoder().embed_text(batch)
            cache.put(batch, vecs)
            vectors[idx] = vecs
            if on_item:
                on_item(len(idx))
        return vectors, len(missing)

    def process(self, shard: Shard, on_item: ItemCallback | None = None) -> ShardResult:
        ctx = ShardContext(shard, on_item)
        texts = list(shard.items)
        vectors, embedded = self.embed(texts, ctx.advance)
        pool = self._state["pool"]
        sims, rows = search(self._state["index"], vectors, self.top_k, pool)
        ctx.count("texts", len(texts))
        ctx.count("texts_embedded", embedded)
        ctx.count("texts_from_cache", len(texts) - embedded)
        if self.index.kind != "exact" and len(texts):
            sample = np.linspace(0, len(texts) - 1, min(RECALL_SAMPLE, len(texts))).astype(int)
            _, exact_rows = ExactIndex(pool).search(vectors[sample], self.top_k)
            recall = recall_at_k(rows[sample], exact_rows)
            ctx.count("recall_hits", round(recall * exact_rows.size))
            ctx.count("recall_total", int(exact_rows.size))
        k = rows.shape[1]
        offsets = pa.array(np.arange(0, (len(texts) + 1) * k, k, dtype=np.int32))
        table = pa.table(
            {
                "text": pa.array(texts, pa.string()),
                "rows": pa.ListArray.from_arrays(offsets, pa.array(rows.reshape(-1).astype(np.int32))),
                "similarity": pa.ListArray.from_arrays(offsets, pa.array(sims.reshape(-1).astype(np.float32))),
            },
            schema=TOPK,
        )
        return ctx.result({"topk": table}, errors_table=None)

    def finalize(self, workdir: Path) -> dict[str, Any]:
        stats = StageDir(self.output_dir(workdir)).stats()
        facts: dict[str, Any] = {"distinct concept texts": f"{sum(s['counters'].get('texts', 0) for s in stats):,}"}
        total = sum(s["counters"].get("recall_total", 0) for s in stats)
        if total:
            hits = sum(s["counters"].get("recall_hits", 0) for s in stats)
            facts[f"recall@{self.top_k} ({self.index.kind} vs exact)"] = f"{hits / total:.4f} on {total:,} results"
        return facts


@dataclass
class TopK:
    """The search results as arrays: text -> row of `rows` / `similarity` (n_texts, k)."""

    where: dict[str, int]
    rows: np.ndarray
    similarity: np.ndarray

    @classmethod
    def from_table(cls, table: pa.Table) -> TopK:
        n = table.num_rows
        rows = table.column("rows").combine_chunks().flatten().to_numpy().astype(np.int64)
        sims = table.column("similarity").combine_chunks().flatten().to_numpy().astype(np.float32)
        k = rows.size // n if n else 0
        return cls(
            where={t: i for i, t in enumerate(table.column("text").to_pylist())},
            rows=rows.reshape(n, k),
            similarity=sims.reshape(n, k),
        )
