"""`sonify render`: pair rows + local copies of the sound collections -> the pairs' soundtracks.

A pair row alone is enough (no pool index, no model). For each source: resolve `ROOT/path`
safely, check the file's sha256, decode and standardise the whole file exactly as the pool did
(so `clip_lufs` holds), cut the 5-s window, apply `target_lufs - clip_lufs` dB; then sum, and
scale the whole mix down if it would clip (paper 3.3, A.9).

Layers, from pure to impure:

* `mix_sources` / `gain_for`: the mixing core, pure numpy.
* `render_source` / `render_pair`: one source / one pair from a row and the roots (the report
  reuses them); they raise `PairRenderError` naming the pair and every failing source.
* `FileCache`: standardised files kept per worker, LRU-bounded in bytes, because at scale a few
  clips serve thousands of pairs; `reuse_order` orders a shard's pairs so that reuse hits it.
* `RenderStage`: the stage (plan over pair ids, shards of `pairs_per_shard`).

Output folder (`--out DIR`): `audio/XX/<pair>-<hash>.flac` (or `.wav`), `index/NNNNN.parquet`
(schema.RENDERED), `errors/`, `missing/` (one row per unusable source, for the per-collection
summary); or, with `--format hf`, `data/NNNNN.parquet` with an `Audio` column of FLAC bytes and a
README.md whose YAML declares the config and features, so `datasets.load_dataset(DIR)` loads it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .. import audio, schema
from ..fileio import UnsafePathError, safe_join, sha256_bytes
from ..pair_source import PairSource, open_pairs
from ..settings import (
    PAIRS_PER_RENDER_SHARD,
    RENDER_CACHE_MB,
    RENDER_FORMAT,
    RENDER_FORMATS,
    SAMPLE_RATE,
    SEGMENT_FRAMES,
    SEGMENT_SECONDS,
)
from ..shards import StageDir, atomic_write_bytes
from ..stage import ErrorLog, ItemCallback, Resources, Shard, ShardResult, Stage, StatsTimer, chunk

FORMATS = RENDER_FORMATS
PEAK_CEILING = 1.0  # full scale: a mix whose peak exceeds it is scaled down as a whole

Roots = Mapping[str, "str | Path"]


# --- errors ----------------------------------------------------------------------------------------
class SourceError(Exception):
    """One source of a pair cannot be rendered; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, message: str, *, index: int = -1, collection: str = "", path: str = ""):
        super().__init__(message)
        self.reason, self.index, self.collection, self.path = reason, index, collection, path

    def describe(self) -> str:
        return f"source {self.index} ({self.collection}/{self.path}): {self.reason}: {self}"


class PairRenderError(Exception):
    """A pair with at least one unusable source (every failing source is listed)."""

    def __init__(self, pair_id: str, errors: Sequence[SourceError]):
        self.pair_id, self.errors = pair_id, list(errors)
        super().__init__(f"pair {pair_id!r}: " + "; ".join(e.describe() for e in self.errors))

    @property
    def reason(self) -> str:
        return self.errors[0].reason if self.errors else "no_sources"


# --- the per-worker cache of standardised files ------------------------------------------------------
@dataclass
class CachedFile:
    """A decoded, standardised file (or why it could not be), with the sha256 of its bytes."""

    signal: np.ndarray | None
    sha256: str | None
    error: tuple[str, str] | None = None

    @property
    def nbytes(self) -> int:
        return 0 if self.signal is None else int(self.signal.nbytes)


@dataclass
class FileCache:
    """LRU of standardised 16 kHz files bounded by `max_bytes`: each file is read and decoded once
    while it stays hot, instead of once per pair that uses it."""

    max_bytes: int = RENDER_CACHE_MB << 20
    entries: OrderedDict[str, CachedFile] = field(default_factory=OrderedDict)
    size: int = 0
    stats: Counter[str] = field(default_factory=Counter)
    paths: dict[tuple[str, str], Path] = field(default_factory=dict)  # checked (root, relpath) -> file

    def resolve(self, roots: Roots, source_row: Mapping[str, Any]) -> Path:
        """`resolve_source`, remembered: resolving a path costs more than mixing its window."""
        key = (str(roots.get(source_row.get("source"), "")), str(source_row.get("path")))
        path = self.paths.get(key)
        if path is None:
            path = self.paths[key] = resolve_source(roots, source_row)
        return path

    def get(self, path: Path) -> CachedFile:
        key = str(path)
        hit = self.entries.get(key)
        if hit is not None:
            self.entries.move_to_end(key)
            self.stats["cache_hits"] += 1
            return hit
        self.stats["files_decoded"] += 1
        entry = load_file(path)
        if entry.nbytes <= self.max_bytes:
            self.entries[key] = entry
            self.size += entry.nbytes
            while self.size > self.max_bytes:
                _, old = self.entries.popitem(last=False)
                self.size -= old.nbytes
                self.stats["cache_evictions"] += 1
        return entry


def load_file(path: Path) -> CachedFile:
    """Read once, hash and decode the same bytes: what is verified is exactly what is rendered."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        return CachedFile(None, None, ("missing_file", str(exc)))
    except OSError as exc:
        return CachedFile(None, None, ("unreadable_file", str(exc)))
    digest = sha256_bytes(data)
    try:
        signal = audio.load_standard(data, SAMPLE_RATE)
    except audio.AudioDecodeError as exc:
        return CachedFile(None, digest, ("undecodable_audio", str(exc)))
    signal.setflags(write=False)  # shared by every pair that uses the file
    return CachedFile(signal, digest)


# --- the pure core ------------------------------------------------------------------------------------
def gain_for(source_row: Mapping[str, Any]) -> float:
    """The paper's per-source gain in dB: target loudness minus the window's measured loudness."""
    return float(source_row["target_lufs"]) - float(source_row["clip_lufs"])


def mix_sources(windows: Sequence[np.ndarray], peak_ceiling: float = PEAK_CEILING) -> tuple[np.ndarray, float]:
    """Sum loudness-normalised windows; scale the whole mix down if it would clip (gain in dB, 0 if not)."""
    return audio.mix(windows, peak_ceiling)


def _check_row(source_row: Mapping[str, Any]) -> None:
    """Fields present and numeric: a release's columns may carry any type (the metadata may come from anyone)."""
    for key in ("source", "path", "segment", "clip_lufs", "target_lufs"):
        if source_row.get(key) is None:
            raise SourceError("bad_source_row", f"field '{key}' is empty")
    try:
        segment, numbers = int(source_row["segment"]), [float(source_row[k]) for k in ("clip_lufs", "target_lufs")]
    except (TypeError, ValueError) as exc:
        raise SourceError("bad_source_row", f"not a number: {exc}") from None
    if segment < 0:
        raise SourceError("bad_source_row", f"negative segment {segment}")
    if not all(math.isfinite(x) for x in numbers):
        raise SourceError("bad_source_row", f"clip_lufs / target_lufs not finite ({numbers})")


def resolve_source(roots: Roots, source_row: Mapping[str, Any]) -> Path:
    """`ROOT/path` for the row's collection, refusing paths that could leave the root."""
    collection = source_row.get("source")
    if collection not in roots:
        raise SourceError("unknown_collection", f"no --source given for collection {collection!r}")
    try:
        return safe_join(roots[collection], str(source_row.get("path") or ""))
    except UnsafePathError as exc:
        raise SourceError("unsafe_path", str(exc)) from None


def load_window(
    roots: Roots, source_row: Mapping[str, Any], verify: bool = True, cache: FileCache | None = None
) -> np.ndarray:
    """The row's raw 5-s window of its standardised file (zero-padded like the pool's last segment)."""
    _check_row(source_row)
    if cache is None:
        path = resolve_source(roots, source_row)
        entry = load_file(path)
    else:
        path = cache.resolve(roots, source_row)
        entry = cache.get(path)
    if entry.error is not None and entry.error[0] != "undecodable_audio":
        raise SourceError(*entry.error)
    if verify and entry.sha256 != source_row.get("source_sha256"):
        raise SourceError("sha256_mismatch", f"file sha256 {entry.sha256} != {source_row.get('source_sha256')}")
    if entry.error is not None:
        raise SourceError(*entry.error)
    assert entry.signal is not None
    segment = int(source_row["segment"])
    if segment * SEGMENT_FRAMES >= len(entry.signal):
        raise SourceError(
            "window_past_end", f"segment {segment} starts past the end ({len(entry.signal) / SAMPLE_RATE:.2f} s)"
        )
    return audio.window(entry.signal, segment)[0]


def render_source(
    roots: Roots, source_row: Mapping[str, Any], verify: bool = True, cache: FileCache | None = None
) -> np.ndarray:
    """One source's loudness-normalised 5-s window at 16 kHz (raises SourceError)."""
    win = load_window(roots, source_row, verify, cache)
    return audio.normalize_loudness(win, float(source_row["clip_lufs"]), float(source_row["target_lufs"]))


def render_pair(
    pair_row: Mapping[str, Any],
    roots: Roots,
    verify: bool = True,
    cache: FileCache | None = None,
    peak_ceiling: float = PEAK_CEILING,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A pair's 5-s mix and its facts (`lufs`, `peak`, `mix_gain_db`, per-source gains).

    Every source is tried, so the PairRenderError lists all that fail, not just the first.
    """
    pair_id = str(pair_row.get("pair_id"))
    sources = list(pair_row.get("sources") or [])
    if not sources:
        raise PairRenderError(pair_id, [SourceError("no_sources", "the pair lists no sources")])
    windows, errors = [], []
    for i, src in enumerate(sources):
        try:
            windows.append(render_source(roots, src, verify, cache))
        except SourceError as exc:
            exc.index, exc.collection, exc.path = i, str(src.get("source")), str(src.get("path"))
            errors.append(exc)
    if errors:
        raise PairRenderError(pair_id, errors)
    mixed, gain_db = mix_sources(windows, peak_ceiling)
    lufs = float(audio.loudness_rows(mixed[None], SAMPLE_RATE)[0])  # = audio.loudness, ~2x faster
    info = {
        "lufs": lufs if math.isfinite(lufs) else None,
        "peak": audio.peak(mixed),
        "mix_gain_db": gain_db,
        "source_gains_db": [gain_for(s) for s in sources],
    }
    return mixed, info


def file_key(source_row: Mapping[str, Any]) -> tuple[str, str]:
    return str(source_row.get("source")), str(source_row.get("path"))


def reuse_order(pairs: Sequence[Mapping[str, Any]]) -> list[int]:
    """An order of a shard's pairs in which pairs sharing a file come together.

    Each pair is keyed by its files from most to least used in the shard, so every pair that uses
    the hottest file runs in one stretch, then those sharing the next, ... (ties by name, stable).
    """
    files = [{file_key(s) for s in p.get("sources") or []} for p in pairs]
    uses = Counter(f for fs in files for f in fs)
    return sorted(range(len(pairs)), key=lambda i: (sorted((-uses[f], f) for f in files[i]), i))


def audio_relpath(pair_id: str, fmt: str) -> str:
    """A filesystem-safe, collision-free name that does not depend on sharding: a readable slug plus
    a hash of the exact pair id, under one of 256 folders (by that hash) so no folder grows huge."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", pair_id).strip("._")[:80] or "pair"
    digest = hashlib.sha256(pair_id.encode()).hexdigest()[:12]
    return f"audio/{digest[:2]}/{slug}-{digest}.{fmt}"


def write_audio_file(path: Path, blob: bytes) -> None:
    """The one kind of file a stage writes itself (the product is audio, not a table).

    Temporary name + rename, like the shard tables (no fsync per file: it doubled the cost of a
    mix); the shard's stats marker still comes after every file, so a killed shard is redone.
    """
    atomic_write_bytes(path, blob, fsync=False)


def hf_features() -> Any:
    """The `--format hf` table's `datasets.Features` (FLAC bytes in an Audio column): the release's
    rendered-audio config, so a rendered folder can be published as is."""
    return schema.rendered_features(SAMPLE_RATE)


# --- the stage ----------------------------------------------------------------------------------------
@dataclass
class RenderStage(Stage):
    """Rebuild each pair's audio; output folder = `out` (the CLI's --out)."""

    pairs: str
    sources: dict[str, str]  # collection name -> local root
    out: str
    format: str = RENDER_FORMAT
    verify: bool = True
    pairs_per_shard: int = PAIRS_PER_RENDER_SHARD
    cache_mb: int = RENDER_CACHE_MB

    name = "render"
    resources = Resources(num_cpus=1)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.pairs_per_shard < 1:
            raise ValueError("pairs per shard must be positive")
        self._source: PairSource | None = None
        self._plan: list[Shard] | None = None
        self._cache: FileCache | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_plan": None, "_cache": None}

    @property
    def source(self) -> PairSource:
        if self._source is None:
            self._source = open_pairs(self.pairs)
        return self._source

    def output_dir(self, workdir: Path) -> Path:
        return Path(workdir)

    def plan(self) -> list[Shard]:
        """Shards of `pairs_per_shard` pair references `(part, row, pair_id, duplicate)` in input order."""
        if self._plan is None:
            items: list[tuple[int, int, str, bool]] = []
            seen: set[str] = set()
            for part in range(len(self.source.parts)):
                for row, pid in enumerate(self.source.pair_ids(part)):
                    items.append((part, row, pid, pid in seen))
                    seen.add(pid)
            self._plan = chunk(items, self.pairs_per_shard)
        return self._plan

    def params(self) -> dict[str, Any]:
        return {
            **self.source.identity(),
            "sources": sorted(self.sources),
            "format": self.format,
            "verify": self.verify,
            "sample_rate": SAMPLE_RATE,
            "segment_seconds": SEGMENT_SECONDS,
            "peak_ceiling": PEAK_CEILING,
            "pairs_per_shard": self.pairs_per_shard,
        }

    def setup(self) -> None:
        self._cache = FileCache(self.cache_mb << 20)

    def _rows(self, shard: Shard) -> list[dict[str, Any]]:
        by_part: dict[int, list[int]] = {}
        for part, row, _, _ in shard.items:
            by_part.setdefault(part, []).append(row)
        rows: list[dict[str, Any]] = []
        for part, idx in by_part.items():  # items are in (part, row) order, so this keeps it
            rows.extend(self.source.read(part, idx))
        return rows

    def process(self, shard: Shard, on_item: ItemCallback | None = None) -> ShardResult:
        assert self._cache is not None, "setup() runs first (every executor calls it once per worker)"
        cache_before = Counter(self._cache.stats)
        timer = StatsTimer()
        with timer("read_pairs"):
            pairs = self._rows(shard)
        index: list[dict[str, Any] | None] = [None] * len(pairs)
        data: list[dict[str, Any] | None] = [None] * len(pairs)
        errors, missing = ErrorLog(), []
        counts: Counter[str] = Counter()
        for i in reuse_order(pairs):
            pair, pid = pairs[i], shard.items[i][2]
            if shard.items[i][3]:
                errors.add(pid, "duplicate_pair_id", f"pair {pid!r} appears more than once; rendered once")
                index[i] = {"pair_id": pid, "status": "duplicate_pair_id", "error": "duplicate pair id"}
                if on_item:
                    on_item(1)
                continue
            try:
                with timer("render"):
                    mixed, info = render_pair(pair, self.sources, self.verify, self._cache)
            except PairRenderError as exc:
                for e in exc.errors:
                    errors.add(pid, e.reason, e.describe())
                    missing.append(
                        {"pair_id": pid, "source_index": e.index, "collection": e.collection, "path": e.path}
                        | {"reason": e.reason}
                    )
                index[i] = {"pair_id": pid, "status": exc.reason, "error": str(exc)[:2000]}
            else:
                with timer("encode"):
                    blob = audio.encode(mixed, SAMPLE_RATE, "flac" if self.format == "hf" else self.format)
                facts = {"lufs": info["lufs"], "peak": info["peak"], "mix_gain_db": info["mix_gain_db"]}
                if self.format == "hf":
                    path = audio_relpath(pid, "flac").rsplit("/", 1)[1]  # the file name inside `audio`
                    data[i] = {"pair_id": pid, "audio": {"bytes": blob, "path": path}, **facts}
                else:
                    path = audio_relpath(pid, self.format)
                    with timer("write"):
                        write_audio_file(Path(self.out) / path, blob)
                index[i] = {"pair_id": pid, "path": path, "status": "ok", **facts}
                counts["rendered"] += 1
                counts["mixes_scaled"] += info["mix_gain_db"] < 0
            if on_item:
                on_item(1)
        counts.update({k: v - cache_before[k] for k, v in self._cache.stats.items()})
        tables = {
            "index": schema.table([r for r in index if r is not None], schema.RENDERED),
            "errors": errors.table(),
            "missing": schema.table(missing, schema.MISSING),
        }
        if self.format == "hf":
            feats = hf_features()
            tables["data"] = pa.Table.from_pylist([r for r in data if r is not None], schema=feats.arrow_schema)
        return ShardResult(
            tables=tables,
            counters={k: int(v) for k, v in counts.items()},
            errors=dict(errors.counts),
            items=len(shard.items),
            extra={"phase_seconds": {k: round(v, 4) for k, v in timer.seconds.items()}},
        )

    def finalize(self, workdir: Path) -> dict[str, Any]:
        sd = StageDir(self.output_dir(workdir))
        idx = sd.read_table("index", schema.RENDERED)
        status = Counter(idx.column("status").to_pylist())
        facts: dict[str, Any] = {"rendered": f"{status.pop('ok', 0):,} of {idx.num_rows:,} pairs"}
        facts.update(missing_summary(sd.read_table("missing", schema.MISSING)))
        if self.format == "hf":
            write_dataset_card(sd.path)
            facts["dataset"] = f"{sd.path} (datasets.load_dataset-ready, audio as FLAC bytes)"
        return facts


def check_output_dir(out: Path) -> None:
    """Refuse an --out folder render does not own: --overwrite deletes the whole folder, so it must be
    new, empty, or an earlier render's (never e.g. the work dir holding the pairs, or a collection root)."""
    manifest = StageDir(out).manifest()
    if manifest is None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"--out {out} is not empty and was not made by render; choose a new or empty folder")
        return
    if manifest.get("stage") != RenderStage.name:
        raise ValueError(f"--out {out} holds '{manifest.get('stage')}' output; choose a folder of its own for render")


def missing_summary(missing: pa.Table) -> dict[str, str]:
    """Per collection: how many distinct files could not be used, and why (for the run summary)."""
    per: dict[str, dict[str, set[str]]] = {}
    for row in missing.to_pylist():
        per.setdefault(row["collection"] or "?", {}).setdefault(row["reason"], set()).add(row["path"] or "")
    out = {}
    for coll, reasons in sorted(per.items()):
        files = set().union(*reasons.values())
        detail = ", ".join(f"{r}: {len(p)}" for r, p in sorted(reasons.items()))
        out[f"missing in {coll}"] = f"{len(files):,} file(s) ({detail})"
    return out


def write_dataset_card(folder: Path) -> None:
    """A README.md whose YAML declares the parquet config and features: what load_dataset reads."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from huggingface_hub import DatasetCard, DatasetCardData

    card_data = DatasetCardData(pretty_name="sonify rendered audio", tags=["audio", "sonify"])
    DatasetInfosDict({"default": DatasetInfo(features=hf_features())}).to_dataset_card_data(card_data)
    card_data.configs = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}]
    body = (
        "Audio rendered by `sonify render` from a sonify pairs table: one 5-s, 16 kHz mono FLAC mix per pair "
        "(`audio`), with its loudness (`lufs`), `peak` and the gain applied to avoid clipping (`mix_gain_db`).\n"
    )
    card = DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n# sonify rendered audio\n\n{body}")
    atomic_write_bytes(folder / "README.md", str(card).encode())
