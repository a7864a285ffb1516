"""Fixtures for the stage machinery tests: the pool's mixed corpus, a longer one to kill mid-run, a VLM server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.extract.conftest import FakeServer, serve_fake_vlm
from tests.pool.corpus import make_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("machinery_corpus"))


@pytest.fixture(scope="session")
def long_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 files of 20 s at 44.1 kHz: a run of a second or so, long enough to kill in the middle."""
    root = tmp_path_factory.mktemp("long_corpus")
    rng = np.random.default_rng(0)
    for i in range(24):
        x = (0.1 * rng.standard_normal(20 * 44_100)).astype(np.float32)
        sf.write(root / f"noise_{i:02d}.wav", x, 44_100, subtype="PCM_16")
    return root


@pytest.fixture
def vlm_server() -> Iterator[FakeServer]:
    """A loopback OpenAI-style VLM server that counts the requests it receives (answers by image colour)."""
    with serve_fake_vlm() as fake:
        yield fake
