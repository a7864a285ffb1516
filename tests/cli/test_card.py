"""Point 7 (card): `language: en`, VLM text escaped, and the documented way to decode the audio column works."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
import soundfile as sf
import yaml
from datasets import Audio, load_dataset

from sonify_toolkit import schema
from tests.publish.synthetic import make_workdir

from .conftest import sonify

HOSTILE = '<img src=x onerror="alert(1)"> [click](javascript:alert(1)) **loud** dog'


def _poison_first_concept(workdir: Path) -> None:
    path = workdir / "pairs" / "00000.parquet"
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        for source in row["sources"]:
            source["concept"] = HOSTILE  # a VLM answer, verbatim: the most frequent concept now
    pq.write_table(schema.table(rows, schema.PAIRS), path)


def test_card_language_escaping_and_audio_decoding(tmp_path: Path) -> None:
    w = make_workdir(tmp_path)
    _poison_first_concept(w)
    release = tmp_path / "release"
    out = sonify("publish", "-w", w, "--out", release, "--rendered", w / "render")
    assert out.exit_code == 0, out.output
    card = (release / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["language"] == ["en"]
    body = card.split("---", 2)[2]
    assert "<img" not in body and "&lt;img src=x" in body
    assert "\\[click\\](javascript:alert(1))" in body and "\\*\\*loud\\*\\*" in body
    assert "### Scores" in body and "Audio(decode=False)" in body and "sf.read(io.BytesIO(" in body

    # the card's snippet, run as written (with the local folder for the repo id): no torchcodec needed
    mixes = load_dataset(str(release), "rendered_audio", split="train")
    mixes = mixes.cast_column("audio", Audio(decode=False))
    wave, sample_rate = sf.read(io.BytesIO(mixes[0]["audio"]["bytes"]), dtype="float32")
    assert sample_rate == 16_000 and wave.shape == (80_000,)
