"""The render stage: output layout, determinism, integrity rows, resume, the three PAIRS inputs, hf format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from sonify_toolkit import audio, schema
from sonify_toolkit.errors import InputError
from sonify_toolkit.executors import ShardSelection
from sonify_toolkit.fileio import sha256_file
from sonify_toolkit.pair_source import HubPairs, PairSourceError, open_pairs
from sonify_toolkit.runner import run_stage
from sonify_toolkit.settings import SEGMENT_FRAMES
from sonify_toolkit.shards import StageDir
from sonify_toolkit.soundtrack import render_pair
from sonify_toolkit.stages.render import RenderStage

from .conftest import pair, read_dir_bytes, table_of, write_pairs


def _run(pairs: Path | str, roots, out: Path, selection: ShardSelection | None = None, **kw):
    stage = RenderStage(str(pairs), dict(roots), out=str(out), **kw)
    return run_stage(stage, out, show_progress=False, selection=selection)


@pytest.fixture()
def mixed_pairs(good_pairs, make_source, tmp_path, roots):
    """The good pairs plus tampered ones, written as a pairs folder."""
    outside_sha = sha256_file(Path(roots["alpha"]).parent / "outside.wav")
    bad = [
        pair("bad-sha|v", [make_source("alpha", "tones/b1k.flac", source_sha256="0" * 64)]),
        pair(
            "bad-up|v",
            [make_source("beta", "tones/b1k.flac") | {"path": "../outside.wav", "source_sha256": outside_sha}],
        ),
        pair(
            "bad-missing|v",
            [make_source("beta", "noise/pink.flac"), make_source("beta", "noise/pink.flac") | {"path": "gone.flac"}],
        ),
        pair("bad-end|v", [make_source("alpha", "noise/white.wav") | {"segment": 3}]),
    ]
    rows = good_pairs[:5] + bad + good_pairs[5:]
    return write_pairs(tmp_path / "pairs", rows), rows


def test_render_folder_layout_and_error_rows(mixed_pairs, roots, tmp_path):
    folder, rows = mixed_pairs
    out = tmp_path / "out"
    summary = _run(folder, roots, out, pairs_per_shard=4)
    assert summary.finalized and summary.shards_total == 4
    index = table_of(out, "index").to_pylist()
    assert [r["pair_id"] for r in index] == [r["pair_id"] for r in rows]  # input order, whatever the work order
    status = {r["pair_id"]: r["status"] for r in index}
    assert status["bad-sha|v"] == "sha256_mismatch" and status["bad-up|v"] == "unsafe_path"
    assert status["bad-missing|v"] == "missing_file" and status["bad-end|v"] == "window_past_end"
    assert "bad-missing|v" in next(r["error"] for r in index if r["pair_id"] == "bad-missing|v")
    assert summary.counters["rendered"] == 10 and sum(summary.errors.values()) == 4
    missing = table_of(out, "missing").to_pylist()
    assert {(m["pair_id"], m["source_index"], m["collection"]) for m in missing} == {
        ("bad-sha|v", 0, "alpha"),
        ("bad-up|v", 0, "beta"),
        ("bad-missing|v", 1, "beta"),
        ("bad-end|v", 0, "alpha"),
    }
    assert summary.facts["missing in beta"].startswith("2 file(s)")
    assert table_of(out, "errors").num_rows == 4
    # the files: 16 kHz mono 5 s, at the recorded loudness, one per ok pair
    ok = [r for r in index if r["status"] == "ok"]
    assert len(list((out / "audio").rglob("*.flac"))) == len(ok) == 10
    by_id = {r["pair_id"]: r for r in rows}
    for r in ok:
        x, sr = sf.read(out / r["path"], dtype="float32")
        assert sr == 16_000 and x.shape == (SEGMENT_FRAMES,)
        assert abs(audio.loudness(x) - r["lufs"]) < 0.05
        expected, info = render_pair(by_id[r["pair_id"]], roots)
        assert np.abs(x - expected).max() < 1.0 / 32_000 and r["mix_gain_db"] == info["mix_gain_db"]
    # the cache saw the reuse: fewer decodes than sources used
    assert summary.counters["files_decoded"] < sum(len(r["sources"]) for r in rows)


def test_rerender_is_byte_identical_whatever_the_sharding(good_pairs, roots, tmp_path):
    folder = write_pairs(tmp_path / "pairs", good_pairs, per_file=3)
    a, b = tmp_path / "a", tmp_path / "b"
    _run(folder, roots, a, pairs_per_shard=4)
    _run(folder, roots, b, pairs_per_shard=3, format="flac", cache_mb=1)
    files_a, files_b = read_dir_bytes(a, "audio/**/*.flac"), read_dir_bytes(b, "audio/**/*.flac")
    assert files_a == files_b and len(files_a) == len(good_pairs)
    assert table_of(a, "index").equals(table_of(b, "index"))
    c = tmp_path / "c"  # same parameters: every shard file is byte-identical too
    _run(folder, roots, c, pairs_per_shard=4)
    assert read_dir_bytes(a, "index/*.parquet") == read_dir_bytes(c, "index/*.parquet")
    assert read_dir_bytes(a, "audio/**/*") == read_dir_bytes(c, "audio/**/*")


def test_wav_format(good_pairs, roots, tmp_path):
    folder = write_pairs(tmp_path / "pairs", good_pairs[:3])
    _run(folder, roots, tmp_path / "out", format="wav")
    paths = table_of(tmp_path / "out", "index").column("path").to_pylist()
    assert all(p.endswith(".wav") for p in paths)
    assert sf.info(tmp_path / "out" / paths[0]).format == "WAV"


def test_resume_after_partial_run_and_after_a_killed_shard(good_pairs, roots, tmp_path):
    folder = write_pairs(tmp_path / "pairs", good_pairs)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    first = _run(folder, roots, out, pairs_per_shard=2, selection=ShardSelection(2, 0))
    assert first.shards_done_now == 3 and not first.finalized
    sd = StageDir(out)
    sd.stats_path(2).unlink()  # a shard killed after its files, before its marker
    second = _run(folder, roots, out, pairs_per_shard=2)
    assert second.shards_skipped == 2 and second.shards_done_now == 3 and second.finalized
    _run(folder, roots, fresh, pairs_per_shard=2)
    assert read_dir_bytes(out, "index/*.parquet") == read_dir_bytes(fresh, "index/*.parquet")
    assert read_dir_bytes(out, "audio/**/*") == read_dir_bytes(fresh, "audio/**/*")
    with pytest.raises(Exception, match="other parameters"):
        _run(folder, roots, out, pairs_per_shard=2, verify=False)


def test_hf_format_loads_with_datasets_offline(good_pairs, roots, tmp_path):
    import datasets
    from huggingface_hub import DatasetCard

    folder = write_pairs(tmp_path / "pairs", good_pairs)
    out = tmp_path / "hf"
    _run(folder, roots, out, format="hf", pairs_per_shard=4)
    _run(folder, roots, tmp_path / "flac", pairs_per_shard=4)
    ds = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf_cache"))  # not the shared cache
    assert ds.num_rows == len(good_pairs) and isinstance(ds.features["audio"], datasets.Audio)
    assert ds.features["audio"].sampling_rate == 16_000
    assert DatasetCard.load(out / "README.md").data.configs[0]["data_files"][0]["path"] == "data/*.parquet"
    ds = ds.cast_column("audio", datasets.Audio(decode=False))  # decoding needs torchcodec; bytes do not
    index = {r["pair_id"]: r for r in table_of(tmp_path / "flac", "index").to_pylist()}
    for row in ds:
        flac_file = (tmp_path / "flac" / index[row["pair_id"]]["path"]).read_bytes()
        assert row["audio"]["bytes"] == flac_file  # the same FLAC bytes as the file format
        assert row["lufs"] == pytest.approx(index[row["pair_id"]]["lufs"])
    assert not (out / "audio").exists()
    again = tmp_path / "hf2"
    _run(folder, roots, again, format="hf", pairs_per_shard=4)
    assert read_dir_bytes(out, "data/*.parquet") == read_dir_bytes(again, "data/*.parquet")
    assert (out / "README.md").read_bytes() == (again / "README.md").read_bytes()


def test_release_folder_and_dataset_inputs(good_pairs, roots, tmp_path, monkeypatch):
    import datasets

    # HubPairs calls load_dataset without a cache_dir: keep it off the shared ~/.cache (stale entries)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    release = tmp_path / "release"
    (release / "data").mkdir(parents=True)
    half = len(good_pairs) // 2
    for i, part in enumerate((good_pairs[:half], good_pairs[half:])):
        pq.write_table(schema.table(part, schema.PAIRS), release / "data" / f"train-{i:05d}-of-00002.parquet")
    (release / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files: data/train-*\n---\n")
    src = open_pairs(release)
    assert len(src.parts) == 2 and src.read(1, [0])[0]["pair_id"] == good_pairs[half]["pair_id"]
    # the same release through datasets.load_dataset (the hf:// path, given a local dataset folder)
    hub = HubPairs("hf://local", str(release))
    assert hub.pair_ids(0) == [p["pair_id"] for p in good_pairs]
    assert hub.read(0, [3])[0]["sources"] == src.read(0, [3])[0]["sources"]
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    _run(release, roots, out_a, pairs_per_shard=4)
    stage = RenderStage("hf://local", dict(roots), out=str(out_b), pairs_per_shard=4)
    stage._source = hub  # the Hub id resolved to the local folder (no network in tests)
    run_stage(stage, out_b, show_progress=False)
    assert read_dir_bytes(out_a, "audio/**/*") == read_dir_bytes(out_b, "audio/**/*")


def test_pairs_stage_folder_and_bad_inputs(good_pairs, roots, tmp_path):
    work = tmp_path / "w"
    sd = StageDir(work / "pairs")
    sd.prepare("retrieve", {}, 2)
    sd.write_shard(0, {"": schema.table(good_pairs[:4], schema.PAIRS)}, {"items": 4})
    with pytest.raises(PairSourceError, match="unfinished"):
        open_pairs(work)
    sd.write_shard(1, {"": schema.table(good_pairs[4:], schema.PAIRS)}, {"items": 6})
    assert [p["pair_id"] for p in open_pairs(work).read(1, range(6))] == [p["pair_id"] for p in good_pairs[4:]]
    with pytest.raises(PairSourceError):
        open_pairs(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PairSourceError, match="no pairs parquet"):
        open_pairs(tmp_path / "empty")
    with pytest.raises(InputError, match="--format"):
        RenderStage(str(work), dict(roots), out="x", format="mp3")


def test_duplicate_pair_ids_render_once(good_pairs, roots, tmp_path):
    folder = write_pairs(tmp_path / "pairs", [*good_pairs[:3], good_pairs[1]])
    summary = _run(folder, roots, tmp_path / "out")
    index = table_of(tmp_path / "out", "index").to_pylist()
    assert [r["status"] for r in index] == ["ok", "ok", "ok", "duplicate_pair_id"]
    assert summary.errors["duplicate_pair_id"] == 1
    assert json.loads((tmp_path / "out" / "_stage.json").read_text())["stage"] == "render"
