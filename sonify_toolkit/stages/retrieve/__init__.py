"""`sonify retrieve`: sounding concepts -> one pool segment each (Algorithm 1) -> the pairs table.

One idea per module:

* `plan.py`: retrieval's folders and inputs: the pool's CLAP identity (`pool_clap`), the
  concepts shards of every VLM, the text CLAP reads per concept (`concept_items`, computed by
  columns with polars), the distinct texts the search plans over (one lazy query over every
  concepts file, cached under `W/retrieve/plan/` by the fingerprint of those files), and the
  fingerprints both stages record.
* `text_cache.py`: the on-disk cache of CLAP text vectors keyed by (encoder, text).
* `search.py`: `RetrieveSearchStage` (`W/retrieve/search/`), the global phase: each distinct
  concept text is embedded once (through the cache) and its exact top-k pool rows are written,
  searched over the memory-mapped pool (`pool_files.PoolVectors`, shared by the workers of a machine);
  `TopK` is that table as arrays.
* `algorithm.py`: Algorithm 1 as pure numpy (SSR, mean top-k threshold, weighted draw, seeded
  per-concept randomness, the reuse cap's sweep).
* `draws.py`: `build_pairs`, Algorithm 1 over one concepts shard: search results + draws -> rows.
* `reuse.py`: the optional `--max-reuse` cap as one global pass in a hash-defined order.
* `pairs.py`: `RetrievePairsStage` (`W/pairs/`), one pairs shard per concepts shard, and the
  clip-usage statistics of `finalize`.

Nothing a shard writes depends on shard count, worker count or order: search results depend only
on a text, draws only on (seed, pair_id, concept index), and the reuse cap's pass only on hashes
of those. The command's chain (search -> barrier -> reuse pass -> pairs) is `pipeline.run_retrieve`.
"""

from __future__ import annotations

from .draws import DrawParams, PoolColumns, build_pairs, select_sources
from .pairs import RetrievePairsStage
from .plan import (
    CONCEPT_TEXT_MODES,
    ConceptFolders,
    ConceptItems,
    RetrieveInputError,
    concept_folders,
    concept_items,
    concept_shards,
    concept_text,
    distinct_texts,
    normalize_text,
    pairs_dir,
    pool_clap,
    retrieve_dir,
    search_dir,
)
from .reuse import reuse_assignments
from .search import TOPK, RetrieveSearchStage, TopK
from .text_cache import TextVectorCache

__all__ = [
    "CONCEPT_TEXT_MODES",
    "TOPK",
    "ConceptFolders",
    "ConceptItems",
    "DrawParams",
    "PoolColumns",
    "RetrieveInputError",
    "RetrievePairsStage",
    "RetrieveSearchStage",
    "TextVectorCache",
    "TopK",
    "build_pairs",
    "concept_folders",
    "concept_items",
    "concept_shards",
    "concept_text",
    "distinct_texts",
    "normalize_text",
    "pairs_dir",
    "pool_clap",
    "retrieve_dir",
    "reuse_assignments",
    "search_dir",
    "select_sources",
]
