"""Retrieval's inputs: where its files live, the pool's CLAP identity, and the concepts it reads.

Both retrieval stages plan over the concepts tables of every VLM: the search over their sorted
*distinct* concept texts (`distinct_texts`), the pairs over the tables themselves
(`concept_shards`). `concept_items` is the pure part: which (image, VLM) rows give pairs and the
text CLAP reads for each of their concepts. The fingerprints recorded in the stages' parameters
(pool manifest, concepts stage folders) also come from here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import InputError
from ...pool_files import pool_dir
from ...shards import StageDir, fingerprint
from ...stage import ErrorLog

CONCEPT_TEXT_MODES = ("description", "name", "both")
CONCEPT_COLUMNS = ["image_id", "image_path", "vlm", "caption", "concepts", "keep", "error"]


class RetrieveInputError(InputError):
    """The run cannot start: no pool, no concepts, unfinished extraction, a CLAP mismatch, a bad option."""


def retrieve_dir(workdir: Path) -> Path:
    """Retrieval's own folder: the search stage (`search/`) and caches that outlive it (text vectors, indexes)."""
    return Path(workdir) / "retrieve"


def search_dir(workdir: Path) -> Path:
    return retrieve_dir(workdir) / "search"


def pairs_dir(workdir: Path) -> Path:
    return Path(workdir) / "pairs"


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
    raise RetrieveInputError(f"unknown --concept-text '{mode}' (choose: {', '.join(CONCEPT_TEXT_MODES)})")


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
