"""`sonify pool --max-seconds` and `--faiss-index`, and the command line `_stage.json` records in-process."""

from __future__ import annotations

import json
from pathlib import Path

import faiss

from sonify_toolkit.errors import EXIT_ITEM_ERRORS
from sonify_toolkit.pool_files import pool_dir
from tests.pool.cli_helpers import errors, manifest, pool_args, segments, shard_files, sonify


def test_max_seconds_makes_longer_recordings_error_rows(corpus: Path, tmp_path: Path) -> None:
    sonify(*pool_args(corpus, tmp_path, shard_size=50), "--max-seconds", "10", "-q", expect=EXIT_ITEM_ERRORS)
    too_long = [r["item"] for r in errors(tmp_path).to_pylist() if r["reason"] == "too_long"]
    assert sorted(too_long) == ["syn/quiet/g_silence_then_tone.wav", "syn/tones/c_48k_mono_long.wav"]
    assert not {"quiet/g_silence_then_tone.wav", "tones/c_48k_mono_long.wav"} & set(
        segments(tmp_path).column("path").to_pylist()
    )
    stage = json.loads((pool_dir(tmp_path) / "_stage.json").read_text())
    assert stage["params"]["max_seconds"] == 10


def test_max_seconds_must_be_positive(corpus: Path, tmp_path: Path) -> None:
    result = sonify(*pool_args(corpus, tmp_path), "--max-seconds", "0", expect=2)
    assert "--max-seconds" in result.output


def test_faiss_index_asked_for_later_reuses_every_shard(corpus: Path, tiny_clap: Path, tmp_path: Path) -> None:
    args = [*pool_args(corpus, tmp_path, tiny_clap, shard_size=5), "-q"]
    sonify(*args, expect=EXIT_ITEM_ERRORS)
    assert not (pool_dir(tmp_path) / "clap" / "index.faiss").exists()
    before = shard_files(tmp_path)

    out = sonify(*args, "--faiss-index", expect=EXIT_ITEM_ERRORS).stdout  # no --overwrite: only finalize changes
    assert "0 done now" in out
    index = faiss.read_index(str(pool_dir(tmp_path) / "clap" / "index.faiss"))
    assert index.ntotal == segments(tmp_path).num_rows and manifest(tmp_path)["clap"]["index_type"] == "IndexFlatIP"
    after = shard_files(tmp_path)
    assert {k: v for k, v in after.items() if not k.endswith(".faiss")} == before


def test_stage_json_records_the_sonify_command_line_in_process(corpus: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    sonify(*pool_args(corpus, work, shard_size=4), "--max-seconds", "60", "-q", expect=EXIT_ITEM_ERRORS)
    argv = json.loads((pool_dir(work) / "_stage.json").read_text())["argv"]
    assert argv[:2] == ["sonify", "pool"]
    # the work directory as {workdir}: the record stays true when the work directory moves
    assert argv[2:] == [f"syn={corpus}", "--workdir", "{workdir}", "--no-embed", "--shard-size", "4",
                        "--max-seconds", "60.0", "--quiet"]  # fmt: skip
