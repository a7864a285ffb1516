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
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from .. import audio, schema
from ..errors import InputError
from ..fileio import find_files, sha256_bytes, sha256_file
from ..labels import LabelFileError, LabelMap, read_labels
from ..pool_files import pool_dir, pool_vectors, update_manifest
from ..settings import (
    AUDIO_EXTENSIONS,
    CLAP_BATCH_SIZE,
    CLAP_SAMPLE_RATE,
    DEFAULT_CLAP,
    POOL_FILES_PER_SHARD,
    SAMPLE_RATE,
    SEGMENT_SECONDS,
    SILENCE_LUFS,
)
from ..shards import StageDir, atomic_output
from ..stage import ErrorLog, ItemCallback, Resources, Shard, ShardResult, Stage, StatsTimer, chunk, model_resources


class PoolInputError(InputError):
    """The run cannot start: a root that does not exist or holds no audio, a bad label file."""


def clip_id(source: str, path: str, segment: int) -> str:
    return f"{source}/{path}#{segment}"


_SEGMENTS_PER_PASS = 64  # 64 x 5 s of 16 kHz float32 = 20 MB of windows, whatever the file's length


def segment_rows(
    mono16k: np.ndarray, source: str, path: str, sha256: str, labels: Sequence[str], silence_lufs: float = SILENCE_LUFS
) -> tuple[list[dict[str, Any]], int]:
    """The pure core: one standardised signal -> its non-silent segment rows, and the silent count."""
    measured: list[tuple[float, int, float]] = []  # (lufs, valid frames, peak) per segment
    total = audio.num_segments(len(mono16k))
    for first in range(0, total, _SEGMENTS_PER_PASS):  # windows measured together, a bounded number at a time
        pairs = [audio.window(mono16k, s) for s in range(first, min(total, first + _SEGMENTS_PER_PASS))]
        stacked = np.stack([w for w, _ in pairs])
        valid = [n for _, n in pairs]
        lufs = audio.loudness_rows(stacked, SAMPLE_RATE)
        measured.extend(zip(lufs.tolist(), valid, np.max(np.abs(stacked), axis=1).tolist(), strict=True))
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


def classify_decode_error(data: bytes, exc: Exception) -> str:
    msg = str(exc).lower()
    if not data:
        return "empty_file"
    if msg.startswith("truncated"):
        return "truncated"
    if "zero-length" in msg:
        return "no_audio_frames"
    # on bytes already read, "does not exist or is not a regular file" is libsndfile giving up on the format
    unknown = ("format not recognised", "unknown format", "not supported", "does not exist or is not a regular file")
    if any(s in msg for s in unknown):
        return "unsupported_format"
    return "corrupt_audio"


def _plan_files(sources: Mapping[str, str], files_per_shard: int) -> list[Shard]:
    items: list[tuple[str, str]] = []
    for name in sorted(sources):
        root = Path(sources[name])
        if not root.is_dir():
            raise PoolInputError(f"collection '{name}': root {root} is not a folder")
        found = find_files(root, AUDIO_EXTENSIONS)
        if not found:
            raise PoolInputError(f"collection '{name}': no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}")
        items.extend((name, rel) for rel in found)
    return chunk(items, files_per_shard)


@dataclass
class PoolSegmentsStage(Stage):
    """Decode, standardise, segment, measure loudness; one row per audible 5-s segment."""

    sources: dict[str, str]  # collection name -> root folder
    label_files: dict[str, list[str]] = field(default_factory=dict)
    files_per_shard: int = POOL_FILES_PER_SHARD
    silence_lufs: float = SILENCE_LUFS

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
            "files_per_shard": self.files_per_shard,
            "sources": sorted(self.sources),
            "label_files": {n: [sha256_file(p) for p in ps] for n, ps in sorted(self.label_files.items())},
        }

    def setup(self) -> None:
        if not self._labels:
            self._load_labels()

    def process(self, shard: Shard, on_item: ItemCallback | None = None) -> ShardResult:
        rows: list[dict[str, Any]] = []
        errors = ErrorLog()
        counts: Counter[str] = Counter()
        timer = StatsTimer()
        frames = 0  # 16 kHz frames decoded: seconds are rounded once per shard, not per (short) file
        for source, rel in shard.items:
            item = f"{source}/{rel}"
            try:
                with timer("read"):
                    data = (Path(self.sources[source]) / rel).read_bytes()
            except OSError as exc:
                errors.add(item, "unreadable_file", str(exc))
            else:
                try:
                    with timer("decode"):
                        decoded, sr = audio.decode(data)
                        mono = audio.standardize(decoded, sr)
                except audio.AudioDecodeError as exc:
                    errors.add(item, classify_decode_error(data, exc), str(exc))
                else:
                    with timer("hash"):
                        digest = sha256_bytes(data)
                    labels = self._labels[source].lookup(rel) if source in self._labels else []
                    with timer("loudness"):
                        new, silent = segment_rows(mono, source, rel, digest, labels, self.silence_lufs)
                    rows.extend(new)
                    counts["files_ok"] += 1
                    counts["segments"] += len(new)
                    counts["silent_segments"] += silent
                    frames += len(mono)
                    counts["labelled_files"] += bool(labels)
            if on_item:
                on_item(1)
        if frames:
            counts["audio_seconds"] = round(frames / SAMPLE_RATE)
        return ShardResult(
            tables={"segments": schema.table(rows, schema.POOL_SEGMENTS), "errors": errors.table()},
            counters=dict(counts),
            errors=dict(errors.counts),
            items=len(shard.items),
            extra={"phase_seconds": {k: round(v, 4) for k, v in timer.seconds.items()}},
        )

    def finalize(self, workdir: Path) -> dict[str, Any]:
        sd = StageDir(self.output_dir(workdir))
        segs = sd.read_table("segments", schema.POOL_SEGMENTS)
        per_source = Counter(segs.column("source").to_pylist())
        update_manifest(
            workdir,
            "segments",
            {
                "count": segs.num_rows,
                "per_source": dict(sorted(per_source.items())),
                "params": self.params(),
                "roots": {k: str(Path(v).resolve()) for k, v in sorted(self.sources.items())},
            },
        )
        return {"segments": f"{segs.num_rows:,} ({', '.join(f'{k}: {v:,}' for k, v in sorted(per_source.items()))})"}


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
        errors = ErrorLog()
        pending: list[tuple[int, np.ndarray]] = []  # clips wait for a full batch: memory stays one batch

        def flush(all_of_it: bool = False) -> None:
            while pending and (all_of_it or len(pending) >= self._encoder.batch_size):
                batch, pending[:] = pending[: self._encoder.batch_size], pending[self._encoder.batch_size :]
                emb[[i for i, _ in batch]] = self._encoder.embed_audio([c for _, c in batch])

        def fail(idxs: list[int], reason: str, detail: str) -> None:
            for i in idxs:
                errors.add(segs[i]["clip_id"], reason, detail)

        for (source, rel), idxs in by_file.items():
            try:
                data = (Path(self.sources[source]) / rel).read_bytes()
            except OSError as exc:
                fail(idxs, "embed_read_failed", str(exc))
                continue
            if sha256_bytes(data) != segs[idxs[0]]["source_sha256"]:
                fail(
                    idxs, "source_changed", "the file changed since its segments were measured: rerun with --overwrite"
                )
                continue
            try:
                mono48 = audio.load_standard(data, CLAP_SAMPLE_RATE)
            except audio.AudioDecodeError as exc:
                fail(idxs, "embed_decode_failed", str(exc))
                continue
            pending.extend((i, audio.window(mono48, segs[i]["segment"], win48)[0]) for i in idxs)
            flush()
            if on_item:
                on_item(1)
        flush(all_of_it=True)
        return ShardResult(
            tables={"errors": errors.table()},
            arrays={"embeddings": emb},
            counters={"embedded_segments": len(segs) - len(errors.rows)},
            errors=dict(errors.counts),
            items=len(shard.items),
            extra={"encoder": self._encoder.identity.as_dict()},
        )

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
