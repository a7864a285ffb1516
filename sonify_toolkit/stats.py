"""The numbers of a run: one implementation shared by the dataset card, the HTML report and `status`.

A run is read either from a work directory (stage folders with `_stage.json` and `_stats/`) or from
a release folder (`data/*.parquet` + `sonify.json`, which `publish` writes so a release carries the
parameters and error counts of the run that made it). Everything here is pure over those tables.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import schema
from .errors import InputError
from .shards import STAGE_FILE, STATS_DIR, StageDir
from .usage import MOST_USED, usage_figures

RELEASE_MANIFEST = "sonify.json"  # written by `publish` beside the README
DISTRIBUTIONS = ("similarity", "score", "threshold", "clip_lufs", "target_lufs", "rendered_lufs")
SPLITS = ("train", "validation")  # a release's splits, by data file name prefix
BATCH_ROWS = 32_768  # pairs per streamed batch: ~130k sources, tens of MB whatever the run's size
MERGE_ROWS = 1_000_000  # partial value counts kept before they are merged into one table


class RunNotFoundError(InputError, FileNotFoundError):
    """The folder holds no run to read (no pairs, no release data): still a FileNotFoundError for callers."""


class ParquetRows:
    """One table's rows, kept as its parquet files and read lazily (or an in-memory table, for small inputs).

    A million-image run has ~2M pairs and ~5M sources: loading them costs gigabytes, while every figure
    the card, the report and publish need is a count, a per-column array or a handful of rows.
    """

    def __init__(self, schema: pa.Schema, files: Sequence[Path] = (), table: pa.Table | None = None) -> None:
        self.schema = schema
        self.files = tuple(Path(f) for f in files)
        self.table = table
        self._num_rows: int | None = None

    @property
    def num_rows(self) -> int:
        if self._num_rows is None:
            if self.table is not None:
                self._num_rows = self.table.num_rows
            else:
                self._num_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)
        return self._num_rows

    def file_tables(self) -> Iterator[pa.Table]:
        """Each file whole, cast to the schema, in order: exactly the parts that `read()` concatenates."""
        if self.table is not None:
            yield self.table
            return
        for f in self.files:
            yield pq.read_table(f).cast(self.schema)

    def read(self) -> pa.Table:
        """Every row in memory (small runs, tests): the streamed paths never call it."""
        parts = list(self.file_tables())
        return pa.concat_tables(parts) if parts else self.schema.empty_table()

    def batches(self, columns: Sequence[str], batch_rows: int | None = None) -> Iterator[pa.Table]:
        """The named columns in row order, a bounded batch at a time."""
        batch_rows = batch_rows or BATCH_ROWS
        sub = pa.schema([self.schema.field(c) for c in columns])
        if self.table is not None:
            for batch in self.table.select(list(columns)).to_batches(batch_rows):
                yield pa.Table.from_batches([batch]).cast(sub)
            return
        for f in self.files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=list(columns)):
                yield pa.Table.from_batches([batch]).cast(sub)

    def take(self, rows: Sequence[int]) -> pa.Table:
        """The rows at these indices (in the order given), reading only the row groups that hold them."""
        if self.table is not None:
            return self.table.take(pa.array(rows, pa.int64())) if len(rows) else self.schema.empty_table()
        wanted = np.asarray(sorted(set(rows)), dtype=np.int64)
        parts, found, offset = [], [], 0
        for f in self.files:
            pf = pq.ParquetFile(f)
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                hit = wanted[(wanted >= offset) & (wanted < offset + n)]
                if hit.size:
                    parts.append(pf.read_row_group(g).cast(self.schema).take(pa.array(hit - offset)))
                    found += hit.tolist()
                offset += n
        if not parts:
            return self.schema.empty_table()
        where = {row: i for i, row in enumerate(found)}
        return pa.concat_tables(parts).take(pa.array([where[r] for r in rows], pa.int64()))


class CountAccumulator:
    """value -> count over many batches, merged in arrow (a Python dict of millions of clip ids costs GBs).

    Partial counts are merged once they outgrow the merged table (and MERGE_ROWS): memory stays about
    twice the distinct values, and each row is re-merged O(log n) times, never once per batch.
    """

    def __init__(self) -> None:
        self.parts: list[pa.Table] = []
        self.pending = 0  # rows of the partial counts added since the last merge
        self.merged = 0  # rows of the merged table (the distinct values so far)

    def add(self, values: pa.Array | pa.ChunkedArray) -> None:
        counts = pc.value_counts(values)
        self.parts.append(pa.table({"value": counts.field("values"), "count": counts.field("counts")}))
        self.pending += len(counts)
        if self.pending > max(MERGE_ROWS, self.merged):
            self._merge()

    def _merge(self) -> None:
        if len(self.parts) > 1:
            merged = pa.concat_tables(self.parts).group_by("value").aggregate([("count", "sum")])
            self.parts = [pa.table({"value": merged.column("value"), "count": merged.column("count_sum")})]
        self.merged = self.parts[0].num_rows if self.parts else 0
        self.pending = 0

    def table(self) -> pa.Table:
        """Distinct values and their counts (unordered)."""
        self._merge()
        if not self.parts:
            return pa.table({"value": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
        return self.parts[0]

    def as_dict(self) -> dict[Any, int]:
        """{value: count} in value order (nulls last, as None)."""
        t = self.table()
        return _by_value(t.column("value").to_pylist(), t.column("count").to_pylist())

    def most_common(self, n: int) -> list[list[Any]]:
        """The n most counted values, ties by value (as `sorted(..., key=(-count, value))`)."""
        t = self.table().sort_by([("count", "descending"), ("value", "ascending")]).slice(0, n)
        return [list(kv) for kv in zip(t.column("value").to_pylist(), t.column("count").to_pylist(), strict=True)]


class SplitCounter:
    """The per-split figures of a release (pairs, images, sources, pairs per VLM), fed table by table."""

    def __init__(self) -> None:
        self.pairs = 0
        self.sources = 0
        self.images = CountAccumulator()
        self.vlms = CountAccumulator()

    def add(self, pairs: pa.Table) -> None:
        self.pairs += pairs.num_rows
        self.sources += int(pc.sum(pc.list_value_length(pairs.column("sources"))).as_py() or 0)
        self.images.add(pairs.column("image_id"))
        self.vlms.add(pairs.column("vlm"))

    def result(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "images": self.images.table().num_rows,
            "pairs_per_vlm": self.vlms.as_dict(),
            "sources": self.sources,
        }


def _numpy(values: pa.ChunkedArray) -> np.ndarray:
    """A numeric column as numpy, nulls as NaN, read from its buffer (pyarrow's to_numpy imports pandas, ~1 s)."""
    array = values.combine_chunks()
    if array.null_count:
        array = pc.fill_null(array, float("nan"))
    dtype = _NUMPY_TYPES[array.type]
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


_NUMPY_TYPES = {pa.int32(): np.dtype(np.int32), pa.int64(): np.dtype(np.int64),
                pa.float32(): np.dtype(np.float32), pa.float64(): np.dtype(np.float64)}  # fmt: skip


@dataclass
class PairTally:
    """Everything counted in one streamed pass over the pairs (see `tally_pairs`)."""

    pairs: int
    per_pair: np.ndarray  # sources per pair, in pair order
    images: int
    pairs_per_vlm: dict[Any, int]
    sources_per_collection: dict[Any, int]
    concepts: CountAccumulator  # lower-cased, trimmed concept names
    clips: CountAccumulator  # chosen clip ids (nulls dropped)
    image_sources: list[str]
    values: dict[str, np.ndarray]  # DISTRIBUTIONS[:5] of every source, in pair order (NaN for nulls)


def tally_pairs(pairs: ParquetRows) -> PairTally:
    """One pass over the pairs' image_id, image_source, vlm and sources columns, a batch at a time."""
    per_pair: list[np.ndarray] = []
    images, vlms, collections, concepts, clips, image_sources = (CountAccumulator() for _ in range(6))
    values: dict[str, list[np.ndarray]] = {name: [] for name in DISTRIBUTIONS[:5]}
    rows = 0
    for batch in pairs.batches(["image_id", "image_source", "vlm", "sources"]):
        rows += batch.num_rows
        per_pair.append(_numpy(pc.list_value_length(batch.column("sources"))))
        images.add(batch.column("image_id"))
        vlms.add(batch.column("vlm"))
        image_sources.add(pc.drop_null(batch.column("image_source")))
        collections.add(source_column(batch, "source"))
        concepts.add(pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(source_column(batch, "concept"), ""))))
        clips.add(pc.drop_null(source_column(batch, "clip_id")))
        for name in values:
            values[name].append(_numpy(source_column(batch, name)))
    return PairTally(
        pairs=rows,
        per_pair=np.concatenate(per_pair) if per_pair else np.zeros(0, np.int32),
        images=images.table().num_rows,
        pairs_per_vlm=vlms.as_dict(),
        sources_per_collection=collections.as_dict(),
        concepts=concepts,
        clips=clips,
        image_sources=sorted(image_sources.as_dict()),
        values={k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in values.items()},
    )


@dataclass
class RunData:
    """Everything the card, the report and `status` read from one run (the big tables stay on disk)."""

    origin: Path
    kind: str  # "workdir" or "release"
    pairs: ParquetRows | pa.Table
    concepts: ParquetRows | pa.Table | None = None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage dir (relative) -> _stage.json
    pool_manifest: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)  # stage dir -> reason -> count
    rendered: pa.Table | None = None
    rendered_dir: Path | None = None
    splits: dict[str, ParquetRows] = field(default_factory=dict)  # a release's splits, when it has several
    _tally: PairTally | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.pairs, pa.Table):
            self.pairs = ParquetRows(schema.PAIRS, table=self.pairs.cast(schema.PAIRS))
        if isinstance(self.concepts, pa.Table):
            self.concepts = ParquetRows(schema.CONCEPTS, table=self.concepts.cast(schema.CONCEPTS))

    @property
    def smoke_run(self) -> bool:
        return is_smoke_run(self.stages, self.pool_manifest)

    def tally(self) -> PairTally:
        """The pairs' counts, computed once per run (the card, the plots and the report share them)."""
        if self._tally is None:
            self._tally = tally_pairs(self.pairs)
        return self._tally


# --- loading --------------------------------------------------------------------------------------
def find_stage_dirs(workdir: Path, max_depth: int = 3) -> dict[str, StageDir]:
    """Every stage folder under a work directory, keyed by its POSIX path relative to it (sorted).

    Walked level by level to `max_depth`, listing only the folders above that depth: a large run's
    work directory holds millions of audio, image and shard files that a recursive glob would visit.
    """
    workdir = Path(workdir)
    found = []
    level = [workdir]
    for depth in range(max_depth + 1):
        found += [d for d in level if (d / STAGE_FILE).is_file()]
        if depth < max_depth:
            level = [Path(e.path) for d in level for e in _subfolders(d)]
    return {d.relative_to(workdir).as_posix(): StageDir(d) for d in sorted(found)}


def _subfolders(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return [e for e in it if e.is_dir(follow_symlinks=False)]
    except (NotADirectoryError, PermissionError):
        return []


def stage_errors(sd: StageDir) -> dict[str, int]:
    errors: Counter[str] = Counter()
    for stats in sd.stats():
        errors.update(stats.get("errors", {}))
    return dict(sorted(errors.items()))


def stage_files(sd: StageDir, table: str = "") -> list[Path]:
    """The parquet files of a stage table's complete shards, in shard order (what `read_table` concatenates)."""
    return [p for i in sd.complete_shards() if (p := sd.table_path(table, i)).exists()]


def read_rendered(rendered_dir: Path) -> pa.Table:
    """A render output folder's index (complete shards when it is a stage folder, else every file)."""
    rendered_dir = Path(rendered_dir)
    if (rendered_dir / STATS_DIR).is_dir():
        return StageDir(rendered_dir).read_table("index", schema.RENDERED)
    files = sorted((rendered_dir / "index").glob("*.parquet"))
    if not files:
        raise RunNotFoundError(f"no rendered index (index/*.parquet) in {rendered_dir}")
    return pa.concat_tables([pq.read_table(f).cast(schema.RENDERED) for f in files])


def is_release(path: Path) -> bool:
    return (Path(path) / "data").is_dir() and not (Path(path) / "pairs").is_dir()


def load_run(path: str | Path, rendered: str | Path | None = None) -> RunData:
    """A work directory or a release folder, with its rendered audio index when there is one."""
    path = Path(path)
    if not path.is_dir():
        raise RunNotFoundError(f"{path} is not a folder (expected a work directory or a release)")
    run = _load_release(path) if is_release(path) else _load_workdir(path)
    if rendered is None and run.kind == "workdir" and (path / "render" / "index").is_dir():
        rendered = path / "render"
    if rendered is not None:
        run.rendered_dir = Path(rendered)
        run.rendered = read_rendered(Path(rendered))
        run.errors.setdefault("render", {})
        if not run.errors["render"]:
            bad = Counter(s for s in run.rendered.column("status").to_pylist() if s != "ok")
            run.errors["render"] = dict(sorted(bad.items()))
    return run


def _load_workdir(workdir: Path) -> RunData:
    stage_dirs = find_stage_dirs(workdir)
    pairs_dir = StageDir(workdir / "pairs")
    if pairs_dir.manifest() is None:
        raise RunNotFoundError(f"no pairs in {workdir}/pairs: run `sonify retrieve` first")
    concept_files = [f for rel, sd in stage_dirs.items() if rel.startswith("concepts/") for f in stage_files(sd)]
    has_concepts = any(rel.startswith("concepts/") for rel in stage_dirs)
    return RunData(
        origin=workdir,
        kind="workdir",
        pairs=ParquetRows(schema.PAIRS, stage_files(pairs_dir)),
        concepts=ParquetRows(schema.CONCEPTS, concept_files) if has_concepts else None,
        stages={rel: sd.manifest() or {} for rel, sd in stage_dirs.items()},
        pool_manifest=read_pool_manifest(workdir),
        errors={rel: stage_errors(sd) for rel, sd in stage_dirs.items()},
    )


def read_pool_manifest(workdir: Path) -> dict[str, Any]:
    """A work directory's `pool/manifest.json` ({} before a pool stage has finished)."""
    path = Path(workdir) / "pool" / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def release_split(file: Path) -> str:
    """The split a release data file belongs to (`validation-00000-of-00001.parquet` -> validation)."""
    prefix = file.name.split("-", 1)[0]
    return prefix if prefix in SPLITS else "train"


def _load_release(release: Path) -> RunData:
    files = sorted((release / "data").glob("*.parquet"))
    if not files:
        raise RunNotFoundError(f"no data/*.parquet in release {release}")
    meta_path = release / RELEASE_MANIFEST
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    by_split: dict[str, list[Path]] = {}
    for f in files:
        by_split.setdefault(release_split(f), []).append(f)
    return RunData(
        origin=release,
        kind="release",
        pairs=ParquetRows(schema.PAIRS, files),
        stages=meta.get("stages", {}),
        pool_manifest=meta.get("pool_manifest", {}),
        errors=meta.get("errors", {}),
        splits={k: ParquetRows(schema.PAIRS, v) for k, v in by_split.items()} if len(by_split) > 1 else {},
    )


def iter_concepts(run: RunData, columns: Sequence[str]) -> Iterator[pa.Table]:
    """The concepts tables' columns a batch at a time (nothing when the run has no concepts)."""
    if isinstance(run.concepts, ParquetRows):
        yield from run.concepts.batches(columns)


# --- parameters -----------------------------------------------------------------------------------
def is_smoke_run(stages: Mapping[str, Mapping[str, Any]], pool_manifest: Mapping[str, Any]) -> bool:
    """True when any manifest says the run used tiny random models (`"smoke_run": true`)."""

    def walk(obj: Any) -> bool:
        if isinstance(obj, Mapping):
            return bool(obj.get("smoke_run")) or any(walk(v) for v in obj.values())
        if isinstance(obj, list):
            return any(walk(v) for v in obj)
        return False

    return walk(dict(stages)) or walk(dict(pool_manifest))


def find_param(stages: Mapping[str, Mapping[str, Any]], key: str) -> dict[str, Any]:
    """`{stage dir: value}` of parameter `key` in every stage that records it."""
    return {rel: manifest["params"][key] for rel, manifest in stages.items() if key in manifest.get("params", {})}


def key_parameters(run: RunData) -> dict[str, Any]:
    """The parameters a reader looks for first (VLMs, prompt, CLAP, top-k, LUFS range, seed).

    Only what the manifests record is shown; nothing is filled in from today's defaults.
    """
    clap = run.pool_manifest.get("clap", {})
    stages = run.stages
    concept_stages = {k: v for k, v in stages.items() if k.startswith("concepts/")}
    vlms = find_param(concept_stages, "vlm")
    out: dict[str, Any] = {
        # a release published without its extract manifests still names its VLMs in the pairs
        "VLMs": sorted({str(v) for v in vlms.values()}) or sorted(str(v) for v in run.tally().pairs_per_vlm),
        "prompt": _one(find_param(concept_stages, "prompt")),
        "CLAP checkpoint": (
            " @ ".join(str(clap[k]) for k in ("model", "revision") if clap.get(k))
            if clap.get("model")
            else _one(find_param(stages, "clap"))
        ),
        "top-k": _one(find_param(stages, "top_k")),
        "LUFS range": _lufs_range(stages),
        "seed": _one(find_param(stages, "seed")),
    }
    return {k: v for k, v in out.items() if v not in (None, [], "")}


def _one(values: Mapping[str, Any]) -> Any:
    distinct = {json.dumps(v, sort_keys=True, default=str): v for v in values.values()}
    if not distinct:
        return None
    return next(iter(distinct.values())) if len(distinct) == 1 else dict(values)


def _lufs_range(stages: Mapping[str, Mapping[str, Any]]) -> Any:
    lo, hi = _one(find_param(stages, "lufs_min")), _one(find_param(stages, "lufs_max"))
    return None if lo is None and hi is None else f"{lo} .. {hi} LUFS"


def flat_params(stages: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(stage dir, parameter, value as JSON) for every recorded parameter: the card's full listing."""
    rows = []
    for rel in sorted(stages):
        manifest = stages[rel]
        for key, value in sorted(manifest.get("params", {}).items()):
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            rows.append((rel, key, text))
    return rows


# --- the numbers ------------------------------------------------------------------------------------
# Counting goes through arrow (value_counts, count_distinct) on the chunked columns: a run of 2M pairs
# has ~8M sources, and a Python object per source would cost gigabytes for a few small dicts.
def source_column(pairs: pa.Table, name: str) -> pa.ChunkedArray:
    """One field of every source of every pair, in pair order (no copy of the other fields)."""
    flat = pc.list_flatten(pairs.column("sources"))
    if flat.num_chunks == 0:
        return pa.chunked_array([], type=schema.PAIR_SOURCE.field(name).type)
    return pc.struct_field(flat, name)


def value_counts(values: pa.ChunkedArray | pa.Array) -> dict[Any, int]:
    """{value: count} in value order (nulls included as None)."""
    counts = pc.value_counts(values)
    return _by_value(counts.field("values").to_pylist(), counts.field("counts").to_pylist())


def _by_value(values: list[Any], counts: list[int]) -> dict[Any, int]:
    """{value: count} sorted by value, None last."""
    pairs = zip(values, counts, strict=True)
    return dict(sorted(pairs, key=lambda kv: (kv[0] is None, "" if kv[0] is None else kv[0])))


def iter_distributions(run: RunData) -> Iterator[tuple[str, np.ndarray]]:
    """The value arrays behind every histogram (finite values, float64), one at a time: at 2M pairs each
    is ~45 MB, and a caller that summarises or plots them in turn never holds all six."""
    for name, values in run.tally().values.items():
        yield name, _finite(values)
    if run.rendered is not None:
        ok = run.rendered.filter(pc.equal(run.rendered.column("status"), "ok"))
        yield "rendered_lufs", _finite(ok.column("lufs").to_numpy())
    else:
        yield "rendered_lufs", np.zeros(0)


def distributions(run: RunData) -> dict[str, np.ndarray]:
    """Every distribution at once (small runs, tests); `iter_distributions` streams them."""
    return dict(iter_distributions(run))


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[np.isfinite(x)]


def summary(x: np.ndarray) -> dict[str, float] | None:
    if x.size == 0:
        return None
    q = np.percentile(x, [0, 5, 50, 95, 100])
    return {
        "min": float(q[0]),
        "p5": float(q[1]),
        "median": float(q[2]),
        "mean": float(x.mean()),
        "p95": float(q[3]),
        "max": float(q[4]),
    }


def concept_counts(pairs: pa.Table) -> Counter[str]:
    """Sources per concept; case and surrounding space do not make a new concept."""
    names = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(source_column(pairs, "concept"), "")))
    return Counter(value_counts(names))


def clip_counts(pairs: pa.Table) -> Counter[str]:
    """Uses per chosen clip (a multiset of clip ids, one entry per distinct clip)."""
    return Counter(value_counts(pc.drop_null(source_column(pairs, "clip_id"))))


def pool_size(pool_manifest: Mapping[str, Any]) -> int | None:
    segs = pool_manifest.get("segments", {})
    return int(segs["count"]) if "count" in segs else None


def counted_clip_usage(clips: CountAccumulator, pool_size: int | None = None) -> dict[str, Any]:
    """`usage.clip_usage` of arrow-counted clips: the same figures without a Python dict of every clip id."""
    counts = np.asarray(clips.table().column("count"), dtype=np.int64)
    return usage_figures(counts, clips.most_common(MOST_USED), pool_size)


def concept_tally(run: RunData) -> dict[str, Any]:
    """What the VLMs answered: images described, responses, kept, dropped by reason (streamed)."""
    images, reasons = CountAccumulator(), CountAccumulator()
    responses = kept = 0
    for batch in iter_concepts(run, ["image_id", "keep", "drop_reason"]):
        keep = pc.fill_null(batch.column("keep"), False)
        responses += batch.num_rows
        kept += int(pc.sum(keep).as_py() or 0)
        images.add(batch.column("image_id"))
        reasons.add(pc.fill_null(pc.filter(batch.column("drop_reason"), pc.invert(keep)), "unknown"))
    return {
        "images_described": images.table().num_rows,
        "vlm_responses": responses,
        "kept": kept,
        "dropped_by_reason": reasons.as_dict(),
    }


def image_sources(run: RunData) -> list[str]:
    """The distinct named image sources of the pairs (sorted)."""
    return run.tally().image_sources


def compute_stats(run: RunData, top: int = 30) -> dict[str, Any]:
    """Every figure the card and the report show, JSON-able, from one streamed pass over the pairs."""
    tally = run.tally()
    per_pair = tally.per_pair
    counts: dict[str, Any] = {
        "pairs": tally.pairs,
        "images": tally.images,
        "pairs_per_vlm": tally.pairs_per_vlm,
        "sources": int(per_pair.sum()),
        "distinct_concepts": tally.concepts.table().num_rows,
        "sources_per_collection": tally.sources_per_collection,
    }
    if run.concepts is not None:
        counts.update(concept_tally(run))
    if pool_size(run.pool_manifest) is not None:
        counts["pool_segments"] = pool_size(run.pool_manifest)
        counts["pool_per_collection"] = run.pool_manifest.get("segments", {}).get("per_source", {})
    if run.rendered is not None:
        counts["rendered_by_status"] = value_counts(run.rendered.column("status"))
        gains = run.rendered.column("mix_gain_db").to_numpy()
        counts["rendered_mixes_scaled_down"] = int(np.sum(np.nan_to_num(gains) < 0))
    lengths, freq = np.unique(per_pair, return_counts=True)
    out = {
        "smoke_run": run.smoke_run,
        "kind": run.kind,
        "counts": counts,
        "concepts_per_pair": {
            "histogram": {str(int(k)): int(n) for k, n in zip(lengths, freq, strict=True)},
            "mean": float(per_pair.mean()) if per_pair.size else 0.0,
        },
        "top_concepts": tally.concepts.most_common(top),
        "clip_usage": counted_clip_usage(tally.clips, pool_size(run.pool_manifest)),
        "distributions": {k: summary(v) for k, v in iter_distributions(run)},
        "errors": {k: v for k, v in sorted(run.errors.items()) if v},
        "key_parameters": key_parameters(run),
    }
    if run.splits:
        out["splits"] = {name: split_stats(rows) for name, rows in sorted(run.splits.items())}
    return out


def split_stats(rows: ParquetRows) -> dict[str, Any]:
    """Pairs, images, sources and pairs per VLM of one split (streamed)."""
    counter = SplitCounter()
    for batch in rows.batches(["image_id", "vlm", "sources"]):
        counter.add(batch)
    return counter.result()


def reuse_counts(pairs: RunData | pa.Table) -> np.ndarray:
    """Uses per distinct clip (for the reuse histogram)."""
    if isinstance(pairs, RunData):
        return np.asarray(pairs.tally().clips.table().column("count"), dtype=np.int64)
    return np.asarray(pc.value_counts(pc.drop_null(source_column(pairs, "clip_id"))).field("counts"), dtype=np.int64)


# The Hub's `size_categories` values (huggingface_hub's DatasetCardData docs, datasets' size_categories.json):
# (exclusive upper bound, label), one decade each from 1K to 1T; "n>1T" above.
SIZE_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)


def size_category(n: int) -> str:
    """The Hub's `size_categories` bucket for n rows (a count on a bound goes to the bucket above it)."""
    for bound, label in SIZE_CATEGORIES:
        if n < bound:
            return label
    return "n>1T"
