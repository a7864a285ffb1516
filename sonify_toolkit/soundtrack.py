"""A pair row -> its soundtrack: the render core, shared by the render stage, the report and the recipe.

A pair row alone is enough (no pool index, no model). For each source: resolve `ROOT/path`
safely, check the file's sha256, standardise its 5-s window exactly as the pool did (the same
block of `audio.standard_blocks`, so `clip_lufs` holds, byte for byte, whether the window is read
alone or cut from the whole file), apply `target_lufs - clip_lufs` dB; then sum, and scale the
whole mix down if it would clip (paper 3.3, A.9).

* `resolve_source` / `load_window`: a source row's checked path and raw window (`SourceError`).
* `render_source` / `render_pair`: one source / one pair from a row and the roots; a pair raises
  `PairRenderError` naming the pair and every failing source.
* `mix_pair` + `mix_loudness`: `render_pair` in two steps, so a batch of mixes is measured in one
  vectorised BS.1770 call (`LOUDNESS_BATCH` at a time): one mix at a time, measuring cost about as
  much as building the mix.
* `FileCache`: a file's first uses read only their window; a file used more is decoded whole and
  kept per worker, LRU-bounded in bytes, because at scale a few clips serve thousands of pairs;
  `reuse_order` orders a batch of pairs so that reuse hits it.
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
from .fileio import UnsafePathError, safe_join, sha256_open_file
from .settings import RENDER_CACHE_MB, SAMPLE_RATE, SEGMENT_FRAMES

PEAK_CEILING = 1.0  # full scale: a mix whose peak exceeds it is scaled down as a whole
LOUDNESS_BATCH = 16  # mixes measured per `loudness_rows` call: ~0.6 ms a mix vs ~1.2 ms one by one

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


# --- reading a source's audio: a window alone, or the whole file cached per worker -------------------
@dataclass
class CachedFile:
    """A decoded, standardised file, or one window of it (or why it could not be read), with the
    sha256 of the file's bytes, its length by its header and the input seconds decoded to get it."""

    signal: np.ndarray | None
    sha256: str | None
    error: tuple[str, str] | None = None
    first_segment: int = 0  # `signal` starts at this 5-s segment (a window read holds one segment)
    seconds: float | None = None
    decoded_seconds: float = 0.0

    @property
    def nbytes(self) -> int:
        return 0 if self.signal is None else int(self.signal.nbytes)

    def window(self, segment: int) -> np.ndarray | None:
        """Segment `segment`, zero-padded to 5 s; None when it starts past the end of the file."""
        assert self.signal is not None
        start = (segment - self.first_segment) * SEGMENT_FRAMES
        if start < 0 or start >= len(self.signal):
            return None
        return audio.window(self.signal, segment - self.first_segment)[0]


def _read(path: Path, segment: int | None) -> CachedFile:
    """Open once, hash and decode the same open file (what is verified is exactly what is rendered):
    the whole standardised file, or only what segment `segment`'s block needs (a few seconds of input)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return CachedFile(None, None, ("missing_file", "no such file"))
    except OSError as exc:
        return CachedFile(None, None, ("unreadable_file", exc.strerror or type(exc).__name__))
    digest = None
    with f:
        try:
            digest = sha256_open_file(f)
            with audio.open_audio(f) as reader:
                first = 0 if segment is None else segment
                blocks = list(audio.standard_blocks(reader, SAMPLE_RATE, first, None if segment is None else first + 1))
                rate = reader.header.sample_rate
                decoded = reader.frames_decoded / rate
                seconds = reader.header.seconds
        except OSError as exc:
            return CachedFile(None, digest, ("unreadable_file", exc.strerror or type(exc).__name__))
        except audio.AudioDecodeError as exc:
            return CachedFile(None, digest, ("undecodable_audio", str(exc)))
    if segment is None and not blocks:
        return CachedFile(None, digest, ("undecodable_audio", "no audio frames at 16 kHz"), seconds=seconds)
    signal = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    signal.setflags(write=False)  # shared by every pair that uses the file
    return CachedFile(signal, digest, None, 0 if segment is None else segment, seconds, decoded)


def load_file(path: Path) -> CachedFile:
    """The whole standardised file (streamed in 5-s blocks), with the sha256 of its bytes."""
    return _read(path, None)


def load_file_window(path: Path, segment: int) -> CachedFile:
    """Only segment `segment` of the standardised file, byte-identical to cutting it from `load_file`:
    the same block computed alone (exact seeks for PCM/FLAC; other formats decode from the start to it)."""
    return _read(path, segment)


@dataclass
class FileCache:
    """Per-worker reads of source files, LRU-bounded by `max_bytes` of standardised audio.

    With `expect(pairs)` (the render stage, per shard): a file used once in the shard is read for
    its window alone; a file used more is decoded whole once and kept. Without it (the recipe, the
    report): a file's first uses read their windows, and once those have cost as much decoding as
    the whole file would, it is decoded whole and kept (at most twice the cost of knowing the future).
    A file larger than the cache is always read window by window.
    """

    max_bytes: int = RENDER_CACHE_MB << 20
    entries: OrderedDict[str, CachedFile] = field(default_factory=OrderedDict)
    size: int = 0
    stats: Counter[str] = field(default_factory=Counter)
    paths: dict[tuple[str, str], Path] = field(default_factory=dict)  # checked (root, relpath) -> file
    spent: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # file -> (s decoded, length s)
    uses: Counter[tuple[str, str]] = field(default_factory=Counter)  # file_key -> uses in the current shard

    def expect(self, pairs: Sequence[Any]) -> None:
        """The pairs about to be rendered: how many times each file will be used decides how it is read."""
        self.uses = Counter(
            file_key(s)
            for p in pairs
            if isinstance(p, Mapping) and isinstance(p.get("sources"), list | tuple)
            for s in p["sources"]
            if isinstance(s, Mapping)
        )

    def close(self) -> None:
        """Forget every decoded file (the render stage's teardown: a worker's cache can hold `max_bytes`)."""
        self.entries.clear()
        self.size = 0
        self.paths.clear()
        self.spent.clear()
        self.uses.clear()

    def resolve(self, roots: Roots, source_row: Mapping[str, Any]) -> Path:
        """`resolve_source`, remembered: resolving a path costs more than mixing its window."""
        key = (str(roots.get(source_row.get("source"), "")), str(source_row.get("path")))
        path = self.paths.get(key)
        if path is None:
            path = self.paths[key] = resolve_source(roots, source_row)
        return path

    def get(self, path: Path, segment: int | None = None, uses: int | None = None) -> CachedFile:
        """The whole file (cached), or for `segment` its window or the whole file, whichever costs less
        (`uses`: how many times the file is used in this shard, when known)."""
        key = str(path)
        hit = self.entries.get(key)
        if hit is not None:
            self.entries.move_to_end(key)
            self.stats["cache_hits"] += 1
            return hit
        spent, seconds = self.spent.get(key, (0.0, None))
        too_big = seconds is not None and seconds * SAMPLE_RATE * 4 > self.max_bytes
        if segment is not None and (
            too_big or (uses <= 1 if uses is not None else (seconds is None or spent < seconds))
        ):
            self.stats["windows_decoded"] += 1
            entry = load_file_window(path, segment)
            self.spent[key] = (spent + entry.decoded_seconds, entry.seconds)
            return entry
        self.stats["files_decoded"] += 1
        entry = load_file(path)
        if entry.nbytes > self.max_bytes:  # never cached: later uses read their windows
            self.spent[key] = (0.0, entry.seconds)
            return entry
        self.spent.pop(key, None)
        self.entries[key] = entry
        self.size += entry.nbytes
        while self.size > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.size -= old.nbytes
            self.stats["cache_evictions"] += 1
        return entry


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
    return _checked_window(roots, _check_row(source_row), verify, cache)


def _checked_window(roots: Roots, source_row: Mapping[str, Any], verify: bool, cache: FileCache | None) -> np.ndarray:
    """`load_window` of a row `_check_row` already passed (checking costs as much as cutting the window)."""
    segment = source_row["segment"]
    if cache is None:
        entry = load_file_window(resolve_source(roots, source_row), segment)
    else:
        entry = cache.get(cache.resolve(roots, source_row), segment, cache.uses.get(file_key(source_row)))
    if entry.error is not None and entry.error[0] != "undecodable_audio":
        raise SourceError(*entry.error)
    if verify and entry.sha256 != source_row.get("source_sha256"):
        raise SourceError("sha256_mismatch", f"file sha256 {entry.sha256} != {source_row.get('source_sha256')}")
    if entry.error is not None:
        raise SourceError(*entry.error)
    win = entry.window(segment)
    if win is None:
        length = "" if entry.seconds is None else f" ({entry.seconds:.2f} s)"
        raise SourceError("window_past_end", f"segment {segment} starts past the end{length}")
    return win


def render_source(
    roots: Roots, source_row: Mapping[str, Any], verify: bool = True, cache: FileCache | None = None
) -> np.ndarray:
    """One source's loudness-normalised 5-s window at 16 kHz (raises SourceError)."""
    source_row = _check_row(source_row)
    win = _checked_window(roots, source_row, verify, cache)
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
    mixed, info = mix_pair(pair_row, roots, verify, cache, peak_ceiling)
    return mixed, {"lufs": mix_loudness([mixed])[0], **info}


def mix_pair(
    pair_row: Mapping[str, Any],
    roots: Roots,
    verify: bool = True,
    cache: FileCache | None = None,
    peak_ceiling: float = PEAK_CEILING,
) -> tuple[np.ndarray, dict[str, Any]]:
    """`render_pair` without the mix's loudness (`peak`, `mix_gain_db`, per-source gains): the render
    stage measures its mixes `LOUDNESS_BATCH` at a time with `mix_loudness`."""
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
    info = {"peak": audio.peak(mixed), "mix_gain_db": gain_db, "source_gains_db": [gain_for(s) for s in sources]}
    return mixed, info


def mix_loudness(mixes: Sequence[np.ndarray]) -> list[float | None]:
    """Integrated loudness (LUFS) of each 5-s mix, None for digital silence; one vectorised
    `audio.loudness_rows` call per `LOUDNESS_BATCH` mixes, each row the bits it measures alone."""
    if not mixes:
        return []
    out: list[float | None] = []
    for start in range(0, len(mixes), LOUDNESS_BATCH):
        rows = np.stack(mixes[start : start + LOUDNESS_BATCH])
        out.extend(float(v) if math.isfinite(v) else None for v in audio.loudness_rows(rows, SAMPLE_RATE))
    return out


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
