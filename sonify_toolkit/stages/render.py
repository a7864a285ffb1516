"""`sonify render`: pair rows + local copies of the sound collections -> the pairs' soundtracks.

The stage around `soundtrack` (which turns one pair row into its mix): plan over pair ids in shards
of `pairs_per_shard`, one `FileCache` per worker, a shard's pairs in `reuse_order`, then encode and
write. Bad pairs become error rows plus one `missing/` row per unusable source; a row that does not
conform to the pairs schema (`pair_rows`) is an error row too, named by its place when its id is unusable.

Output folder (`--out DIR`): `audio/XX/<pair>-<hash>.flac` (or `.wav`), `index/NNNNN.parquet`
(schema.RENDERED), `errors/`, `missing/` (one row per unusable source, for the per-collection
summary); or, with `--format hf`, `data/NNNNN.parquet` with an `Audio` column of FLAC bytes and a
README.md whose YAML declares the config and features, so `datasets.load_dataset(DIR)` loads it.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .. import audio, schema
from ..error_text import MAX_DETAIL, scrub
from ..errors import InputError
from ..pair_rows import row_label
from ..pair_source import PairSource, open_pairs
from ..settings import (
    PAIRS_PER_RENDER_SHARD,
    RENDER_CACHE_MB,
    RENDER_FORMAT,
    RENDER_FORMATS,
    SAMPLE_RATE,
    SEGMENT_SECONDS,
)
from ..shards import StageDir, atomic_write_bytes
from ..soundtrack import LOUDNESS_BATCH, PEAK_CEILING, FileCache, PairRenderError, mix_loudness, mix_pair, reuse_order
from ..stage import ItemCallback, Resources, Shard, ShardContext, ShardResult, Stage, chunk


def audio_relpath(pair_id: str, fmt: str) -> str:
    """A filesystem-safe, collision-free name that does not depend on sharding: a readable slug plus
    a hash of the exact pair id, under one of 256 folders (by that hash) so no folder grows huge."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", pair_id).strip("._")[:80] or "pair"
    digest = hashlib.sha256(pair_id.encode()).hexdigest()[:12]
    return f"audio/{digest[:2]}/{slug}-{digest}.{fmt}"


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
    # per worker, never pickled: the file cache (built in setup, closed by Stage.teardown) and the driver's plan
    transient = ("_plan", "_cache", "_folders")

    def __post_init__(self) -> None:
        if self.format not in RENDER_FORMATS:
            raise InputError(f"--format must be one of {', '.join(RENDER_FORMATS)}, got {self.format!r}")
        if self.pairs_per_shard < 1:
            raise InputError("pairs per shard must be positive")
        self._source: PairSource | None = None
        self._plan: list[Shard] | None = None
        self._cache: FileCache | None = None
        self._folders: set[Path] = set()  # audio folders this worker has made

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
                for row, raw_id in enumerate(self.source.pair_ids(part)):
                    pid = row_label(raw_id, part, row)  # a null or non-string id still names its error row
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
        self._folders = set()

    def _rows(self, shard: Shard) -> list[dict[str, Any]]:
        by_part: dict[int, list[int]] = {}
        for part, row, _, _ in shard.items:
            by_part.setdefault(part, []).append(row)
        rows: list[dict[str, Any]] = []
        for part, idx in by_part.items():  # items are in (part, row) order, so this keeps it
            rows.extend(self.source.read(part, idx))
        return rows

    def process(self, shard: Shard, on_item: ItemCallback | None = None) -> ShardResult:
        """Mix the shard's pairs in `reuse_order`, measure the mixes `LOUDNESS_BATCH` at a time, then
        encode and write each; rows go back in input order whatever the work order."""
        assert self._cache is not None, "setup() runs first (every executor calls it once per worker)"
        ctx = ShardContext(shard, on_item)
        cache_before = Counter(self._cache.stats)
        with ctx.phase("read_pairs"):
            pairs = self._rows(shard)
        out = _ShardRows(len(pairs))
        self._cache.expect(pairs)  # a file used once in the shard is read for its window alone
        order = reuse_order(pairs)
        for start in range(0, len(order), LOUDNESS_BATCH):
            mixed = [m for i in order[start : start + LOUDNESS_BATCH] if (m := self._mix(ctx, shard, pairs, i, out))]
            with ctx.phase("loudness"):
                levels = mix_loudness([m for _, m, _ in mixed])
            for (i, m, info), lufs in zip(mixed, levels, strict=True):
                self._deliver(ctx, shard.items[i][2], i, m, {"lufs": lufs, **info}, out)
        for name, value in self._cache.stats.items():
            ctx.count(name, value - cache_before[name])
        tables = {
            "index": schema.table([r for r in out.index if r is not None], schema.RENDERED),
            "missing": schema.table(out.missing, schema.MISSING),
        }
        if self.format == "hf":
            feats = schema.rendered_features(SAMPLE_RATE)
            tables["data"] = pa.Table.from_pylist([r for r in out.data if r is not None], schema=feats.arrow_schema)
        return ctx.result(tables)

    def _mix(
        self, ctx: ShardContext, shard: Shard, pairs: list[dict[str, Any]], i: int, out: _ShardRows
    ) -> tuple[int, np.ndarray, dict[str, Any]] | None:
        """Pair `i`'s mix, or None with its error rows recorded (a duplicate id, an unusable source)."""
        pid = shard.items[i][2]
        if shard.items[i][3]:
            ctx.error(pid, "duplicate_pair_id", f"pair {pid!r} appears more than once; rendered once")
            out.index[i] = {"pair_id": pid, "status": "duplicate_pair_id", "error": "duplicate pair id"}
            ctx.advance()
            return None
        try:
            with ctx.phase("render"):
                mixed, info = mix_pair(pairs[i], self.sources, self.verify, self._cache)
        except PairRenderError as exc:  # the row's content, never the run: an error row, the rest renders
            for e in exc.errors:
                ctx.error(pid, e.reason, e.describe())
                if e.index >= 0:  # a source that could not be used (not a malformed pair row)
                    out.missing.append(
                        {"pair_id": pid, "source_index": e.index, "collection": e.collection, "path": e.path}
                        | {"reason": e.reason}
                    )
            out.index[i] = {"pair_id": pid, "status": exc.reason, "error": scrub(str(exc))[:MAX_DETAIL]}
            ctx.advance()
            return None
        return i, mixed, info

    def _deliver(
        self, ctx: ShardContext, pid: str, i: int, mixed: np.ndarray, info: dict[str, Any], out: _ShardRows
    ) -> None:
        """Encode pair `i`'s mix and write it (a file, or a row of the hf data table), then its index row."""
        with ctx.phase("encode"):
            blob = audio.encode(mixed, SAMPLE_RATE, "flac" if self.format == "hf" else self.format)
        facts = {"lufs": info["lufs"], "peak": info["peak"], "mix_gain_db": info["mix_gain_db"]}
        if self.format == "hf":
            path = audio_relpath(pid, "flac").rsplit("/", 1)[1]  # the file name inside `audio`
            out.data[i] = {"pair_id": pid, "audio": {"bytes": blob, "path": path}, **facts}
        else:
            path = audio_relpath(pid, self.format)
            with ctx.phase("write"):
                self._write_audio(Path(self.out) / path, blob)
        out.index[i] = {"pair_id": pid, "path": path, "status": "ok", **facts}
        ctx.count("rendered")
        ctx.count("mixes_scaled", int(info["mix_gain_db"] < 0))
        ctx.advance()

    def _write_audio(self, path: Path, blob: bytes) -> None:
        """`atomic_write_bytes` for many small files: a temporary name renamed into place (never half a file
        under the final name), no fsync (the shard marker comes later; it doubled a mix's cost), each folder
        made once per worker and one `os.write` instead of a buffered file: syscalls cost here."""
        folder = path.parent
        if folder not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)
        tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileNotFoundError:  # the folder went away under us: make it again (the fingerprint check is later)
            self._folders.discard(folder)
            atomic_write_bytes(path, blob, fsync=False)
            return
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, path)

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


class _ShardRows:
    """A shard's output rows by input position (work runs in `reuse_order`), and its `missing/` rows."""

    def __init__(self, n: int):
        self.index: list[dict[str, Any] | None] = [None] * n
        self.data: list[dict[str, Any] | None] = [None] * n
        self.missing: list[dict[str, Any]] = []


def check_output_dir(out: Path) -> None:
    """Refuse an --out folder render does not own: --overwrite deletes the whole folder, so it must be
    new, empty, or an earlier render's (never e.g. the work dir holding the pairs, or a collection root)."""
    manifest = StageDir(out).manifest()
    if manifest is None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"--out {out} is not empty and was not made by render; choose a new or empty folder")
        return
    if manifest.get("stage") != RenderStage.name:
        raise InputError(f"--out {out} holds '{manifest.get('stage')}' output; choose a folder of its own for render")


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
    features = schema.rendered_features(SAMPLE_RATE)  # the release's rendered-audio config: publishable as is
    DatasetInfosDict({"default": DatasetInfo(features=features)}).to_dataset_card_data(card_data)
    card_data.configs = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}]
    body = (
        "Audio rendered by `sonify render` from a sonify pairs table: one 5-s, 16 kHz mono FLAC mix per pair "
        "(`audio`), with its loudness (`lufs`), `peak` and the gain applied to avoid clipping (`mix_gain_db`).\n"
    )
    card = DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n# sonify rendered audio\n\n{body}")
    atomic_write_bytes(folder / "README.md", str(card).encode())
