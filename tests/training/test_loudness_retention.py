"""loudness_retention (Fig. 15): the 1-NN experiment on known embedders, and the command on the tiny AST."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sonify_toolkit import audio as au
from tests.training.conftest import tone
from training_recipe.loudness_retention import loudness_retention, retention_curve


def _clips(n: int = 4) -> list[np.ndarray]:
    return [tone(200.0 * (i + 1), 1.0) for i in range(n)]


def test_an_embedder_blind_to_gain_keeps_full_accuracy() -> None:
    def spectrum_shape(clips):  # unit-normalised magnitude spectrum: gain cancels out
        return np.stack([np.abs(np.fft.rfft(c))[:2000] / np.linalg.norm(c) for c in clips])

    rows = retention_curve(spectrum_shape, _clips(), [0, 24, 48], variants=4)
    assert [r["accuracy"] for r in rows] == [1.0, 1.0, 1.0]
    assert all(r["own_cosine"] == pytest.approx(1.0) for r in rows)


def test_an_embedder_that_keeps_loudness_loses_accuracy_as_the_range_widens() -> None:
    def level_shifted(clips):  # the spectrum slides with the level: loud enough, a clip looks like another
        out = []
        for c in clips:
            spec = np.convolve(np.abs(np.fft.rfft(c))[:4000], np.ones(60), mode="same")
            out.append(np.roll(spec, round(8 * (au.loudness(c) + 23.0))))
        return np.stack(out)

    clips = [au.normalize_loudness(c, au.loudness(c), -23.0) for c in _clips(6)]
    rows = retention_curve(level_shifted, clips, [0, 6, 48], variants=8, seed=1)
    assert rows[0]["accuracy"] == 1.0 and rows[0]["samples"] == 48
    assert rows[-1]["accuracy"] < rows[0]["accuracy"] and rows[-1]["own_cosine"] < rows[1]["own_cosine"]


def test_the_command_writes_the_curve_with_the_tiny_ast(tiny_ast, tmp_path, capsys) -> None:
    files = []
    for i, clip in enumerate(_clips(3)):
        files.append(tmp_path / f"c{i}.flac")
        files[-1].write_bytes(au.encode(clip))
    loudness_retention(
        out=tmp_path / "fig15", audio_files=files, range_db=[0, 24], variants=2, ast=str(tiny_ast), device="cpu"
    )
    result = json.loads((tmp_path / "fig15.json").read_text())
    assert result["clips"] == 3 and [r["range_db"] for r in result["rows"]] == [0.0, 24.0]
    assert result["rows"][0]["accuracy"] == 1.0  # no gain: every clip is its own nearest reference
    assert (tmp_path / "fig15.png").stat().st_size > 0
    assert "range  24.0 dB" in capsys.readouterr().out
