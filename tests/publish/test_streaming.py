"""Streamed statistics and shards equal what loading the whole table gives, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sonify_toolkit import schema, stats
from sonify_toolkit.stages import publish
from sonify_toolkit.stats import (
    DISTRIBUTIONS,
    ParquetRows,
    RunData,
    clip_counts,
    compute_stats,
    concept_counts,
    source_column,
    summary,
    value_counts,
)
from sonify_toolkit.usage import clip_usage

WORDS = ["Dog", " rain", "dog ", "WIND", "siren", "birds", "car engine", "Été", "zèbre"]


def _pairs(n: int, seed: int) -> pa.Table:
    """n pairs with 0-4 sources, repeated clips and images, nulls in the float and id fields."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        sources = []
        for j in range(int(rng.integers(0, 5))):
            sources.append(
                {
                    "concept": None if rng.random() < 0.05 else WORDS[int(rng.integers(len(WORDS)))],
                    "clip_id": None if rng.random() < 0.05 else f"fsd/f{int(rng.integers(40))}.wav#{j}",
                    "source": ["fsd", "bbc", None][int(rng.integers(3))],
                    "similarity": float(rng.normal()),
                    "score": None if rng.random() < 0.1 else float(rng.normal()),
                    "threshold": float(rng.random()),
                    "clip_lufs": float(rng.uniform(-40, -10)),
                    "target_lufs": float(rng.uniform(-24, -22)),
                }
            )
        image = f"img{(seed * 1000 + i) // 2}"
        rows.append(
            {"pair_id": f"{image}|v{i % 2}", "image_id": image, "image_source": ["sa1b", None][i % 2],
             "vlm": f"v{i % 2}", "caption": f"caption {i}", "seed": 0, "sources": sources}
        )  # fmt: skip
    return schema.table(rows, schema.PAIRS)


def _files(tmp_path: Path, sizes: list[int]) -> list[Path]:
    paths = []
    for k, n in enumerate(sizes):
        path = tmp_path / f"{k:05d}.parquet"
        pq.write_table(_pairs(n, k), path, row_group_size=97)  # several row groups per file
        paths.append(path)
    return paths


def loaded_stats(run: RunData, pairs: pa.Table) -> dict:
    """compute_stats as it was when it loaded the whole table: the reference the streamed pass must equal."""
    per_pair = pa.compute.list_value_length(pairs.column("sources")).to_numpy()
    concepts = concept_counts(pairs)
    from collections import Counter

    hist = Counter(per_pair.tolist())
    dist = {name: source_column(pairs, name).to_numpy() for name in DISTRIBUTIONS[:5]}
    dist["rendered_lufs"] = np.zeros(0)
    return {
        "smoke_run": run.smoke_run,
        "kind": run.kind,
        "counts": {
            "pairs": pairs.num_rows,
            "images": pa.compute.count_distinct(pairs.column("image_id")).as_py(),
            "pairs_per_vlm": value_counts(pairs.column("vlm")),
            "sources": int(per_pair.sum()),
            "distinct_concepts": len(concepts),
            "sources_per_collection": value_counts(source_column(pairs, "source")),
        },
        "concepts_per_pair": {
            "histogram": {str(k): hist[k] for k in sorted(hist)},
            "mean": float(per_pair.mean()) if per_pair.size else 0.0,
        },
        "top_concepts": [[c, n] for c, n in sorted(concepts.items(), key=lambda kv: (-kv[1], kv[0]))[:30]],
        "clip_usage": clip_usage(clip_counts(pairs), None),
        "distributions": {k: summary(stats._finite(v)) for k, v in dist.items()},
        "errors": {},
        "key_parameters": {"VLMs": sorted(set(pairs.column("vlm").to_pylist()))},
    }


@pytest.mark.parametrize("batch_rows,merge_rows", [(50, 7), (100_000, 1_000_000)])
def test_streamed_statistics_equal_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_rows: int, merge_rows: int
) -> None:
    monkeypatch.setattr(stats, "BATCH_ROWS", batch_rows)  # many batches, and partial counts merged often
    monkeypatch.setattr(stats, "MERGE_ROWS", merge_rows)
    files = _files(tmp_path, [300, 0, 451, 120])
    streamed = RunData(origin=tmp_path, kind="release", pairs=ParquetRows(schema.PAIRS, files))
    loaded = pa.concat_tables([pq.read_table(f).cast(schema.PAIRS) for f in files])
    got = json.dumps(compute_stats(streamed), sort_keys=False)
    want = json.dumps(loaded_stats(streamed, loaded), sort_keys=False)
    assert got == want
    assert json.dumps(compute_stats(RunData(origin=tmp_path, kind="release", pairs=loaded))) == want
    assert sorted(stats.reuse_counts(streamed).tolist()) == sorted(stats.reuse_counts(loaded).tolist())


def test_take_reads_the_rows_asked_for(tmp_path: Path) -> None:
    files = _files(tmp_path, [300, 0, 451, 120])
    rows = ParquetRows(schema.PAIRS, files)
    loaded = rows.read()
    assert rows.num_rows == loaded.num_rows == 871
    wanted = [870, 0, 299, 300, 301, 750, 12]
    assert rows.take(wanted).to_pylist() == loaded.take(wanted).to_pylist()
    assert rows.take([]).num_rows == 0


@pytest.mark.parametrize("max_bytes_div,row_group", [(5, 23), (1, 10_000), (40, 7)])
def test_streamed_shards_are_byte_identical_to_the_loaded_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_bytes_div: int, row_group: int
) -> None:
    monkeypatch.setattr(publish, "ROW_GROUP_ROWS", row_group)
    files = _files(tmp_path, [300, 0, 451, 120])
    rows = ParquetRows(schema.PAIRS, files)
    table = publish.release_table(rows.read())
    max_bytes = table.nbytes // max_bytes_div
    loaded = publish.write_parquet_shards(table, tmp_path / "loaded", max_bytes)
    plans = publish.plan_splits(rows, None)
    streamed = publish.stream_release_shards(rows, plans, tmp_path / "streamed", max_bytes, None)
    assert [p.name for p in streamed] == [p.name for p in loaded]
    assert len(loaded) >= max_bytes_div
    for a, b in zip(loaded, streamed, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert not list((tmp_path / "streamed").glob(".*"))  # no temporary file left behind


def test_empty_pairs_stream_one_empty_shard_as_before(tmp_path: Path) -> None:
    path = tmp_path / "00000.parquet"
    pq.write_table(schema.PAIRS.empty_table(), path)
    rows = ParquetRows(schema.PAIRS, [path])
    loaded = publish.write_parquet_shards(publish.release_table(rows.read()), tmp_path / "loaded")
    streamed = publish.stream_release_shards(rows, publish.plan_splits(rows, None), tmp_path / "streamed",
                                             publish.MAX_SHARD_BYTES, None)  # fmt: skip
    assert [p.read_bytes() for p in streamed] == [p.read_bytes() for p in loaded]
