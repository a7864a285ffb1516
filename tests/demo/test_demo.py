"""`sonify demo` (the README's main command) runs every stage end to end, offline, as a labelled smoke run."""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow.parquet as pq
import soundfile as sf
from typer.testing import CliRunner

from sonify_toolkit.cli import app
from sonify_toolkit.demo.assets import IMAGES_DIR, write_demo_sounds
from sonify_toolkit.demo.run import SMOKE_BANNER, hub_unreachable


def test_demo_offline_is_a_labelled_smoke_run(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--workdir", str(work), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "HF_HUB_OFFLINE is set" in result.output and SMOKE_BANNER in result.output

    # every stage finished, and the concepts the tiny VLM was taught flowed through to the pairs
    pairs = pq.read_table(sorted((work / "pairs").glob("*.parquet"))).to_pylist()
    assert len(pairs) == len(list(IMAGES_DIR.glob("*.jpg")))
    assert all(p["sources"] for p in pairs)
    assert {s["concept"] for p in pairs for s in p["sources"]} <= {"clock", "birds", "engine"}

    # the audio exists and is what render promises: 16 kHz mono, 5 s
    mixes = sorted((work / "render" / "audio").rglob("*.flac"))
    assert len(mixes) == len(pairs)
    info = sf.info(mixes[0])
    assert (info.samplerate, info.channels, info.frames) == (16_000, 1, 80_000)

    # the release loads offline, and the card and the report both say this is a smoke run
    release = datasets.load_dataset(str(work / "release"), split="train")
    assert sorted(release["pair_id"]) == sorted(p["pair_id"] for p in pairs)
    assert "SMOKE RUN" in (work / "release" / "README.md").read_text()
    assert "SMOKE RUN" in (work / "report" / "index.html").read_text()

    # rerunning resumes: no shard is redone (every completion marker is untouched)
    markers = {p: p.stat().st_mtime_ns for p in work.rglob("_stats/*.json")}
    assert len(markers) >= 6
    again = CliRunner().invoke(app, ["demo", "--workdir", str(work), "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in work.rglob("_stats/*.json")} == markers


def test_demo_exits_3_when_a_stage_left_error_rows(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    sounds = work / "inputs" / "sounds"
    write_demo_sounds(sounds)  # the demo keeps a sample already there ...
    (sounds / "broken.wav").write_bytes(b"RIFF" + b"\0" * 40)  # ... with one file no decoder reads
    result = CliRunner().invoke(app, ["demo", "--workdir", str(work), "--device", "cpu"])
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert "sonify demo: finished with item errors (pool: 1 in" in result.output
    assert (work / "release" / "README.md").exists()  # the run went to the end before saying so


def test_hub_check_respects_offline_mode(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_unreachable(["org/model"]) == "HF_HUB_OFFLINE is set"


def test_demo_sounds_cover_every_kind_with_labels(tmp_path: Path) -> None:
    out = write_demo_sounds(tmp_path, per_kind=1)
    lines = (out / "labels.csv").read_text().splitlines()
    files = sorted(out.rglob("*.flac"))
    assert lines[0] == "path,label" and len(lines) - 1 == len(files) >= 12
    for f in files:
        data, sr = sf.read(f)
        assert sr in (16_000, 22_050, 44_100) and 0.05 < abs(data).max() <= 1.0
