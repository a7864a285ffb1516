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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import InputError
from ...pool_files import pool_dir
from ...shards import STAGE_FILE, StageDir, atomic_write_table, fingerprint
from ...stage import ErrorLog

CONCEPT_TEXT_MODES = ("description", "name", "both")
FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)
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


# where the collections live and whether a faiss file was also written: no retrieval result depends on them
_POOL_FACTS_NOT_CONTENT = {"segments": ("roots",), "clap": ("index", "index_type")}


def pool_fingerprint(workdir: Path) -> str:
    """The pool's content (segments, CLAP identity and counts, parameters), never where its data lives."""
    manifest = json.loads((pool_dir(workdir) / "manifest.json").read_text())
    for part, keys in _POOL_FACTS_NOT_CONTENT.items():
        if isinstance(manifest.get(part), dict):
            manifest[part] = {k: v for k, v in manifest[part].items() if k not in keys}
    return fingerprint(manifest)


@dataclass(frozen=True)
class ConceptFolders:
    """Which `W/concepts/<vlm>/` folders retrieval reads, and the ones it leaves out with the reason."""

    used: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (folder name, why)


def _folder_names(root: Path) -> list[str]:
    """Concepts folders by name; hidden ones (a folder being deleted, `.lock` files) are no VLM's."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def _wanted_folders(names: list[str], vlms: Sequence[str]) -> list[str]:
    """`--vlm` values (a VLM id as given to extract, or its folder name) -> folder names; refuses an unknown one."""
    from ..extract import vlm_slug  # the one rule that names a VLM's folder

    wanted = []
    for vlm in vlms:
        name = vlm if vlm in names else vlm_slug(vlm)
        if name not in names:
            raise RetrieveInputError(
                f"--vlm {vlm}: no concepts folder concepts/{name} (have: {', '.join(names) or 'none'})"
            )
        if name not in wanted:
            wanted.append(name)
    return sorted(wanted)


def concept_folders(workdir: Path, vlms: Sequence[str] | None = None) -> ConceptFolders:
    """The complete concepts folders retrieval uses (all, or those named by `--vlm`), and the ones it skips.

    A folder with no shard written (an extraction that failed before its first image, or never began)
    is not unfinished work: it is skipped and named. One with some but not all shards is refused: its
    pairs would silently miss images. A folder named by `--vlm` must be complete.
    """
    root = Path(workdir) / "concepts"
    names = _folder_names(root)
    chosen = _wanted_folders(names, vlms) if vlms else names
    used: list[str] = []
    skipped: list[tuple[str, str]] = []
    for name in chosen:
        sd = StageDir(root / name)
        manifest = sd.manifest()
        done = sd.complete_shards()
        if manifest is None:
            skipped.append((name, f"no {STAGE_FILE}: not an extract run"))
        elif not done:
            skipped.append((name, f"no shard written (0/{manifest['num_shards']}): an extraction that never started"))
        elif len(done) != manifest["num_shards"]:
            raise RetrieveInputError(
                f"concepts in {root / name} are incomplete ({len(done)}/{manifest['num_shards']} shards): "
                f"finish `sonify extract` first{' or leave it out with --vlm' if len(names) > 1 else ''}"
            )
        else:
            used.append(name)
    if vlms and skipped:
        name, why = skipped[0]
        raise RetrieveInputError(f"--vlm {name}: concepts/{name} cannot be used ({why}): run `sonify extract` first")
    if not used:
        raise RetrieveInputError(f"no complete concepts tables under {root}: run `sonify extract` first")
    return ConceptFolders(tuple(used), tuple(skipped))


def concept_shards(workdir: Path, vlms: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """(vlm folder, shard index) of every concepts shard retrieval reads, sorted (see `concept_folders`)."""
    root = Path(workdir) / "concepts"
    found: list[tuple[str, int]] = []
    for name in concept_folders(workdir, vlms).used:
        sd = StageDir(root / name)
        found.extend((name, i) for i in sd.complete_shards() if sd.table_path("", i).exists())
    if not found:
        raise RetrieveInputError(f"no concepts tables under {root}: run `sonify extract` first")
    return found


def concepts_fingerprints(workdir: Path, vlms: Sequence[str] | None = None) -> dict[str, str]:
    """The run fingerprint of each concepts folder retrieval reads (a pairs table depends on exactly these)."""
    root = Path(workdir) / "concepts"
    out = {}
    for name in concept_folders(workdir, vlms).used:
        manifest = StageDir(root / name).manifest()
        assert manifest is not None  # a used folder is complete, so it has its _stage.json
        out[name] = manifest["fingerprint"]
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


# Every character Python's str.split() separates on (str.isspace): Unicode White_Space plus the
# ASCII information separators 0x1c-0x1f. The columnar text normalisation must split exactly there.
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WHITESPACE_RUN = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in PY_WHITESPACE) + "]+"


_NOT_NORMAL = [c for c in PY_WHITESPACE if c != " "] + ["  "]  # any of these, or an edge space: needs the regex


def _normalized(column: str) -> pl.Expr:
    """`normalize_text` as a polars expression: runs of whitespace -> one space, trimmed; null -> "".

    Most texts are already normal; a cheap multi-pattern scan finds the others, and only they go
    through the regular expression (6x faster over 2.8M concept texts).
    """
    raw = pl.col(column).fill_null("")
    needs = raw.str.contains_any(_NOT_NORMAL) | raw.str.starts_with(" ") | raw.str.ends_with(" ")
    return pl.when(needs).then(raw.str.replace_all(_WHITESPACE_RUN, " ").str.strip_chars(" ")).otherwise(raw)


def _concept_text_expr(mode: str) -> pl.Expr:
    """`concept_text` as a polars expression over normalised `name` and `description` columns."""
    name, desc = pl.col("name"), pl.col("description")
    if mode == "name":
        return pl.when(name != "").then(name).otherwise(desc)
    if mode == "description":
        return pl.when(desc != "").then(desc).otherwise(name)
    if mode == "both":
        either = pl.when(name != "").then(name).otherwise(desc)
        return pl.when((name != "") & (desc != "")).then(pl.concat_str([name, pl.lit(": "), desc])).otherwise(either)
    raise RetrieveInputError(f"unknown --concept-text '{mode}' (choose: {', '.join(CONCEPT_TEXT_MODES)})")


_PAIR_ID = pl.concat_str([pl.col("image_id").fill_null("None"), pl.lit("|"), pl.col("vlm").fill_null("None")]).alias(
    "pair_id"
)
_FAILED = pl.col("error").is_not_null() & (pl.col("error") != "")  # an empty error string is no error
_KEPT = ~_FAILED & pl.col("keep").fill_null(False)
_HAS_CONCEPTS = pl.col("concepts").list.len().fill_null(0) > 0


def _with_texts(frame: FrameT, mode: str, also: list[str] | None = None) -> FrameT:
    """One row per concept: raw `name_raw`/`description_raw`, normalised `name`/`description` and `text`."""
    return (
        frame.explode(["concepts", *(also or [])])
        .with_columns(
            pl.col("concepts").struct.field("name").alias("name_raw"),
            pl.col("concepts").struct.field("description").alias("description_raw"),
        )
        .with_columns(_normalized("name_raw").alias("name"), _normalized("description_raw").alias("description"))
        .with_columns(_concept_text_expr(mode).alias("text"))
    )


@dataclass
class ConceptFrames:
    """`concept_items` as columns: the pairs, their concepts with texts, the counters and error rows."""

    pairs: pl.DataFrame  # pair_id, image_id, image_source, vlm, caption (in pair order)
    concepts: pl.DataFrame  # pair_of, pair_id, index, name, description, text (in (pair, concept) order)
    counters: Counter[str]
    errors: pl.DataFrame  # item, reason, detail (in the order the row-by-row reading meets them)


def concept_frames(table: pa.Table, mode: str) -> ConceptFrames:
    """Columnar core of `concept_items` (polars): the same pairs, concepts, counters and error rows.

    Rows are ordered by (pair_id, image_id), stably; a row with a non-empty `error` or keep=false
    gives no pair (counted); of kept rows sharing a pair_id the first is the pair and the others
    are `duplicate_pair` errors; a pair with no concepts is counted; a concept whose text is empty
    is an `empty_concept_text` error.
    """
    df = (
        pl.from_arrow(table.select(CONCEPT_COLUMNS), rechunk=False)
        .with_row_index("_order")
        .with_columns(_PAIR_ID)
        .sort(["pair_id", "image_id", "_order"], maintain_order=True)
        .drop("_order")
        .with_row_index("_pos")
    )
    counters: Counter[str] = Counter()
    n_failed = int(df.select(_FAILED.sum()).item())
    n_dropped = int(df.select((~_FAILED & ~pl.col("keep").fill_null(False)).sum()).item())
    eligible = df.filter(_KEPT).with_columns(pl.col("pair_id").is_first_distinct().alias("_first"))
    duplicates = eligible.filter(~pl.col("_first")).select(
        "_pos",
        pl.lit(-1, pl.Int64).alias("_ci"),
        pl.col("pair_id").alias("item"),
        pl.lit("duplicate_pair").alias("reason"),
        pl.lit("the same (image, VLM) appears twice in the concepts").alias("detail"),
    )
    unique = eligible.filter(pl.col("_first"))
    n_empty = int(unique.select((~_HAS_CONCEPTS).sum()).item())
    pairs = unique.filter(_HAS_CONCEPTS).with_row_index("pair_of")
    exploded = _with_texts(
        pairs.select("_pos", "pair_of", "pair_id", "concepts").with_columns(
            pl.int_ranges(0, pl.col("concepts").list.len(), dtype=pl.Int64).alias("_ci")
        ),
        mode,
        also=["_ci"],
    )
    empty_text = exploded.filter(pl.col("text") == "").select(
        "_pos",
        "_ci",
        pl.concat_str([pl.col("pair_id"), pl.lit("#"), pl.col("_ci").cast(pl.String)]).alias("item"),
        pl.lit("empty_concept_text").alias("reason"),
        pl.lit("concept has neither name nor description").alias("detail"),
    )
    concepts = exploded.filter(pl.col("text") != "").select(
        pl.col("pair_of").cast(pl.Int64),
        "pair_id",
        pl.col("_ci").alias("index"),
        pl.col("name_raw").alias("name"),
        pl.col("description_raw").alias("description"),
        "text",
    )
    errors = pl.concat([duplicates, empty_text]).sort(["_pos", "_ci"]).select("item", "reason", "detail")
    for key, n in (("images_failed_extraction", n_failed), ("images_dropped", n_dropped)):
        if n:
            counters[key] = n
    if n_empty:
        counters["images_without_concepts"] = n_empty
    return ConceptFrames(
        pairs=pairs.select("pair_id", "image_id", pl.col("image_path").alias("image_source"), "vlm", "caption"),
        concepts=concepts,
        counters=counters,
        errors=errors,
    )


def concept_items(table: pa.Table, mode: str, errors: ErrorLog | None = None) -> ConceptItems:
    """Pure: which (image, VLM) rows give pairs, and the text CLAP reads for each of their concepts.

    Rows with an extraction error or keep=false give no pair (counted); so do kept images with
    no concepts. Concepts whose text is empty are error rows; the pair keeps its other sources.
    Computed by columns (`concept_frames`); the lists are what the per-concept draws consume. Error
    rows go to `errors` when given (a shard's `ShardContext.errors`), else to a log of their own.
    """
    frames = concept_frames(table, mode)
    out = ConceptItems(pairs=frames.pairs.to_dicts(), counters=frames.counters, errors=errors or ErrorLog())
    c = frames.concepts
    out.pair_of = c.get_column("pair_of").to_list()
    out.pair_ids = c.get_column("pair_id").to_list()
    out.index = c.get_column("index").to_list()
    out.names = c.get_column("name").to_list()
    out.descriptions = c.get_column("description").to_list()
    out.texts = c.get_column("text").to_list()
    for item, reason, detail in frames.errors.iter_rows():
        out.errors.add(item, reason, detail)
    return out


def plan_key(workdir: Path, mode: str, vlms: Sequence[str] | None = None) -> str:
    """Fingerprint of the search plan's inputs: the mode and every concepts shard file (name, size, mtime)."""
    files = []
    for vlm_dir, index in concept_shards(workdir, vlms):
        st = StageDir(Path(workdir) / "concepts" / vlm_dir).table_path("", index).stat()
        files.append([vlm_dir, index, st.st_size, st.st_mtime_ns])
    return fingerprint({"mode": mode, "files": files})


def distinct_texts(workdir: Path, mode: str, vlms: Sequence[str] | None = None) -> list[str]:
    """Sorted distinct concept texts over every concepts shard and VLM (the search plan).

    Computed by columns and cached under `W/retrieve/plan/` by the fingerprint of its inputs, so the
    command, its workers and later commands read it back instead of recomputing it.
    """
    path = retrieve_dir(workdir) / "plan" / f"texts-{plan_key(workdir, mode, vlms)}.parquet"
    if path.exists():
        return pq.read_table(path).column("text").to_pylist()
    texts = scan_distinct_texts(
        [StageDir(Path(workdir) / "concepts" / v).table_path("", i) for v, i in concept_shards(workdir, vlms)], mode
    )
    atomic_write_table(path, pa.table({"text": texts.to_arrow().cast(pa.string())}))
    return texts.to_list()


def scan_distinct_texts(paths: list[Path], mode: str) -> pl.Series:
    """Sorted distinct texts of the concepts that `concept_items` gives for each file, all files in one query.

    The per-shard rules hold per file: a pair is the first kept row of its pair_id *within its file*
    (in (pair_id, image_id) order), so the union equals the union of per-shard `concept_items` texts.
    """
    if not paths:
        return pl.Series("text", [], pl.String)
    kept = (
        pl.scan_parquet([str(p) for p in paths], include_file_paths="_file")
        .select(["_file", "image_id", "vlm", "concepts", "keep", "error"])
        .with_row_index("_order")
        .with_columns(_PAIR_ID)
        .filter(_KEPT)
        .with_columns(pl.struct("_file", "pair_id").is_duplicated().alias("_dup"))
    )
    # only rows sharing a pair_id in one file (rare) need the (pair_id, image_id) order to find the first
    firsts = (
        kept.filter(pl.col("_dup"))
        .sort(["_file", "pair_id", "image_id", "_order"], maintain_order=True)
        .filter(pl.struct("_file", "pair_id").is_first_distinct())
    )
    frame = pl.concat([kept.filter(~pl.col("_dup")), firsts]).filter(_HAS_CONCEPTS).select("concepts")
    texts = _with_texts(frame, mode).filter(pl.col("text") != "").select(pl.col("text").unique().sort())
    return texts.collect()["text"]
