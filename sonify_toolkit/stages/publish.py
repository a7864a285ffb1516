"""`sonify publish`: a work directory -> a Hugging Face dataset repository folder, optionally uploaded.

The release is the pairs table as `data/train-*.parquet` shards (pair order kept), a README.md dataset
card (YAML metadata + the run's parameters and statistics), the figures under `plots/`, LICENSE.md and
`sonify.json` (stage manifests, pool manifest, error counts, statistics) so that `sonify report` works
on a release as on a work directory. With `--rendered DIR` the mixes become a second config.

Publishing is a few streamed passes over finished tables rather than a sharded stage: nothing in it is
slow enough to need resume, and the upload itself is resumable (huggingface_hub's large-folder upload).
The pairs are never all in memory: statistics come from `stats.tally_pairs`, shards are sized from a
pass over the pairs files and written a row group at a time, byte-identical to writing the loaded table.

`--holdout FRACTION` splits by image: an image is in `validation` when the first 8 bytes of
sha256(image id), read as a fraction of 2^64, fall below FRACTION. Every VLM's pair of an image, every
rerun and every shard count put it in the same split; the release then has data/train-* and
data/validation-* (and the same split of rendered/).
Every file is a pure function of the work directory, so republishing unchanged data gives the same
bytes and a resumed upload skips it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard
from huggingface_hub.utils import filter_repo_objects

from dataset_card import public_pool_manifest, render_card, render_license

from .. import schema
from ..errors import InputError
from ..fileio import safe_join
from ..plots import write_plots
from ..release_paths import public_image_source, public_metadata, release_roots
from ..settings import SAMPLE_RATE
from ..shards import StageDir, atomic_write_bytes, atomic_write_json, atomic_write_table
from ..stats import RELEASE_MANIFEST, ParquetRows, SplitCounter, compute_stats, load_run

MAX_SHARD_BYTES = 500 * 1000**2  # the Hub's recommendation for parquet shards
UPLOAD_IGNORE = [".cache/**", ".git/**", "**/.git/**", ".gitattributes.tmp"]
RELEASE_FOLDERS = ("data", "rendered", "plots")
ROW_GROUP_ROWS = 10_000
HOLDOUT_SPLIT = "validation"


class PublishError(InputError):
    """The release cannot be made: unfinished pairs, an output folder that is not a release, ..."""


@dataclass
class ReleaseSummary:
    folder: Path
    rows: int
    data_files: list[str]
    rendered_rows: int = 0
    smoke_run: bool = False
    files: list[tuple[str, int]] = field(default_factory=list)  # what an upload sends: (path, bytes)


def shard_rows(table: pa.Table, max_bytes: int) -> int:
    """Rows per shard so that no shard exceeds `max_bytes` (estimated uncompressed: parquet only shrinks it)."""
    if table.num_rows == 0:
        return 1
    per_row = max(1, table.nbytes // table.num_rows)
    return max(1, max_bytes // per_row)


def write_parquet_shards(table: pa.Table, folder: Path, max_bytes: int = MAX_SHARD_BYTES) -> list[Path]:
    """`folder/train-0000i-of-0000n.parquet`, rows in order, each under `max_bytes` (an in-memory table)."""
    step = shard_rows(table, max_bytes)
    n = max(1, -(-table.num_rows // step))
    return [_write_shard(table.slice(i * step, step), folder, i, n) for i in range(n)]


def _write_shard(
    part: pa.Table, folder: Path, i: int, n: int, row_group_size: int | None = None, prefix: str = "train"
) -> Path:
    path = folder / f"{prefix}-{i:05d}-of-{n:05d}.parquet"
    row_group_size = ROW_GROUP_ROWS if row_group_size is None else row_group_size
    atomic_write_table(path, part, row_group_size=min(row_group_size, max(1, part.num_rows)))
    return path


class ShardStream:
    """Tables in, `prefix-0000i-of-0000n.parquet` out, holding one row group at a time.

    Each shard has `step` rows cut into row groups of `ROW_GROUP_ROWS`, exactly as `write_parquet_shards`
    cuts the whole table, so the files are byte-identical to it when fed the same chunks in order.
    """

    def __init__(self, folder: Path, prefix: str, total_rows: int, step: int, schema_: pa.Schema) -> None:
        self.folder, self.prefix, self.total, self.step, self.schema = folder, prefix, total_rows, step, schema_
        self.n = max(1, -(-total_rows // step))
        self.paths: list[Path] = []
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.written = 0  # rows written so far (all shards)
        self.writer: pq.ParquetWriter | None = None
        self.tmp: Path | None = None

    def _shard_rows(self, i: int) -> int:
        return min(self.step, self.total - i * self.step)

    def _group_rows(self) -> int:
        """Rows of the row group being filled: ROW_GROUP_ROWS, or what is left of its shard."""
        i = self.written // self.step
        shard = self._shard_rows(i)
        row_group = min(ROW_GROUP_ROWS, max(1, shard))
        return min(row_group, shard - self.written % self.step)

    def add(self, table: pa.Table) -> None:
        offset = 0
        while offset < table.num_rows:
            take = min(self._group_rows() - self.pending_rows, table.num_rows - offset)
            self.pending.append(table.slice(offset, take))
            self.pending_rows += take
            offset += take
            if self.pending_rows == self._group_rows():
                self._flush()

    def _flush(self) -> None:
        i = self.written // self.step
        if self.writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.tmp = self.folder / f".{self.prefix}-{i:05d}.{uuid.uuid4().hex}.tmp"
            self.writer = pq.ParquetWriter(str(self.tmp), self.schema, compression="zstd")
        group = pa.concat_tables(self.pending) if self.pending else self.schema.empty_table()
        self.writer.write_table(group, row_group_size=min(ROW_GROUP_ROWS, max(1, self._shard_rows(i))))
        self.written += self.pending_rows
        self.pending, self.pending_rows = [], 0
        if self.written == min(self.total, (i + 1) * self.step):
            self._close_shard(i)

    def _close_shard(self, i: int) -> None:
        assert self.writer is not None and self.tmp is not None
        self.writer.close()
        path = self.folder / f"{self.prefix}-{i:05d}-of-{self.n:05d}.parquet"
        os.replace(self.tmp, path)
        self.paths.append(path)
        self.writer = self.tmp = None

    def close(self) -> list[Path]:
        if self.total == 0:  # one empty shard, as the in-memory writer leaves
            self._flush()
        if self.written != self.total or self.pending_rows:
            raise RuntimeError(f"{self.prefix}: {self.written} of {self.total} rows written")
        return self.paths


def in_holdout(image_ids: pa.Array | pa.ChunkedArray, fraction: float) -> np.ndarray:
    """True for the images of the validation split: sha256(image id)'s first 8 bytes / 2^64 < fraction.

    A pure function of the image id, so both VLMs' pairs of an image, reruns and any sharding agree.
    """
    bound = int(fraction * 2**64)
    return np.fromiter(
        (int.from_bytes(hashlib.sha256(i.encode()).digest()[:8], "big") < bound for i in image_ids.to_pylist()),
        dtype=bool,
        count=len(image_ids),
    )


@dataclass
class SplitPlan:
    """One split of the release: its rows, bytes (as `write_parquet_shards` measures them) and pair ids."""

    name: str
    rows: int = 0
    num_bytes: int = 0
    pair_ids: list[pa.ChunkedArray] = field(default_factory=list)
    counter: SplitCounter = field(default_factory=SplitCounter)


def public_image_sources(table: pa.Table, roots: Mapping[str, Path] | None) -> pa.Table:
    """`image_source` relative to the run's named roots (`release_paths`): no local path in a release."""
    if not roots or "image_source" not in table.column_names:
        return table
    at = table.column_names.index("image_source")
    values = [public_image_source(v, roots) for v in table.column("image_source").to_pylist()]
    return table.set_column(at, table.schema.field(at), pa.array(values, table.schema.field(at).type))


def _split_tables(
    pairs: ParquetRows, holdout: float | None, roots: Mapping[str, Path] | None = None
) -> Iterator[dict[str, pa.Table]]:
    """Each pairs file as the release stores it, divided into its splits ({"train": table} without holdout)."""
    for part in pairs.file_tables():
        table = public_image_sources(release_table(part), roots)
        if holdout is None:
            yield {"train": table}
            continue
        held = pa.array(in_holdout(table.column("image_id"), holdout))
        yield {"train": table.filter(pc.invert(held)), HOLDOUT_SPLIT: table.filter(held)}


def plan_splits(
    pairs: ParquetRows, holdout: float | None, pair_ids: bool = False, roots: Mapping[str, Path] | None = None
) -> dict[str, SplitPlan]:
    """The sizing pass: rows, bytes, counts (and with `pair_ids`, the ids) of every split, one file at a time."""
    plans = {name: SplitPlan(name) for name in (["train"] if holdout is None else ["train", HOLDOUT_SPLIT])}
    for tables in _split_tables(pairs, holdout, roots):
        for name, table in tables.items():
            plan = plans[name]
            plan.rows += table.num_rows
            plan.num_bytes += table.nbytes
            if pair_ids:  # only the rendered config needs them (~35 bytes a pair)
                plan.pair_ids.append(table.column("pair_id"))
            if holdout is not None:
                plan.counter.add(table)
    return plans


def stream_release_shards(
    pairs: ParquetRows,
    plans: dict[str, SplitPlan],
    folder: Path,
    max_bytes: int,
    holdout: float | None,
    roots: Mapping[str, Path] | None = None,
) -> list[Path]:
    """Every split's `data/<split>-*.parquet`, byte-identical to `write_parquet_shards` of the loaded split."""
    release_schema = schema.pairs_features().arrow_schema
    streams = {}
    for name, plan in plans.items():
        per_row = max(1, plan.num_bytes // plan.rows) if plan.rows else 1
        step = max(1, max_bytes // per_row) if plan.rows else 1
        streams[name] = ShardStream(folder, name, plan.rows, step, release_schema)
    for tables in _split_tables(pairs, holdout, roots):
        for name, table in tables.items():
            streams[name].add(table)
    return [p for stream in streams.values() for p in stream.close()]


def release_table(pairs: pa.Table) -> pa.Table:
    """The pairs as the release stores them: the declared features' arrow schema (with HF metadata)."""
    return pairs.cast(schema.pairs_features().arrow_schema)


def rendered_rows(pair_ids: pa.Array | pa.ChunkedArray, index: pa.Table) -> pa.Table:
    """The successful mixes of a render index, in pair order (the first row of a pair if it repeats)."""
    ok = index.filter(pc.equal(index.column("status"), "ok"))
    at = pc.index_in(pair_ids, value_set=ok.column("pair_id"))
    return ok.take(pc.drop_null(at))


def write_rendered_shards(
    pair_ids: pa.Array | pa.ChunkedArray,
    index: pa.Table,
    rendered_dir: Path,
    folder: Path,
    max_bytes: int = MAX_SHARD_BYTES,
    prefix: str = "train",
) -> tuple[int, int]:
    """The `rendered_audio` config: shards of (pair_id, FLAC bytes, loudness), each under `max_bytes`.

    The audio is the bulk (2M mixes are ~200 GB): shards are planned from the file sizes and only one
    shard's bytes are in memory at a time. Files are read from inside `rendered_dir` only.
    Returns (rows, uncompressed bytes).
    """
    rows = rendered_rows(pair_ids, index)
    files = [safe_join(rendered_dir, p) for p in rows.column("path").to_pylist()]
    sizes = np.fromiter((f.stat().st_size for f in files), dtype=np.int64, count=len(files))
    meta_bytes = rows.nbytes // max(1, rows.num_rows)
    starts = [0]
    total = 0
    for i, size in enumerate(sizes.tolist()):
        if total and total + size + meta_bytes > max_bytes:
            starts.append(i)
            total = 0
        total += size + meta_bytes
    bounds = list(zip(starts, [*starts[1:], rows.num_rows], strict=True))
    arrow_schema = schema.rendered_features(SAMPLE_RATE).arrow_schema
    num_bytes = 0
    for i, (lo, hi) in enumerate(bounds):
        part = rows.slice(lo, hi - lo)
        audio = pa.StructArray.from_arrays(
            [pa.array([f.read_bytes() for f in files[lo:hi]], pa.binary()), pa.array([f.name for f in files[lo:hi]])],
            names=["bytes", "path"],
        )
        table = pa.table(
            [part.column("pair_id"), audio, part.column("lufs"), part.column("peak"), part.column("mix_gain_db")],
            names=["pair_id", "audio", "lufs", "peak", "mix_gain_db"],
        ).cast(arrow_schema)
        num_bytes += table.nbytes
        # ~100 mixes per row group, as the Hub does
        _write_shard(table, folder, i, len(bounds), row_group_size=100, prefix=prefix)
    return rows.num_rows, num_bytes


def _prepare_folder(out: Path) -> None:
    """Claim `out`: empty or a previous release (whose generated files are replaced, .cache kept).

    The claim (a placeholder `sonify.json`) is written before anything else, so a publish killed
    half-way leaves a folder that the next publish recognises and replaces, rather than refuses.
    """
    if out.exists() and any(out.iterdir()):
        if not (out / RELEASE_MANIFEST).exists():
            raise PublishError(f"{out} exists and is not a sonify release: choose a new or empty folder")
        for name in RELEASE_FOLDERS:
            if (out / name).exists():
                shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RELEASE_MANIFEST, {"complete": False})


def check_holdout(holdout: float | None) -> None:
    if holdout is not None and not 0.0 < holdout < 1.0:
        raise PublishError(f"--holdout {holdout}: the held-out fraction must be between 0 and 1 (e.g. 0.01)")


def build_release(
    workdir: Path,
    out: Path,
    *,
    repo_id: str | None = None,
    rendered: Path | None = None,
    pretty_name: str | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    holdout: float | None = None,
) -> ReleaseSummary:
    """Write the release folder for a finished work directory (`holdout`: the validation fraction, by image)."""
    check_holdout(holdout)
    workdir, out = Path(workdir), Path(out)
    pairs_dir = StageDir(workdir / "pairs")
    manifest = pairs_dir.manifest()
    if manifest is None:
        raise PublishError(f"no pairs in {pairs_dir.path}: run `sonify retrieve` first")
    if not pairs_dir.all_complete():
        done = len(pairs_dir.complete_shards())
        raise PublishError(
            f"pairs are unfinished ({done}/{manifest['num_shards']} shards): finish `sonify retrieve` first "
            "(`sonify status` shows the command)"
        )
    run = load_run(workdir, rendered)
    assert isinstance(run.pairs, ParquetRows)
    _prepare_folder(out)
    roots = release_roots(workdir, run.stages)  # everything the release says is relative to these
    run.stages = public_metadata(run.stages, roots)
    run.pool_manifest = public_metadata(run.pool_manifest, roots)
    stats = compute_stats(run)
    plans = plan_splits(run.pairs, holdout, pair_ids=run.rendered is not None, roots=roots)
    if holdout is not None:
        stats["splits"] = {name: plan.counter.result() for name, plan in plans.items()}
    smoke = bool(stats["smoke_run"])
    plots = {k: f"plots/{v}" for k, v in write_plots(run, out / "plots", stats).items()}

    data_paths = stream_release_shards(run.pairs, plans, out / "data", max_shard_bytes, holdout, roots)
    rendered_info = None
    if run.rendered is not None and run.rendered_dir is not None:
        rendered_splits = {
            name: write_rendered_shards(
                pa.chunked_array(plan.pair_ids, pa.string()),
                run.rendered,
                run.rendered_dir,
                out / "rendered",
                max_shard_bytes,
                prefix=name,
            )
            for name, plan in plans.items()
        }
        rendered_info = {
            "rows": sum(rows for rows, _ in rendered_splits.values()),
            "num_bytes": sum(n for _, n in rendered_splits.values()),
            "features_yaml": _features_yaml(schema.rendered_features()),
        }
        if holdout is not None:
            rendered_info["splits"] = {name: {"rows": r, "num_bytes": n} for name, (r, n) in rendered_splits.items()}

    repo = repo_id or "<org>/<name>"
    name = pretty_name or (repo_id.split("/")[-1] if repo_id else "Sonified images: audio-image pairs")
    if smoke:
        name = f"SMOKE RUN (meaningless pairings): {name}"
    card = render_card(
        run,
        stats,
        plots,
        repo_id=repo,
        pretty_name=name,
        features_yaml=_features_yaml(schema.pairs_features()),
        num_bytes=sum(plan.num_bytes for plan in plans.values()),
        rendered=rendered_info,
        splits=(
            {name: {"rows": plan.rows, "num_bytes": plan.num_bytes} for name, plan in plans.items()}
            if holdout is not None
            else None
        ),
        holdout=holdout,
    )
    DatasetCard(card)  # parse now: a card the Hub's parser rejects fails here, not on upload
    atomic_write_bytes(out / "README.md", card.encode())
    atomic_write_bytes(out / "LICENSE.md", render_license(run, stats).encode())
    release_manifest: dict[str, Any] = {
        "stages": run.stages,
        "pool_manifest": public_pool_manifest(run.pool_manifest),
        "errors": run.errors,
        "stats": stats,
        "rows": run.pairs.num_rows,
    }
    if holdout is not None:
        release_manifest["holdout"] = {"fraction": holdout, "split": HOLDOUT_SPLIT, "by": "sha256(image_id)[:8] / 2^64"}
    atomic_write_json(out / RELEASE_MANIFEST, release_manifest)
    return ReleaseSummary(
        folder=out,
        rows=run.pairs.num_rows,
        data_files=[p.relative_to(out).as_posix() for p in data_paths],
        rendered_rows=rendered_info["rows"] if rendered_info else 0,
        smoke_run=smoke,
        files=upload_plan(out),
    )


def _features_yaml(features: datasets.Features) -> dict[str, Any]:
    """`features:` as the card's `dataset_info` declares them (datasets' own YAML form)."""
    return datasets.DatasetInfo(features=features)._to_yaml_dict()


def upload_plan(folder: Path) -> list[tuple[str, int]]:
    """Exactly the files an upload of `folder` sends (same filter as the upload), with sizes."""
    folder = Path(folder)
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    kept = list(filter_repo_objects(paths, ignore_patterns=UPLOAD_IGNORE))
    kept = [p for p in kept if not any(part.startswith(".") and part != ".gitattributes" for part in p.split("/"))]
    return [(p, (folder / p).stat().st_size) for p in kept]


def push_to_hub(folder: Path, repo_id: str, *, private: bool = False) -> str:
    """Upload the release (resumable: rerun after an interruption to continue). Returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    large = getattr(api, "upload_large_folder", None)
    if large is not None:  # huggingface_hub < 2: the dedicated resumable uploader
        large(repo_id=repo_id, folder_path=str(folder), repo_type="dataset", private=private,
              ignore_patterns=UPLOAD_IGNORE)  # fmt: skip
    else:  # huggingface_hub >= 2: upload_folder itself streams, batches commits and resumes (hf_xet)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="dataset",
            ignore_patterns=UPLOAD_IGNORE,
            commit_message="sonify publish",
        )
    return f"https://huggingface.co/datasets/{repo_id}"
