"""`sonify pool`: folders of recordings -> 5-s, 16 kHz mono segments with loudness, checksums,
labels and CLAP audio embeddings (paper 3.3 and A.7).

Two stages share one plan (files in sorted order, `files_per_shard` per shard):

* `PoolSegmentsStage` decodes each file once and writes `pool/segments/` (+ `pool/errors/`).
  This alone is what `render` needs, so `--no-embed` stops here.
* `PoolEmbedStage` adds `pool/clap/embeddings/NNNNN.npy`, row-aligned with segment shard NNNNN,
  and can run later without redoing loudness or checksums.

The embedding matrix row of a segment is its position in the segments table read in shard order
(`pool_files.load_pool` adds it as `row`); it is derived rather than stored so shards stay
independent. Where the pool's files live and how readers load them is `pool_files.py`; the order
the command runs the two stages in is `pipeline.run_pool`.
"""

from __future__ import annotations

import csv
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from .. import audio, schema
from ..error_text import scrub
from ..errors import InputError
from ..fileio import scan_tree, sha256_file, sha256_open_file
from ..labels import LabelFileError, LabelMap, read_labels
from ..pool_files import pool_dir, pool_vectors, update_manifest
from ..settings import (
    AUDIO_EXTENSIONS,
    CLAP_BATCH_SIZE,
    CLAP_SAMPLE_RATE,
    DEFAULT_CLAP,
    MAX_AUDIO_SECONDS,
    POOL_FILES_PER_SHARD,
    SAMPLE_RATE,
    SEGMENT_FRAMES,
    SEGMENT_SECONDS,
    SILENCE_LUFS,
)
from ..shards import StageDir, atomic_output
from ..stage import ItemCallback, Resources, Shard, ShardContext, ShardResult, Stage, chunk, model_resources


class PoolInputError(InputError):
    """The run cannot start: a root that does not exist or holds no audio, a bad label file."""


def clip_id(source: str, path: str, segment: int) -> str:
    return f"{source}/{path}#{segment}"


_SEGMENTS_PER_PASS = 64  # 64 x 5 s of 16 kHz float32 = 20 MB of windows, whatever the file's length
STANDARDISATION = "5-s blocks, mono mean, soxr HQ, 0.1-s margins"  # in the fingerprint: samples follow it


def _blocks_of(signal: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, max(1, len(signal)), SEGMENT_FRAMES):
        yield signal[start : start + SEGMENT_FRAMES]


def segment_rows(
    mono16k: np.ndarray | Iterable[np.ndarray],
    source: str,
    path: str,
    sha256: str,
    labels: Sequence[str],
    silence_lufs: float = SILENCE_LUFS,
) -> tuple[list[dict[str, Any]], int]:
    """The pure core: one standardised signal (an array, or its 5-s blocks as `audio.standard_blocks`
    yields them) -> its non-silent segment rows, and the silent count. Blocks are measured
    `_SEGMENTS_PER_PASS` at a time, so memory does not grow with the file's length."""
    blocks = _blocks_of(mono16k) if isinstance(mono16k, np.ndarray) else iter(mono16k)
    measured: list[tuple[float, int, float]] = []  # (lufs, valid frames, peak) per segment
    while batch := list(itertools.islice(blocks, _SEGMENTS_PER_PASS)):
        pairs = [audio.window(block, 0) for block in batch]
        stacked = np.stack([w for w, _ in pairs])
        lufs = audio.loudness_rows(stacked, SAMPLE_RATE)
        peaks = np.max(np.abs(stacked), axis=1).tolist()
        measured.extend(zip(lufs.tolist(), [n for _, n in pairs], peaks, strict=True))
    rows, silent = [], 0
    for seg, (level, n, pk) in enumerate(measured):
        if not np.isfinite(level) or level < silence_lufs:
            silent += 1
            continue
        rows.append(
            {
                "clip_id": clip_id(source, path, seg),
                "source": source,
                "path": path,
                "segment": seg,
                "num_frames": n,
                "source_sha256": sha256,
                "lufs": level,
                "peak": pk,
                "labels": list(labels),
            }
        )
    return rows, silent


def _timed(blocks: Iterator[np.ndarray], ctx: ShardContext, frames: list[int]) -> Iterator[np.ndarray]:
    """Time the decoding half of a streamed file and count its standardised frames."""
    while True:
        with ctx.phase("decode"):
            block = next(blocks, None)
        if block is None:
            return
        frames[0] += len(block)
        yield block


# Plan items: (collection, path) a file to read; (collection, path, reason, detail) an entry that cannot
# be read (an error row); (collection, "", OTHER_FILES, [[extension, count], ...]) the other entries counted.
OTHER_FILES = "other_files"


def _collection_items(name: str, root: Path) -> list[tuple[Any, ...]]:
    scan = scan_tree(root, AUDIO_EXTENSIONS)
    if not scan.files:
        found = ", ".join(f"{n} {k}" for k, n in sorted(scan.other.items()))
        found += "".join(f", {p[1]}: {p[0]}" for p in scan.problems[:3])
        raise PoolInputError(
            f"collection '{name}': no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}"
            + (f" (found: {found.lstrip(', ')})" if found else "")
        )
    entries: list[tuple[Any, ...]] = [(name, rel) for rel in scan.files]
    entries += [(name, rel, reason, detail) for rel, reason, detail in scan.problems]
    entries.sort(key=lambda item: item[1])
    if scan.other:
        entries.insert(0, (name, "", OTHER_FILES, sorted([k, n] for k, n in scan.other.items())))
    return entries


def _plan_files(sources: Mapping[str, str], files_per_shard: int) -> list[Shard]:
    items: list[tuple[Any, ...]] = []
    for name in sorted(sources):
        root = Path(sources[name])
        if not root.is_dir():
            raise PoolInputError(f"collection '{name}': root {root} is not a folder")
        items.extend(_collection_items(name, root))
    return chunk(items, files_per_shard)


def _skipped_counts(stats: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for st in stats:
        counters = st.get("counters", {})
        total.update({k.removeprefix("skipped "): v for k, v in counters.items() if k.startswith("skipped ")})
    return dict(sorted(total.items()))


@dataclass
class PoolSegmentsStage(Stage):
    """Decode, standardise, segment, measure loudness; one row per audible 5-s segment."""

    sources: dict[str, str]  # collection name -> root folder
    label_files: dict[str, list[str]] = field(default_factory=dict)
    files_per_shard: int = POOL_FILES_PER_SHARD
    silence_lufs: float = SILENCE_LUFS
    max_seconds: float = MAX_AUDIO_SECONDS  # longer files (by their header, or once decoded) are error rows

    name = "pool"
    resources = Resources(num_cpus=1)
    transient = ("_labels", "_plan")  # loaded per worker in setup; the plan is the driver's

    def __post_init__(self) -> None:
        for name in self.sources:
            if not name or "/" in name or "#" in name or "|" in name:
                raise PoolInputError(f"collection name {name!r} must be non-empty without '/', '#' or '|'")
        self._labels: dict[str, LabelMap] = {}
        self._plan: list[Shard] | None = None

    def output_dir(self, workdir: Path) -> Path:
        return pool_dir(workdir)

    def plan(self) -> list[Shard]:
        if self._plan is None:
            self._plan = _plan_files(self.sources, self.files_per_shard)
            self._load_labels()  # a bad label file stops the run here, not later inside every worker
        return self._plan

    def _load_labels(self) -> None:
        self._labels = {}
        for name, paths in self.label_files.items():
            merged = LabelMap()
            for p in paths:
                try:
                    merged.update(read_labels(p))
                except (LabelFileError, KeyError, UnicodeDecodeError, csv.Error) as exc:
                    what = f"missing column {exc}" if isinstance(exc, KeyError) else str(exc)
                    raise PoolInputError(f"collection '{name}': cannot read labels {p}: {what}") from exc
            self._labels[name] = merged

    def params(self) -> dict[str, Any]:
        return {
            "sample_rate": SAMPLE_RATE,
            "segment_seconds": SEGMENT_SECONDS,
            "silence_lufs": self.silence_lufs,
            "max_seconds": self.max_seconds,
            "standardisation": STANDARDISATION,
            "files_per_shard": self.files_per_shard,
            "sources": sorted(self.sources),
            "label_files": {n: [sha256_file(p) for p in ps] for n, ps in sorted(self.label_files.items())},
        }

    def location_roots(self) -> dict[str, Path]:
        return {name: Path(root) for name, root in sorted(self.sources.items())}

    def finalize_params(self) -> dict[str, Any]:
        """The manifest names where the collections are now: moved data refreshes it, no shard is redone."""
        return {"roots": {k: str(Path(v).resolve()) for k, v in sorted(self.sources.items())}}

    def setup(self) -> None:
        if not self._labels:
            self._load_labels()

    def process(self, shard: Shard, on_item: ItemCallback | None = None) -> ShardResult:
        ctx = ShardContext(shard, on_item)
        rows: list[dict[str, Any]] = []
        frames = [0]  # 16 kHz frames decoded: seconds are rounded once per shard, not per (short) file
        for source, rel, *entry in shard.items:
            item = f"{source}/{rel}"
            if entry and entry[0] == OTHER_FILES:
                for ext, n in entry[1]:
                    ctx.count(f"skipped {ext}", n)
                continue
            if entry:  # found by the scan and unreadable: a folder, a dangling link, a FIFO ...
                ctx.error(item, entry[0], entry[1])
            else:
                self._segment_file(source, rel, rows, ctx, frames)
            ctx.advance()
        if frames[0]:
            ctx.count("audio_seconds", round(frames[0] / SAMPLE_RATE))
        return ctx.result({"segments": schema.table(rows, schema.POOL_SEGMENTS)})

    def _segment_file(
        self, source: str, rel: str, rows: list[dict[str, Any]], ctx: ShardContext, frames: list[int]
    ) -> None:
        """One file: hash and decode the same open file, its header checked first, streamed in 5-s blocks."""
        item = f"{source}/{rel}"
        try:
            f = open(Path(self.sources[source]) / rel, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            ctx.error(item, "unreadable_file", exc.strerror or type(exc).__name__)
            return
        with f:
            try:
                with ctx.phase("hash"):
                    digest = sha256_open_file(f)
            except OSError as exc:
                ctx.error(item, "unreadable_file", exc.strerror or type(exc).__name__)
                return
            labels = self._labels[source].lookup(rel) if source in self._labels else []
            decoded = [0]
            seconds = ctx.timer.seconds
            try:
                with audio.open_audio(f, self.max_seconds) as reader:
                    blocks = _timed(audio.standard_blocks(reader, SAMPLE_RATE), ctx, decoded)
                    decode_before = seconds["decode"]
                    with ctx.phase("loudness"):  # decoding runs inside (streamed): its share is taken out below
                        new, silent = segment_rows(blocks, source, rel, digest, labels, self.silence_lufs)
                    seconds["loudness"] -= seconds["decode"] - decode_before
                if not decoded[0]:
                    raise audio.AudioDecodeError("no_audio_frames", "no audio frames at 16 kHz")
            except audio.AudioDecodeError as exc:
                ctx.error(item, exc.reason, scrub(str(exc)))  # a decoder's message may name a temp file or object
                return
            except OSError as exc:
                ctx.error(item, "unreadable_file", exc.strerror or type(exc).__name__)
                return
        rows.extend(new)
        ctx.count("files_ok")
        ctx.count("segments", len(new))
        ctx.count("silent_segments", silent)
        ctx.count("labelled_files", int(bool(labels)))
        frames[0] += decoded[0]

    def finalize(self, workdir: Path) -> dict[str, Any]:
        sd = StageDir(self.output_dir(workdir))
        segs = sd.read_table("segments", schema.POOL_SEGMENTS)
        per_source = Counter(segs.column("source").to_pylist())
        skipped = _skipped_counts(sd.stats())
        update_manifest(
            workdir,
            "segments",
            {
                "count": segs.num_rows,
                "per_source": dict(sorted(per_source.items())),
                "skipped": skipped,  # entries under the roots that are not audio files, by extension
                "params": self.params(),
                **self.finalize_params(),  # "roots": where the collections are now
            },
        )
        facts = {"segments": f"{segs.num_rows:,} ({', '.join(f'{k}: {v:,}' for k, v in sorted(per_source.items()))})"}
        if skipped:
            facts["not audio (skipped)"] = ", ".join(f"{k}: {v:,}" for k, v in skipped.items())
        return facts


@dataclass
class PoolEmbedStage(Stage):
    """CLAP audio embeddings for every pool segment, fed at 48 kHz from the original file."""

    sources: dict[str, str]
    model: str = DEFAULT_CLAP
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = CLAP_BATCH_SIZE
    files_per_shard: int = POOL_FILES_PER_SHARD
    workdir: str = "."
    faiss_index: bool = False  # also write clap/index.faiss (IndexFlatIP) for tools outside sonify

    name = "pool-embed"
    transient = ("_encoder", "_plan")  # the CLAP model, loaded per worker in setup

    @property  # type: ignore[override]
    def resources(self) -> Resources:
        return model_resources(self.device)

    def __post_init__(self) -> None:
        self._encoder: Any = None
        self._plan: list[Shard] | None = None

    def output_dir(self, workdir: Path) -> Path:
        return pool_dir(workdir) / "clap"

    def plan(self) -> list[Shard]:
        if self._plan is None:
            self._plan = _plan_files(self.sources, self.files_per_shard)
        return self._plan

    def params(self) -> dict[str, Any]:
        from ..models.device import pick_device, torch_dtype

        # the resolved precision: fp32 (CPU) and bf16 (GPU) vectors must never share one index
        dtype = str(torch_dtype(self.dtype, pick_device(self.device))).removeprefix("torch.")
        return {
            "model": self.model,
            "dtype": dtype,
            "clap_sample_rate": CLAP_SAMPLE_RATE,
            "segment_seconds": SEGMENT_SECONDS,
        }

    def finalize_params(self) -> dict[str, Any]:
        return {"faiss_index": True} if self.faiss_index else {}

    def setup(self) -> None:
        from ..models.clap import ClapEncoder

        self._encoder = ClapEncoder(self.model, device=self.device, dtype=self.dtype, batch_size=self.batch_size)

    def process(self, shard: Shard, on_item: ItemCallback | None = None) -> ShardResult:
        segments = StageDir(pool_dir(Path(self.workdir)))
        if not segments.is_complete(shard.index):
            raise PoolInputError(f"pool shard {shard.index} is not complete: run the segments stage first")
        segs = pq.read_table(segments.table_path("segments", shard.index)).to_pylist()
        by_file: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, row in enumerate(segs):
            by_file[(row["source"], row["path"])].append(i)
        win48 = int(CLAP_SAMPLE_RATE * SEGMENT_SECONDS)
        emb = np.zeros((len(segs), self._encoder.identity.dim), np.float32)  # failed rows stay zero: never rank high
        ctx = ShardContext(shard, on_item)
        pending: list[tuple[int, np.ndarray]] = []  # clips wait for a full batch: memory stays one batch

        def flush(all_of_it: bool = False) -> None:
            while pending and (all_of_it or len(pending) >= self._encoder.batch_size):
                batch, pending[:] = pending[: self._encoder.batch_size], pending[self._encoder.batch_size :]
                emb[[i for i, _ in batch]] = self._encoder.embed_audio([c for _, c in batch])

        def fail(idxs: list[int], reason: str, detail: str) -> None:
            for i in idxs:
                ctx.error(segs[i]["clip_id"], reason, detail)

        for (source, rel), idxs in by_file.items():
            wanted = {segs[i]["segment"]: i for i in idxs}
            last = max(wanted)
            try:
                with open(Path(self.sources[source]) / rel, "rb") as f:
                    if sha256_open_file(f) != segs[idxs[0]]["source_sha256"]:
                        changed = "the file changed since its segments were measured: rerun with --overwrite"
                        fail(idxs, "source_changed", changed)
                        continue
                    clips: list[tuple[int, np.ndarray]] = []
                    with audio.open_audio(f) as reader:  # streamed: 48 kHz blocks are the segments' windows
                        for seg, block in enumerate(audio.standard_blocks(reader, CLAP_SAMPLE_RATE)):
                            if seg in wanted:
                                clips.append((wanted[seg], audio.window(block, 0, win48)[0]))
                            if seg >= last:
                                break
            except OSError as exc:
                fail(idxs, "embed_read_failed", exc.strerror or type(exc).__name__)
                continue
            except audio.AudioDecodeError as exc:
                fail(idxs, "embed_decode_failed", scrub(str(exc)))
                continue
            pending.extend(clips)
            flush()
            ctx.advance()
        flush(all_of_it=True)
        ctx.count("embedded_segments", len(segs) - len(ctx.errors.rows))
        return ctx.result({}, arrays={"embeddings": emb}, extra={"encoder": self._encoder.identity.as_dict()})

    def finalize(self, workdir: Path) -> dict[str, Any]:
        """Record the vectors in the manifest, streaming over the shard files: nothing is concatenated.

        Retrieval reads the shard files memory-mapped, so no index is needed for exact search; a
        faiss `IndexFlatIP` (`clap/index.faiss`) is written only when asked for (`faiss_index`), fed
        block by block, so the process holds the vectors once (faiss's copy) at most.
        """
        vectors = pool_vectors(workdir)
        index_facts: dict[str, Any] = {"index": None, "index_type": None}
        if self.faiss_index:
            import faiss

            from ..vector_index import IndexSpec, build_index

            with atomic_output(self.output_dir(workdir) / "index.faiss") as tmp:  # readers never see half an index
                faiss.write_index(build_index(vectors, IndexSpec("flat")), str(tmp))
            index_facts = {"index": "clap/index.faiss", "index_type": "IndexFlatIP"}
        identity = StageDir(self.output_dir(workdir)).stats()[0]["encoder"]
        update_manifest(
            workdir,
            "clap",
            {**identity, "count": len(vectors), **index_facts, "params": self.params()},
        )
        return {"embeddings": f"{len(vectors):,} x {vectors.dim} ({identity['model']})"}
