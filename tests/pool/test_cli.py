"""`sonify pool` end to end: CLAP embeddings with a tiny random ClapModel loaded by path, the
manifest (and the faiss index on request), `--no-embed` then embed later, bad roots, and the installed entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from sonify_toolkit import audio, schema
from sonify_toolkit.errors import EXIT_ITEM_ERRORS
from sonify_toolkit.models.clap import ClapEncoder
from sonify_toolkit.pool_files import load_pool, pool_dir
from sonify_toolkit.settings import CLAP_SAMPLE_RATE, SEGMENT_SECONDS
from sonify_toolkit.shards import StageDir
from sonify_toolkit.stages.pool import PoolEmbedStage
from tests.pool.cli_helpers import embeddings, errors, manifest, pool_args, segments, sonify
from tests.pool.corpus import BAD

ITEMS = EXIT_ITEM_ERRORS  # the run finished; some items are error rows


@pytest.fixture(scope="module")
def embedded(corpus: Path, tiny_clap: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("embedded")
    result = sonify(*pool_args(corpus, work, tiny_clap, "5"), "-q", expect=EXIT_ITEM_ERRORS)  # the corpus's BAD files
    assert "errors" in result.stdout and "embeddings" in result.stdout
    return work


def test_embeddings_are_unit_vectors_aligned_with_segments(embedded: Path) -> None:
    emb = embeddings(embedded)
    assert emb.dtype == np.float32 and emb.shape == (segments(embedded).num_rows, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_embedding_rows_are_the_clap_vectors_of_their_own_windows(embedded: Path, corpus: Path, tiny_clap) -> None:
    """Row i of the matrix is segment row i, fed from the original file at 48 kHz (not the 16 kHz copy)."""
    segs = segments(embedded).to_pylist()
    emb = embeddings(embedded)
    encoder = ClapEncoder(str(tiny_clap), device="cpu")
    win = int(CLAP_SAMPLE_RATE * SEGMENT_SECONDS)
    picks = [
        i for i, r in enumerate(segs) if r["path"] in ("quiet/g_silence_then_tone.wav", "tones/c_48k_mono_long.wav")
    ]
    clips = [
        audio.window(audio.load_standard(corpus / segs[i]["path"], CLAP_SAMPLE_RATE), segs[i]["segment"], win)[0]
        for i in picks
    ]
    np.testing.assert_allclose(encoder.embed_audio(clips), emb[picks], atol=1e-5)


def test_manifest_and_memory_mapped_vectors_without_a_faiss_index(embedded: Path, tiny_clap: Path) -> None:
    n = segments(embedded).num_rows
    assert not (pool_dir(embedded) / "clap" / "index.faiss").exists()  # exact search reads the shard files
    m = manifest(embedded)
    assert m["clap"]["model"] == str(tiny_clap) and m["clap"]["dim"] == 16 and m["clap"]["count"] == n == 14
    assert m["clap"]["index_type"] is None and "revision" in m["clap"]
    assert m["segments"]["count"] == n
    view = load_pool(embedded)
    assert view.segments.column("row").to_pylist() == list(range(n)) and view.embeddings.shape == (n, 16)
    assert np.array_equal(np.asarray(view.embeddings), embeddings(embedded))


def test_faiss_index_on_request(embedded: Path, tiny_clap: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    shutil.copytree(embedded, work)
    PoolEmbedStage({"syn": "."}, model=str(tiny_clap), device="cpu", faiss_index=True).finalize(work)
    index = faiss.read_index(str(pool_dir(work) / "clap" / "index.faiss"))
    assert index.ntotal == 14 and index.d == 16
    vectors = embeddings(work)
    scores, ids = index.search(vectors[:3], 1)
    # each query finds itself, or a row with the same vector (two 5-s windows of one steady tone)
    assert np.allclose(vectors[ids[:, 0]], vectors[:3], atol=1e-3) and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert manifest(work)["clap"]["index_type"] == "IndexFlatIP"


def test_error_rows_and_summary(embedded: Path) -> None:
    assert sorted(errors(embedded).column("reason").to_pylist()) == sorted(BAD.values())


def test_no_embed_then_embed_reuses_segments(corpus: Path, tiny_clap: Path, tmp_path: Path) -> None:
    sonify("pool", f"syn={corpus}", "--workdir", tmp_path, "--no-embed", "--shard-size", "5", "-q", expect=ITEMS)
    assert "clap" not in manifest(tmp_path) and not (pool_dir(tmp_path) / "clap").exists()
    with pytest.raises(FileNotFoundError, match="no CLAP embeddings"):
        load_pool(tmp_path)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (pool_dir(tmp_path) / "segments").glob("*.parquet")}
    stats_before = {p: p.stat().st_mtime_ns for p in (pool_dir(tmp_path) / "_stats").glob("*.json")}
    out = sonify(
        "pool", f"syn={corpus}", "--workdir", tmp_path, "--clap", tiny_clap, "--shard-size", "5", "-q", expect=ITEMS
    ).stdout
    assert "0 done now, 3 skipped" in out
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (pool_dir(tmp_path) / "segments").glob("*.parquet")}
    assert before == after and stats_before == {p: p.stat().st_mtime_ns for p in stats_before}
    assert embeddings(tmp_path).shape[0] == segments(tmp_path).num_rows == manifest(tmp_path)["clap"]["count"]


def test_label_change_is_refused_until_overwrite(corpus: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\ntones/e_8k_u8.wav,Beep\n")
    work = tmp_path / "w"
    sonify("pool", f"syn={corpus}", "--workdir", work, "--no-embed", "--labels", f"syn={labels}", "-q", expect=ITEMS)
    labels.write_text("path,label\ntones/e_8k_u8.wav,Whistle\n")
    refused = sonify(
        "pool", f"syn={corpus}", "--workdir", work, "--no-embed", "--labels", f"syn={labels}", "-q", expect=2
    )
    assert "other parameters (changed: label_files)" in refused.stderr and "--overwrite" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    sonify(
        "pool", f"syn={corpus}", "--workdir", work, "--no-embed", "--labels", f"syn={labels}", "--overwrite", "-q",
        expect=ITEMS,
    )  # fmt: skip
    by_path = {r["path"]: r["labels"] for r in segments(work).to_pylist()}
    assert by_path["tones/e_8k_u8.wav"] == ["Whistle"]


@pytest.mark.parametrize("case", ["missing", "no_audio", "bad_assignment", "unknown_labels", "bad_labels"])
def test_unusable_input_is_one_line_and_exit_2(tmp_path: Path, corpus: Path, case: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("nothing to hear")
    (tmp_path / "segments.csv").write_text("# YTID, start_seconds, end_seconds, positive_labels\n")  # no class index
    args = {
        "missing": [f"x={tmp_path / 'nope'}"],
        "no_audio": [f"x={tmp_path / 'empty'}"],
        "bad_assignment": [str(corpus)],
        "unknown_labels": [f"x={corpus}", "--labels", f"y={tmp_path / 'l.csv'}"],
        "bad_labels": [f"x={corpus}", "--labels", f"x={tmp_path / 'segments.csv'}", "--workers", "2"],
    }[case]
    result = sonify("pool", *args, "--workdir", tmp_path / "w", "--no-embed", expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sonify pool: error:") and "Traceback" not in result.output
    if case == "bad_labels":
        assert "class_labels_indices.csv" in lines[0] and not (tmp_path / "w" / "pool" / "_stats").exists()


def test_installed_entry_point(corpus: Path, tmp_path: Path) -> None:
    exe = shutil.which("sonify", path=str(Path(sys.executable).parent)) or shutil.which("sonify")
    assert exe, "the `sonify` console script is not installed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ok = subprocess.run(
        [exe, "pool", f"syn={corpus}", "--workdir", str(tmp_path), "--no-embed", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == EXIT_ITEM_ERRORS, ok.stderr  # finished; the corpus's BAD files are error rows
    assert "rows: segments" in ok.stdout and "14" in ok.stdout and "truncated" in ok.stdout
    bad = subprocess.run(
        [exe, "pool", f"x={tmp_path / 'nope'}", "--workdir", str(tmp_path / "w2"), "--no-embed"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "is not a folder" in bad.stderr


def test_clap_vectors_do_not_depend_on_batch_company(tiny_clap: Path) -> None:
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(int(CLAP_SAMPLE_RATE * SEGMENT_SECONDS)).astype(np.float32) for _ in range(5)]
    encoder = ClapEncoder(str(tiny_clap), device="cpu", batch_size=4)
    together = encoder.embed_audio(clips)
    np.testing.assert_array_equal(encoder.embed_audio(clips[3:4]), together[3:4])
    np.testing.assert_array_equal(encoder.embed_audio(clips[1:3]), together[1:3])
    assert encoder.embed_audio([]).shape == (0, 16)


def test_text_vectors_do_not_depend_on_batch_company(tiny_clap: Path) -> None:
    texts = ["a dog barking", "rain falling on a tin roof in the distance at night", "a sine tone", "siren", "birds"]
    encoder = ClapEncoder(str(tiny_clap), device="cpu", batch_size=4)
    together = encoder.embed_text(texts)
    assert together.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(encoder.embed_text(texts[1:2]), together[1:2])
    np.testing.assert_array_equal(encoder.embed_text(texts[4:]), together[4:])
    assert not np.allclose(together[0], together[1])
    assert encoder.embed_text([]).shape == (0, 16)


def test_a_file_changed_between_segments_and_embeddings_is_an_error_row(tiny_clap: Path, tmp_path: Path) -> None:
    from tests.pool.conftest import write_tone

    root = tmp_path / "sounds"
    write_tone(root / "a.wav", 440, 16_000, 7.0)
    write_tone(root / "b.flac", 880, 44_100, 3.0)
    work = tmp_path / "w"
    sonify("pool", f"s={root}", "--workdir", work, "--no-embed", "-q")
    write_tone(root / "a.wav", 660, 16_000, 7.0)  # replaced after its segments were measured
    args = ["pool", f"s={root}", "--workdir", work, "--clap", tiny_clap, "--batch-size", "4", "-q"]
    out = sonify(*args, expect=ITEMS).stdout
    assert "source_changed" in out
    clap_errors = StageDir(pool_dir(work) / "clap").read_table("errors", schema.ERRORS).to_pylist()
    assert [(e["item"], e["reason"]) for e in clap_errors] == [(f"s/a.wav#{i}", "source_changed") for i in (0, 1)]
    emb = embeddings(work)
    assert emb.shape == (3, 16) and not emb[:2].any() and np.linalg.norm(emb[2]) == pytest.approx(1.0, abs=1e-5)
