"""Synthetic recordings for the pool tests: known tones at several rates, channel counts, bit
depths, formats and lengths, plus the corrupt files real collections contain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.pool.corpus import make_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small mixed collection with corrupt files (see `corpus.CORPUS` for what each file is)."""
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def write_tone(path: Path, freq: float, sr: int, seconds: float, channels: int = 1, amp: float = 0.3, **kw) -> Path:
    t = np.arange(round(sr * seconds)) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), sr, **kw)
    return path
