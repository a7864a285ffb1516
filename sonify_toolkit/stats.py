"""The numbers of a run: one implementation shared by the dataset card, the HTML report and `status`.

A run is read either from a work directory (stage folders with `_stage.json` and `_stats/`) or from
a release folder (`data/*.parquet` + `sonify.json`, which `publish` writes so a release carries the
parameters and error counts of the run that made it). Everything here is pure over those tables.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
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
from .usage import clip_usage

RELEASE_MANIFEST = "sonify.json"  # written by `publish` beside the README
DISTRIBUTIONS = ("similarity", "score", "threshold", "clip_lufs", "target_lufs", "rendered_lufs")


class RunNotFoundError(InputError, FileNotFoundError):
    """The folder holds no run to read (no pairs, no release data): still a FileNotFoundError for callers."""


@dataclass
class RunData:
    """Everything the card, the report and `status` read from one run."""

    origin: Path
    kind: str  # "workdir" or "release"
    pairs: pa.Table
    concepts: pa.Table | None = None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage dir (relative) -> _stage.json
    pool_manifest: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)  # stage dir -> reason -> count
    rendered: pa.Table | None = None
    rendered_dir: Path | None = None

    @property
    def smoke_run(self) -> bool:
        return is_smoke_run(self.stages, self.pool_manifest)


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
    pairs = pairs_dir.read_table("", schema.PAIRS)
    concept_parts = [
        sd.read_table("", schema.CONCEPTS) for rel, sd in stage_dirs.items() if rel.startswith("concepts/")
    ]
    return RunData(
        origin=workdir,
        kind="workdir",
        pairs=pairs,
        concepts=pa.concat_tables(concept_parts) if concept_parts else None,
        stages={rel: sd.manifest() or {} for rel, sd in stage_dirs.items()},
        pool_manifest=read_pool_manifest(workdir),
        errors={rel: stage_errors(sd) for rel, sd in stage_dirs.items()},
    )


def read_pool_manifest(workdir: Path) -> dict[str, Any]:
    """A work directory's `pool/manifest.json` ({} before a pool stage has finished)."""
    path = Path(workdir) / "pool" / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _load_release(release: Path) -> RunData:
    files = sorted((release / "data").glob("*.parquet"))
    if not files:
        raise RunNotFoundError(f"no data/*.parquet in release {release}")
    pairs = pa.concat_tables([pq.read_table(f).cast(schema.PAIRS) for f in files])
    meta_path = release / RELEASE_MANIFEST
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return RunData(
        origin=release,
        kind="release",
        pairs=pairs,
        stages=meta.get("stages", {}),
        pool_manifest=meta.get("pool_manifest", {}),
        errors=meta.get("errors", {}),
    )


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
        "VLMs": sorted({str(v) for v in vlms.values()}) or sorted(set(run.pairs.column("vlm").to_pylist())),
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
    pairs = zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    return dict(sorted(pairs, key=lambda kv: (kv[0] is None, "" if kv[0] is None else kv[0])))


def distributions(run: RunData) -> dict[str, np.ndarray]:
    """The value arrays behind every histogram (finite values only)."""
    out = {name: source_column(run.pairs, name).to_numpy() for name in DISTRIBUTIONS[:5]}
    if run.rendered is not None:
        ok = run.rendered.filter(pc.equal(run.rendered.column("status"), "ok"))
        out["rendered_lufs"] = ok.column("lufs").to_numpy()
    else:
        out["rendered_lufs"] = np.zeros(0)
    return {k: _finite(v) for k, v in out.items()}


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


def compute_stats(run: RunData, top: int = 30) -> dict[str, Any]:
    """Every figure the card and the report show, JSON-able."""
    pairs = run.pairs
    per_pair = pc.list_value_length(pairs.column("sources")).to_numpy()
    concepts = concept_counts(pairs)
    counts: dict[str, Any] = {
        "pairs": pairs.num_rows,
        "images": pc.count_distinct(pairs.column("image_id")).as_py(),
        "pairs_per_vlm": value_counts(pairs.column("vlm")),
        "sources": int(per_pair.sum()),
        "distinct_concepts": len(concepts),
        "sources_per_collection": value_counts(source_column(pairs, "source")),
    }
    if run.concepts is not None:
        keep = pc.fill_null(run.concepts.column("keep"), False)
        counts["images_described"] = pc.count_distinct(run.concepts.column("image_id")).as_py()
        counts["vlm_responses"] = run.concepts.num_rows
        counts["kept"] = int(pc.sum(keep).as_py() or 0)
        reasons = pc.fill_null(pc.filter(run.concepts.column("drop_reason"), pc.invert(keep)), "unknown")
        counts["dropped_by_reason"] = value_counts(reasons)
    if pool_size(run.pool_manifest) is not None:
        counts["pool_segments"] = pool_size(run.pool_manifest)
        counts["pool_per_collection"] = run.pool_manifest.get("segments", {}).get("per_source", {})
    if run.rendered is not None:
        counts["rendered_by_status"] = value_counts(run.rendered.column("status"))
        gains = run.rendered.column("mix_gain_db").to_numpy()
        counts["rendered_mixes_scaled_down"] = int(np.sum(np.nan_to_num(gains) < 0))
    hist = Counter(per_pair.tolist())
    return {
        "smoke_run": run.smoke_run,
        "kind": run.kind,
        "counts": counts,
        "concepts_per_pair": {
            "histogram": {str(k): hist[k] for k in sorted(hist)},
            "mean": float(per_pair.mean()) if per_pair.size else 0.0,
        },
        "top_concepts": [[c, n] for c, n in sorted(concepts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
        "clip_usage": clip_usage(clip_counts(pairs), pool_size(run.pool_manifest)),
        "distributions": {k: summary(v) for k, v in distributions(run).items()},
        "errors": {k: v for k, v in sorted(run.errors.items()) if v},
        "key_parameters": key_parameters(run),
    }


def reuse_counts(pairs: pa.Table) -> np.ndarray:
    """Uses per distinct clip (for the reuse histogram)."""
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
