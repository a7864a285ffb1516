"""Nothing skipped in silence, nothing implausible decoded: every entry under a root is a segment
source, a counted other file or an error row, and files no recording could be are refused from
their header (or their samples) before they cost time or memory."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sonify_toolkit import audio, schema
from sonify_toolkit.fileio import scan_tree
from sonify_toolkit.pool_files import pool_dir
from sonify_toolkit.runner import run_stage
from sonify_toolkit.settings import AUDIO_EXTENSIONS
from sonify_toolkit.shards import StageDir
from sonify_toolkit.stages.pool import PoolInputError, PoolSegmentsStage
from tests.pool.conftest import write_tone


def wav_bytes(x: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def with_rate(data: bytes, rate: int) -> bytes:
    """The same WAV with another sample rate in its header (and the byte rate to match)."""
    channels, bits = struct.unpack_from("<H", data, 22)[0], struct.unpack_from("<H", data, 34)[0]
    return data[:24] + struct.pack("<II", rate, rate * channels * bits // 8) + data[32:]


def pool(root: Path, work: Path, **kw) -> tuple[list[dict], dict[str, str], list[dict], object]:
    summary = run_stage(PoolSegmentsStage({"c": str(root)}, files_per_shard=3, **kw), work, show_progress=False)
    sd = StageDir(pool_dir(work))
    segs = sd.read_table("segments", schema.POOL_SEGMENTS).to_pylist()
    errors = {r["item"]: r["reason"] for r in sd.read_table("errors", schema.ERRORS).to_pylist()}
    return segs, errors, sd.stats(), summary


def test_every_entry_is_a_segment_source_a_counted_file_or_an_error_row(tmp_path: Path) -> None:
    root = tmp_path / "c"
    write_tone(root / "a.wav", 440, 16_000, 6.0)
    write_tone(root / "deep/b.flac", 440, 22_050, 3.0)
    for name in ("notes.txt", "deep/cover.jpg", "deep/meta.JSON", "README", "deep/c.xml", "deep/d.xml"):
        (root / name).write_text("not audio")
    (root / ".DS_Store").write_text("x")
    (root / "._a.wav").write_text("x")
    (root / "gone.wav").symlink_to(root / "deleted.wav")  # dangling
    (root / "loop").symlink_to(root / "deep")  # a symlinked folder: counted, not followed
    (root / "escape.wav").symlink_to(tmp_path / "outside.wav")
    write_tone(tmp_path / "outside.wav", 440, 16_000, 1.0)
    os.mkfifo(root / "pipe.wav")
    (root / "locked").mkdir()
    write_tone(root / "locked/x.wav", 440, 16_000, 1.0)

    real_scandir = os.scandir

    def scandir(path):  # the OS refusing one folder (tests run as root: chmod would not stop them)
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "scandir", scandir)
        scan = scan_tree(root, AUDIO_EXTENSIONS)
        segs, errors, stats, summary = pool(root, tmp_path / "w")
    assert scan.files == ["a.wav", "deep/b.flac"]
    assert errors == {
        "c/gone.wav": "dangling_symlink",
        "c/escape.wav": "symlink_outside_root",
        "c/pipe.wav": "not_a_regular_file",
        "c/locked": "permission_denied",
    }
    assert {r["path"] for r in segs} == {"a.wav", "deep/b.flac"}
    other = {".txt": 1, ".jpg": 1, ".json": 1, "(none)": 1, ".xml": 2, "hidden": 2, "symlinked folder": 1}
    counted = {}
    for st in stats:
        counted.update({k.removeprefix("skipped "): v for k, v in st["counters"].items() if k.startswith("skipped ")})
    assert counted == other  # in the stage's stats ...
    assert all(summary.counters[f"skipped {k}"] == v for k, v in other.items())  # ... the run's summary
    assert "xml: 2" in summary.facts["not audio (skipped)"]
    manifest = json.loads((pool_dir(tmp_path / "w") / "manifest.json").read_text())
    assert manifest["segments"]["skipped"] == dict(sorted(other.items()))


def test_a_root_without_audio_says_what_it_holds(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.txt").write_text("x")
    (tmp_path / "c.csv").write_text("x")
    with pytest.raises(PoolInputError, match=r"no audio files .* \(found: 1 \.csv, 2 \.txt\)"):
        PoolSegmentsStage({"x": str(tmp_path)}).plan()


def test_implausible_files_are_error_rows_decided_before_decoding(tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(48_000) / 16_000)).astype(np.float32)
    good = wav_bytes(tone, 16_000)
    (root / "one_hz.wav").write_bytes(with_rate(good, 1))  # 192 KB claiming 96,000 s of audio
    (root / "fast.wav").write_bytes(with_rate(good, 768_000))
    (root / "long.wav").write_bytes(good)  # 3 s against a 2-s cap
    (root / "absurd.wav").write_bytes(wav_bytes(np.full(16_000, 3e29, np.float32), 16_000, "FLOAT"))
    nan = tone[:16_000].copy()
    nan[100] = np.nan
    (root / "nan.wav").write_bytes(wav_bytes(nan, 16_000, "FLOAT"))
    (root / "hot.wav").write_bytes(wav_bytes(4.0 * tone[:16_000], 16_000, "FLOAT"))  # over full scale, still audio
    (root / "short.wav").write_bytes(wav_bytes(tone[:16_000], 16_000))
    segs, errors, _, _ = pool(root, tmp_path / "w", max_seconds=2.0)
    assert errors == {
        "c/one_hz.wav": "implausible_sample_rate",
        "c/fast.wav": "implausible_sample_rate",
        "c/long.wav": "too_long",
        "c/absurd.wav": "implausible_samples",
        "c/nan.wav": "non_finite_samples",
    }
    assert sorted({r["path"] for r in segs}) == ["hot.wav", "short.wav"]
    _, errors, _, _ = pool(root, tmp_path / "w2")  # the default cap: hour-long files are fine
    assert set(errors) == {"c/one_hz.wav", "c/fast.wav", "c/absurd.wav", "c/nan.wav"}


def test_decode_errors_name_no_object_or_path(tmp_path: Path) -> None:
    (tmp_path / "x.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(64))  # an MP4 header, nothing after
    for source in (tmp_path / "x.m4a", (tmp_path / "x.m4a").read_bytes(), b"junk" * 100):
        with pytest.raises(audio.AudioDecodeError) as info:
            audio.load_standard(source)
        assert "0x" not in str(info.value) and str(tmp_path) not in str(info.value) and "<" not in str(info.value)
