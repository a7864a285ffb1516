"""`sonify retrieve`: sounding concepts -> one pool segment each (Algorithm 1) -> the pairs table.

Two stages, run one after the other by the command:

* `RetrieveSearchStage` (`W/retrieve/search/`) is the global phase. Its plan is the sorted list of
  *distinct* concept texts over every concepts shard of every VLM; each shard embeds its texts
  with the pool's CLAP text tower (through an on-disk cache keyed by encoder and text) and
  writes their exact top-k pool rows and similarities (`W/retrieve/search/topk/NNNNN.parquet`).
* `RetrievePairsStage` (`W/pairs/`) is the per-shard part: one pairs shard per concepts shard.
  It looks each concept's text up in the top-k table and runs the rest of Algorithm 1 (SSR,
  threshold, draw, target loudness) with randomness seeded by (seed, pair_id, concept index).

Nothing a shard writes depends on shard count, worker count or order: search results depend
only on a text, draws only on (seed, pair_id, concept index), and the optional reuse cap is one
global pass in a hash-defined order (see `retrieval.cap_reuse`), computed once by the command and
cached as one assignments file per pairs shard.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import retrieval, schema
from ..settings import CLAP_BATCH_SIZE, LUFS_MAX, LUFS_MIN, RECALL_SAMPLE, SEED, TEXTS_PER_SHARD, TOP_K
from ..shards import StageDir, atomic_write_bytes, atomic_write_json, atomic_write_table, fingerprint, shard_name
from ..stage import ErrorLog, ItemCallback, Resources, Shard, ShardResult, Stage, chunk, model_resources
from ..text_cache import TextVectorCache
from ..usage import clip_usage
from ..vector_index import IndexSpec, build_index, exact_topk, recall_at_k, search
from .pool import load_pool, pool_dir

CONCEPT_TEXT_MODES = ("description", "name", "both")
CONCEPT_COLUMNS = ["image_id", "image_path", "vlm", "caption", "concepts", "keep", "error"]
TOPK = pa.schema(
    [
        pa.field("text", pa.string(), nullable=False),
        pa.field("rows", pa.list_(pa.int32()), nullable=False),  # pool rows, best first
        pa.field("similarity", pa.list_(pa.float32()), nullable=False),
    ]
)


class RetrieveInputError(ValueError):
    """The run cannot start: no pool, no concepts, unfinished extraction, a CLAP mismatch."""


def retrieve_dir(workdir: Path) -> Path:
    """Retrieval's own folder: the search stage (`search/`) and caches that outlive it (text vectors, indexes)."""
    return Path(workdir) / "retrieve"


def search_dir(workdir: Path) -> Path:
    return retrieve_dir(workdir) / "search"


def pairs_dir(workdir: Path) -> Path:
    return Path(workdir) / "pairs"


# --- inputs -----------------------------------------------------------------------------------
def normalize_text(text: str | None) -> str:
    """Whitespace-collapsed text: the dedup key and what CLAP reads (case is kept: CLAP's BPE sees it)."""
    return " ".join((text or "").split())


def concept_text(name: str | None, description: str | None, mode: str) -> str:
    """What CLAP reads for one concept; falls back to the other field when the chosen one is empty."""
    name, desc = normalize_text(name), normalize_text(description)
    if mode == "name":
        return name or desc
    if mode == "description":
        return desc or name
    if mode == "both":
        return f"{name}: {desc}" if name and desc else name or desc
    raise ValueError(f"unknown --concept-text '{mode}' (choose: {', '.join(CONCEPT_TEXT_MODES)})")


def pool_clap(workdir: Path, requested: str | None = None) -> dict[str, Any]:
    """The CLAP identity the pool was embedded with; refuses another checkpoint for the text side."""
    manifest_path = pool_dir(workdir) / "manifest.json"
    if not manifest_path.exists():
        raise RetrieveInputError(f"no finished pool in {pool_dir(workdir)}: run `sonify pool` first")
    clap = json.loads(manifest_path.read_text()).get("clap")
    if not clap:
        raise RetrieveInputError("the pool has no CLAP embeddings: run `sonify pool` without --no-embed")
    if requested is not None and requested != clap["model"]:
        raise RetrieveInputError(
            f"--clap {requested} differs from the pool's CLAP {clap['model']}: text and audio vectors must come "
            "from the same model (omit --clap, or rebuild the pool with it)"
        )
    return {"model": clap["model"], "revision": clap.get("revision"), "dim": int(clap["dim"])}


def pool_fingerprint(workdir: Path) -> str:
    return fingerprint(json.loads((pool_dir(workdir) / "manifest.json").read_text()))


def concept_shards(workdir: Path) -> list[tuple[str, int]]:
    """(vlm folder, shard index) of every concepts shard, sorted; refuses an unfinished extraction."""
    root = Path(workdir) / "concepts"
    found: list[tuple[str, int]] = []
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in folders:
        sd = StageDir(folder)
        manifest = sd.manifest()
        if manifest is None:
            continue
        done = sd.complete_shards()
        if len(done) != manifest["num_shards"]:
            raise RetrieveInputError(
                f"concepts in {folder} are incomplete ({len(done)}/{manifest['num_shards']} shards): "
                "finish `sonify extract` first"
            )
        found.extend((folder.name, i) for i in done if sd.table_path("", i).exists())
    if not found:
        raise RetrieveInputError(f"no concepts tables under {root}: run `sonify extract` first")
    return found


def concepts_fingerprints(workdir: Path) -> dict[str, str]:
    root = Path(workdir) / "concepts"
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        manifest = StageDir(folder).manifest()
        if manifest is not None:
            out[folder.name] = manifest["fingerprint"]
    return out


def read_concepts(workdir: Path, vlm_dir: str, index: int) -> pa.Table:
    path = StageDir(Path(workdir) / "concepts" / vlm_dir).table_path("", index)
    return pq.read_table(path, columns=CONCEPT_COLUMNS)


@dataclass
class ConceptItems:
    """The retrievable concepts of a concepts table, in (pair_id, concept index) order."""

    pairs: list[dict[str, Any]] = field(default_factory=list)  # pair_id, image_id, image_source, vlm, caption
    pair_of: list[int] = field(default_factory=list)  # per concept: index into `pairs`
    pair_ids: list[str] = field(default_factory=list)
    index: list[int] = field(default_factory=list)  # position in the image's concept list
    names: list[str | None] = field(default_factory=list)
    descriptions: list[str | None] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    errors: ErrorLog = field(default_factory=ErrorLog)

    def only_searched(self, searched: Mapping[str, int]) -> ConceptItems:
        """Drop (as error rows) concepts whose text has no search result: concepts changed after the search."""
        keep = [i for i, t in enumerate(self.texts) if t in searched]
        if len(keep) == len(self.texts):
            return self
        for i in sorted(set(range(len(self.texts))) - set(keep)):
            self.errors.add(f"{self.pair_ids[i]}#{self.index[i]}", "missing_search_result", self.texts[i])
        out = ConceptItems(pairs=self.pairs, counters=self.counters, errors=self.errors)
        for name in ("pair_of", "pair_ids", "index", "names", "descriptions", "texts"):
            setattr(out, name, [getattr(self, name)[i] for i in keep])
        return out


def concept_items(table: pa.Table, mode: str) -> ConceptItems:
    """Pure: which (image, VLM) rows give pairs, and the text CLAP reads for each of their concepts.

    Rows with an extraction error or keep=false give no pair (counted); so do kept images with
    no concepts. Concepts whose text is empty are error rows; the pair keeps its other sources.
    """
    out = ConceptItems()
    rows = sorted(table.to_pylist(), key=lambda r: (f"{r['image_id']}|{r['vlm']}", r["image_id"]))
    seen: set[str] = set()
    for row in rows:
        pair_id = f"{row['image_id']}|{row['vlm']}"
        if row.get("error"):
            out.counters["images_failed_extraction"] += 1
            continue
        if not row["keep"]:
            out.counters["images_dropped"] += 1
            continue
        if pair_id in seen:
            out.errors.add(pair_id, "duplicate_pair", "the same (image, VLM) appears twice in the concepts")
            continue
        seen.add(pair_id)
        concepts = row["concepts"] or []
        if not concepts:
            out.counters["images_without_concepts"] += 1
            continue
        p = len(out.pairs)
        out.pairs.append(
            {
                "pair_id": pair_id,
                "image_id": row["image_id"],
                "image_source": row.get("image_path"),
                "vlm": row["vlm"],
                "caption": row.get("caption"),
            }
        )
        for ci, c in enumerate(concepts):
            text = concept_text(c.get("name"), c.get("description"), mode)
            if not text:
                out.errors.add(f"{pair_id}#{ci}", "empty_concept_text", "concept has neither name nor description")
                continue
            out.pair_of.append(p)
            out.pair_ids.append(pair_id)
            out.index.append(ci)
            out.names.append(c.get("name"))
            out.descriptions.append(c.get("description"))
            out.texts.append(text)
    return out


def distinct_texts(workdir: Path, mode: str) -> list[str]:
    """Sorted distinct concept texts over every concepts shard and VLM (the search plan)."""
    texts: set[str] = set()
    for vlm_dir, index in concept_shards(workdir):
        texts.update(concept_items(read_concepts(workdir, vlm_dir, index), mode).texts)
    return sorted(texts)


# --- stage 1: distinct texts -> top-k pool rows -------------------------------------------------
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

    name = "retrieve-search"

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

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_plan", "_state")} | {"_plan": None, "_state": {}}

    def output_dir(self, workdir: Path) -> Path:
        return search_dir(workdir)

    def plan(self) -> list[Shard]:
        if self._plan is None:
            self._plan = chunk(distinct_texts(Path(self.workdir), self.concept_text), self.texts_per_shard)
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
        pool = load_pool(workdir).embeddings
        assert pool is not None
        self._state = {
            "pool": np.ascontiguousarray(pool, dtype=np.float32),
            "index": self._load_index(pool),
            "cache": TextVectorCache(retrieve_dir(workdir) / "text_cache", self.cache_identity()),
            "encoder": None,
        }

    def cache_identity(self) -> dict[str, Any]:
        """Cached vectors are only reused from the same checkpoint at the same precision (bf16 != fp32)."""
        from ..models.device import pick_device, torch_dtype

        return {**self.clap, "dtype": str(torch_dtype(self.dtype, pick_device(self.device)))}

    def _load_index(self, pool: np.ndarray) -> Any:
        """Exact: built in memory. Approximate: built once and cached, so every shard searches the same one."""
        if self.index.kind == "exact":
            from ..models.device import pick_device

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
            from ..models.clap import ClapEncoder

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
        texts = list(shard.items)
        vectors, embedded = self.embed(texts, on_item)
        pool = self._state["pool"]
        sims, rows = search(self._state["index"], vectors, self.top_k, pool)
        counters = {"texts": len(texts), "texts_embedded": embedded, "texts_from_cache": len(texts) - embedded}
        if self.index.kind != "exact" and len(texts):
            sample = np.linspace(0, len(texts) - 1, min(RECALL_SAMPLE, len(texts))).astype(int)
            _, exact_rows = exact_topk(pool, vectors[sample], self.top_k)
            recall = recall_at_k(rows[sample], exact_rows)
            counters["recall_hits"] = round(recall * exact_rows.size)
            counters["recall_total"] = int(exact_rows.size)
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
        return ShardResult(tables={"topk": table}, counters=counters, items=len(texts))

    def finalize(self, workdir: Path) -> dict[str, Any]:
        stats = StageDir(self.output_dir(workdir)).stats()
        facts: dict[str, Any] = {"distinct concept texts": f"{sum(s['counters'].get('texts', 0) for s in stats):,}"}
        total = sum(s["counters"].get("recall_total", 0) for s in stats)
        if total:
            hits = sum(s["counters"].get("recall_hits", 0) for s in stats)
            facts[f"recall@{self.top_k} ({self.index.kind} vs exact)"] = f"{hits / total:.4f} on {total:,} results"
        return facts


# --- stage 2: per concepts shard -> pairs -------------------------------------------------------
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
) -> tuple[np.ndarray, retrieval.Selection, retrieval.ItemDraws]:
    """Algorithm 1 for every concept of `items` (all searched): (top-k row per concept, selection, draws)."""
    where = np.array([topk.where[t] for t in items.texts], np.int64)
    draws = retrieval.item_draws(params.seed, items.pair_ids, items.index, params.lufs_min, params.lufs_max)
    sims = topk.similarity[where] if len(where) else np.zeros((0, max(1, topk.similarity.shape[1])), np.float32)
    return where, retrieval.select(sims, draws.u), draws


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


def reuse_assignments(
    workdir: Path, mode: str, topk: TopK, params: DrawParams, max_reuse: int
) -> tuple[list[pa.Table], int]:
    """The reuse cap's global pass over every concept of every shard; returns the overflow count and,
    per concepts shard (plan order), its concepts' (pair_id, concept_index, row) in `concept_items` order.

    Held as arrays (preferences (n, k) int32, ids in arrow), not Python objects per concept: at a
    million images x 2 VLMs that is ~8M concepts, gigabytes as lists and dicts.
    """
    prefs: list[np.ndarray] = []
    order: list[np.ndarray] = []
    ids: list[pa.Table] = []
    for vlm_dir, shard in concept_shards(workdir):
        items = concept_items(read_concepts(workdir, vlm_dir, shard), mode).only_searched(topk.where)
        where, sel, draws = select_sources(items, topk, params)
        ranks = retrieval.preferences(sel)
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
    chosen, overflow = retrieval.cap_reuse(position, padded, max_reuse)
    out, start = [], 0
    for t in ids:
        out.append(t.append_column("row", pa.array(chosen[start : start + t.num_rows], pa.int64())))
        start += t.num_rows
    return out, int(overflow.sum())


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

    def __post_init__(self) -> None:
        if self.lufs_min > self.lufs_max:
            raise RetrieveInputError(f"--lufs-min ({self.lufs_min}) must not exceed --lufs-max ({self.lufs_max})")
        if self.max_reuse is not None and self.max_reuse < 1:
            raise RetrieveInputError("--max-reuse must be at least 1")
        self._plan: list[Shard] | None = None
        self._state: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_plan", "_state")} | {"_plan": None, "_state": {}}

    @property
    def draw_params(self) -> DrawParams:
        return DrawParams(self.seed, self.lufs_min, self.lufs_max)

    def output_dir(self, workdir: Path) -> Path:
        return pairs_dir(workdir)

    def plan(self) -> list[Shard]:
        if self._plan is None:
            self._plan = [Shard(i, (item,)) for i, item in enumerate(concept_shards(Path(self.workdir)))]
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
            "concepts": concepts_fingerprints(Path(self.workdir)),
        }

    def _load_topk(self) -> TopK:
        sd = StageDir(self.search.output_dir(Path(self.workdir)))
        if not sd.all_complete():
            raise RuntimeError("the search stage is not complete: run `sonify retrieve` until it is")
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
        if not (folder / "done.json").exists():
            topk = topk or self._load_topk()
            tables, overflow = reuse_assignments(
                Path(self.workdir), self.search.concept_text, topk, self.draw_params, self.max_reuse
            )
            for i, table in enumerate(tables):
                atomic_write_table(folder / f"{shard_name(i)}.parquet", table)
            atomic_write_json(folder / "done.json", {"shards": len(tables), "overflow": overflow})
        return folder

    def _assigned(self, index: int) -> dict[tuple[str, int], int] | None:
        folder = self._state["reuse"]
        if folder is None:
            return None
        t = pq.read_table(folder / f"{shard_name(index)}.parquet")
        cols = [t.column(n).to_pylist() for n in ("pair_id", "concept_index", "row")]
        return {(p, c): r for p, c, r in zip(*cols, strict=True)}

    def process(self, shard: Shard, on_item: ItemCallback | None = None) -> ShardResult:
        (vlm_dir, index) = shard.items[0]
        concepts = read_concepts(Path(self.workdir), vlm_dir, index)
        items = concept_items(concepts, self.search.concept_text).only_searched(self._state["topk"].where)
        table, counters = build_pairs(
            items, self._state["topk"], self._state["pool"], self.draw_params, self._assigned(shard.index)
        )
        if on_item:
            on_item(1)
        return ShardResult(
            tables={"": table, "errors": items.errors.table()},
            counters=dict(counters),
            errors=dict(items.errors.counts),
            items=1,
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
