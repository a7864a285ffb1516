"""A tampered release renders its good rows and reports the bad ones: render never raises on a row's content."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sonify_toolkit import schema
from sonify_toolkit.pair_rows import MAX_GAIN_DB, BadRow, check_pair, check_source
from sonify_toolkit.runner import run_stage
from sonify_toolkit.soundtrack import PairRenderError, render_pair, reuse_order
from sonify_toolkit.stages.render import RenderStage

from .conftest import pair, table_of


def tampered_release(folder: Path, good_pairs: list[dict], make_source) -> Path:
    """A release folder whose shards hold good rows and every kind of tampered row, in several column types."""
    data = folder / "data"
    data.mkdir(parents=True)
    src = make_source("alpha", "tones/b1k.flac")
    in_schema = [
        pair("loud|v", [src | {"target_lufs": 1e4}]),
        pair("null-entry|v", [src, None]),
        pair("nan|v", [src | {"clip_lufs": math.nan}]),
        pair("big-gain|v", [src | {"target_lufs": -5.0, "clip_lufs": -80.0}]),
        pair("negative-segment|v", [src | {"segment": -3}]),
    ]
    pq.write_table(schema.table(good_pairs[:5] + in_schema, schema.PAIRS), data / "train-00000-of-00004.parquet")
    as_string = [pair("string-sources|v", []) | {"sources": "alpha/tones/b1k.flac"}]
    pq.write_table(pa.Table.from_pylist(as_string), data / "train-00001-of-00004.parquet")
    ids = [pair("x|v", [src]) | {"pair_id": None}, pair("y|v", [src]) | {"pair_id": 12345}]
    pq.write_table(pa.Table.from_pylist(ids), data / "train-00002-of-00004.parquet")
    pq.write_table(schema.table(good_pairs[5:], schema.PAIRS), data / "train-00003-of-00004.parquet")
    return folder


def test_a_tampered_release_renders_its_good_rows_and_reports_the_bad_ones(good_pairs, make_source, roots, tmp_path):
    release = tampered_release(tmp_path / "release", good_pairs, make_source)
    out = tmp_path / "out"
    stage = RenderStage(str(release), dict(roots), out=str(out), pairs_per_shard=4)
    summary = run_stage(stage, out, show_progress=False)
    assert summary.finalized and summary.counters["rendered"] == len(good_pairs)
    status = {r["pair_id"]: r["status"] for r in table_of(out, "index").to_pylist()}
    assert [status[p["pair_id"]] for p in good_pairs] == ["ok"] * len(good_pairs)
    for pid in ("loud|v", "null-entry|v", "nan|v", "big-gain|v", "negative-segment|v"):
        assert status[pid] == "bad_source_row", pid
    assert status["string-sources|v"] == "bad_pair_row"
    assert status["<part 2 row 0: pair_id null>"] == "bad_pair_row"
    assert status["<part 2 row 1: pair_id int>"] == "bad_pair_row"
    errors = {r["item"]: r["detail"] for r in table_of(out, "errors").to_pylist()}
    assert len(errors) == 8 and sum(summary.errors.values()) == 8
    assert "target_lufs' 10000 outside" in errors["loud|v"]
    assert "source 1" in errors["null-entry|v"] and "is null" in errors["null-entry|v"]
    assert "'sources' must be a list" in errors["string-sources|v"]
    assert f"+/-{MAX_GAIN_DB:g} dB" in errors["big-gain|v"]
    # the malformed rows are not "missing files" of a collection: only real sources are
    missing = table_of(out, "missing").to_pylist()
    assert {(m["pair_id"], m["source_index"]) for m in missing} == {
        ("loud|v", 0),
        ("null-entry|v", 1),
        ("nan|v", 0),
        ("big-gain|v", 0),
        ("negative-segment|v", 0),
    }
    # a rerun over the same release gives the same tables, byte for byte (no object text in error rows)
    again = tmp_path / "again"
    run_stage(RenderStage(str(release), dict(roots), out=str(again), pairs_per_shard=4), again, show_progress=False)
    for name in ("index", "errors", "missing"):
        assert table_of(out, name).equals(table_of(again, name))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("not a record", "must be a record"),
        ({"pair_id": 5}, "'pair_id' must be a non-empty string, is a int"),
        ({"pair_id": ""}, "is empty"),
        ({"pair_id": "p", "image_id": "i", "vlm": "v", "seed": True, "sources": []}, "'seed'"),
        ({"pair_id": "p", "image_id": "i", "vlm": "v", "seed": 1, "sources": None}, "'sources'"),
        ({"pair_id": "p", "image_id": "i", "vlm": "v", "seed": 1, "caption": 3, "sources": []}, "'caption'"),
    ],
)
def test_pair_level_fields_follow_the_schema(row, message):
    with pytest.raises(BadRow, match=message):
        check_pair(row)


def test_source_records_are_checked_and_normalised(make_source):
    import numpy as np

    src = make_source("alpha", "tones/b1k.flac")
    clean = check_source(src | {"segment": np.int64(1), "target_lufs": np.float32(-23.0)})
    assert clean["segment"] == 1 and type(clean["segment"]) is int and type(clean["target_lufs"]) is float
    for bad in (
        {"path": None},
        {"path": 7},
        {"source_sha256": 5},
        {"similarity": "high"},
        {"segment": 2**31},
        {"segment": 1.5},
        {"target_lufs": math.inf},
        {"clip_lufs": -1e4},
        {"target_lufs": True},
    ):
        with pytest.raises(BadRow):
            check_source(src | bad)


def test_render_pair_and_reuse_order_never_raise_anything_but_a_pair_error(roots, make_source):
    src = make_source("alpha", "tones/b1k.flac")
    hostile = [
        None,
        "a string",
        {"pair_id": None, "sources": [src]},
        pair("p|v", []) | {"sources": "x"},
        pair("p|v", [None, 3, "s", src | {"target_lufs": 1e4}]),
    ]
    assert sorted(reuse_order(hostile)) == list(range(len(hostile)))
    for row in hostile:
        with pytest.raises(PairRenderError):
            render_pair(row, roots)  # type: ignore[arg-type]


def test_a_table_without_pair_ids_is_refused_in_one_line(tmp_path):
    from sonify_toolkit.pair_source import PairSourceError, open_pairs

    (tmp_path / "p").mkdir()
    pq.write_table(pa.table({"x": [1]}), tmp_path / "p" / "00000.parquet")
    with pytest.raises(PairSourceError, match="lacks column pair_id"):
        open_pairs(tmp_path / "p").pair_ids(0)
