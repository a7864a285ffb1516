"""`sonify publish`: a work directory -> a Hugging Face dataset repository folder, optionally uploaded.

The release is the pairs table as `data/train-*.parquet` shards (pair order kept), a README.md dataset
card (YAML metadata + the run's parameters and statistics), the figures under `plots/`, LICENSE.md and
`sonify.json` (stage manifests, pool manifest, error counts, statistics) so that `sonify report` works
on a release as on a work directory. With `--rendered DIR` the mixes become a second config.

Publishing is one pass over finished tables rather than a sharded stage: nothing in it is slow enough
to need resume, and the upload itself is resumable (huggingface_hub's large-folder upload).
Every file is a pure function of the work directory, so republishing unchanged data gives the same
bytes and a resumed upload skips it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from huggingface_hub import DatasetCard
from huggingface_hub.utils import filter_repo_objects

from dataset_card import public_pool_manifest, render_card, render_license

from .. import schema
from ..errors import InputError
from ..fileio import safe_join
from ..plots import write_plots
from ..settings import SAMPLE_RATE
from ..shards import StageDir, atomic_write_bytes, atomic_write_json, atomic_write_table
from ..stats import RELEASE_MANIFEST, compute_stats, load_run

MAX_SHARD_BYTES = 500 * 1000**2  # the Hub's recommendation for parquet shards
UPLOAD_IGNORE = [".cache/**", ".git/**", "**/.git/**", ".gitattributes.tmp"]
RELEASE_FOLDERS = ("data", "rendered", "plots")


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
    """`folder/train-0000i-of-0000n.parquet`, rows in order, each under `max_bytes`."""
    step = shard_rows(table, max_bytes)
    n = max(1, -(-table.num_rows // step))
    return [_write_shard(table.slice(i * step, step), folder, i, n) for i in range(n)]


def _write_shard(part: pa.Table, folder: Path, i: int, n: int, row_group_size: int = 10_000) -> Path:
    path = folder / f"train-{i:05d}-of-{n:05d}.parquet"
    atomic_write_table(path, part, row_group_size=min(row_group_size, max(1, part.num_rows)))
    return path


def release_table(pairs: pa.Table) -> pa.Table:
    """The pairs as the release stores them: the declared features' arrow schema (with HF metadata)."""
    return pairs.cast(schema.pairs_features().arrow_schema)


def rendered_rows(pairs: pa.Table, index: pa.Table) -> pa.Table:
    """The successful mixes of a render index, in pair order (the first row of a pair if it repeats)."""
    ok = index.filter(pc.equal(index.column("status"), "ok"))
    at = pc.index_in(pairs.column("pair_id"), value_set=ok.column("pair_id"))
    return ok.take(pc.drop_null(at))


def write_rendered_shards(
    pairs: pa.Table, index: pa.Table, rendered_dir: Path, folder: Path, max_bytes: int = MAX_SHARD_BYTES
) -> tuple[int, int]:
    """The `rendered_audio` config: shards of (pair_id, FLAC bytes, loudness), each under `max_bytes`.

    The audio is the bulk (2M mixes are ~200 GB): shards are planned from the file sizes and only one
    shard's bytes are in memory at a time. Files are read from inside `rendered_dir` only.
    Returns (rows, uncompressed bytes).
    """
    rows = rendered_rows(pairs, index)
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
        _write_shard(table, folder, i, len(bounds), row_group_size=100)  # ~100 mixes per row group, as the Hub does
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


def build_release(
    workdir: Path,
    out: Path,
    *,
    repo_id: str | None = None,
    rendered: Path | None = None,
    pretty_name: str | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> ReleaseSummary:
    """Write the release folder for a finished work directory."""
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
    _prepare_folder(out)
    stats = compute_stats(run)
    smoke = bool(stats["smoke_run"])
    plots = {k: f"plots/{v}" for k, v in write_plots(run, out / "plots", stats).items()}

    table = release_table(run.pairs)
    data_paths = write_parquet_shards(table, out / "data", max_shard_bytes)
    rendered_info = None
    if run.rendered is not None and run.rendered_dir is not None:
        rows, num_bytes = write_rendered_shards(
            run.pairs, run.rendered, run.rendered_dir, out / "rendered", max_shard_bytes
        )
        rendered_info = {
            "rows": rows,
            "num_bytes": num_bytes,
            "features_yaml": _features_yaml(schema.rendered_features()),
        }

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
        num_bytes=table.nbytes,
        rendered=rendered_info,
    )
    DatasetCard(card)  # parse now: a card the Hub's parser rejects fails here, not on upload
    atomic_write_bytes(out / "README.md", card.encode())
    atomic_write_bytes(out / "LICENSE.md", render_license(run, stats).encode())
    atomic_write_json(
        out / RELEASE_MANIFEST,
        {
            "stages": run.stages,
            "pool_manifest": public_pool_manifest(run.pool_manifest),
            "errors": run.errors,
            "stats": stats,
            "rows": run.pairs.num_rows,
        },
    )
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
