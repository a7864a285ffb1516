"""A pair row -> its soundtrack: the render core, shared by the render stage, the report and the recipe.

A pair row alone is enough (no pool index, no model). For each source: resolve `ROOT/path`
safely, check the file's sha256, decode and standardise the whole file exactly as the pool did
(so `clip_lufs` holds), cut the 5-s window, apply `target_lufs - clip_lufs` dB; then sum, and
scale the whole mix down if it would clip (paper 3.3, A.9).

* `resolve_source` / `load_window`: a source row's checked path and raw window (`SourceError`).
* `render_source` / `render_pair`: one source / one pair from a row and the roots; a pair raises
  `PairRenderError` naming the pair and every failing source.
* `FileCache`: standardised files kept per worker, LRU-bounded in bytes, because at scale a few
  clips serve thousands of pairs; `reuse_order` orders a batch of pairs so that reuse hits it.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import audio, pair_rows
from .error_text import scrub
from .fileio import UnsafePathError, safe_join, sha256_bytes
from .settings import RENDER_CACHE_MB, SAMPLE_RATE, SEGMENT_FRAMES

PEAK_CEILING = 1.0  # full scale: a mix whose peak exceeds it is scaled down as a whole

Roots = Mapping[str, "str | Path"]


# --- errors (bad items: they become error rows, never a stopped run) ----------------------------------
class SourceError(Exception):
    """One source of a pair cannot be rendered; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, message: str, *, index: int = -1, collection: str = "", path: str = ""):
        super().__init__(scrub(message))  # an error row's text: no addresses or temporary names
        self.reason, self.index, self.collection, self.path = reason, index, collection, path

    def describe(self) -> str:
        if self.index < 0:  # the pair row itself, not one of its sources
            return f"{self.reason}: {self}"
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


# --- one source ---------------------------------------------------------------------------------------
def gain_for(source_row: Mapping[str, Any]) -> float:
    """The paper's per-source gain in dB: target loudness minus the window's measured loudness."""
    return float(source_row["target_lufs"]) - float(source_row["clip_lufs"])


def _check_row(source_row: Any) -> dict[str, Any]:
    """The source record checked against the schema and plausible ranges (`pair_rows`): a release's
    columns may carry any type or value (the metadata may come from anyone)."""
    try:
        return pair_rows.check_source(source_row)
    except pair_rows.BadRow as exc:
        raise SourceError(exc.reason, str(exc)) from None


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
    source_row = _check_row(source_row)
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
    source_row = _check_row(source_row)
    win = load_window(roots, source_row, verify, cache)
    return audio.normalize_loudness(win, source_row["clip_lufs"], source_row["target_lufs"])


# --- one pair -----------------------------------------------------------------------------------------
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
    pair_id = str(pair_row.get("pair_id")) if isinstance(pair_row, Mapping) else "?"
    try:
        pair_rows.check_pair(pair_row)
    except pair_rows.BadRow as exc:
        raise PairRenderError(pair_id, [SourceError(exc.reason, str(exc))]) from None
    sources = pair_row["sources"]
    if not sources:
        raise PairRenderError(pair_id, [SourceError("no_sources", "the pair lists no sources")])
    windows, errors = [], []
    for i, src in enumerate(sources):
        try:
            windows.append(render_source(roots, src, verify, cache))
        except SourceError as exc:
            exc.index, exc.collection, exc.path = i, *file_key(src)
            errors.append(exc)
    if errors:
        raise PairRenderError(pair_id, errors)
    mixed, gain_db = audio.mix(windows, peak_ceiling)
    lufs = float(audio.loudness_rows(mixed[None], SAMPLE_RATE)[0])  # = audio.loudness, ~2x faster
    info = {
        "lufs": lufs if math.isfinite(lufs) else None,
        "peak": audio.peak(mixed),
        "mix_gain_db": gain_db,
        "source_gains_db": [gain_for(s) for s in sources],
    }
    return mixed, info


# --- many pairs ---------------------------------------------------------------------------------------
def file_key(source_row: Any) -> tuple[str, str]:
    """The (collection, path) a source reads: what pairs share when they reuse a clip's file
    ("" for a source entry that is not a record: a tampered row is ordered, then refused)."""
    if not isinstance(source_row, Mapping):
        return "", ""
    return str(source_row.get("source") or ""), str(source_row.get("path") or "")


def _source_list(pair_row: Any) -> list[Any]:
    """A row's sources when it has a list of them, else none (ordering never fails on a bad row)."""
    sources = pair_row.get("sources") if isinstance(pair_row, Mapping) else None
    return sources if isinstance(sources, list) else []


def reuse_order(pairs: Sequence[Mapping[str, Any]]) -> list[int]:
    """An order of a batch of pairs in which pairs sharing a file come together.

    Each pair is keyed by its files from most to least used in the batch, so every pair that uses
    the hottest file runs in one stretch, then those sharing the next, ... (ties by name, stable).
    """
    files = [{file_key(s) for s in _source_list(p)} for p in pairs]
    uses = Counter(f for fs in files for f in fs)
    return sorted(range(len(pairs)), key=lambda i: (sorted((-uses[f], f) for f in files[i]), i))
