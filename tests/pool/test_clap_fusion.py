"""Fused LAION CLAP (`enable_fusion`, the `laion/clap-htsat-fused` kind): vectors independent of the batch.

transformers' feature extractor marks a random clip of each batch as "longer" when none is, so
without our own `is_longer` the same clips embedded twice, or alone vs in a batch, differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sonify_toolkit.demo.tiny_models import build_tiny_clap
from sonify_toolkit.models.clap import ClapEncoder, is_longer
from sonify_toolkit.settings import CLAP_SAMPLE_RATE


@pytest.fixture(scope="module")
def tiny_fused_clap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clap(tmp_path_factory.mktemp("fused_clap"), fused=True)


def clips(n: int, seconds: float = 5.0) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [(0.1 * rng.standard_normal(int(seconds * CLAP_SAMPLE_RATE))).astype(np.float32) for _ in range(n)]


def test_fused_vectors_alone_in_batches_and_twice_are_equal(tiny_fused_clap: Path) -> None:
    encoder = ClapEncoder(str(tiny_fused_clap), device="cpu", batch_size=4)
    assert encoder.truncation == "fusion"
    five = clips(5)
    batched = encoder.embed_audio(five)  # a batch of 4, then one clip topped up to 4
    again = encoder.embed_audio(five)
    alone = np.concatenate([encoder.embed_audio([c]) for c in five])
    np.testing.assert_array_equal(batched, again)
    np.testing.assert_array_equal(batched, alone)
    np.testing.assert_array_equal(encoder.embed_audio(five[2:4]), batched[2:4])


def test_a_clip_longer_than_the_window_is_fused_the_same_way_every_time(tiny_fused_clap: Path) -> None:
    encoder = ClapEncoder(str(tiny_fused_clap), device="cpu", batch_size=4)
    long, short = clips(1, seconds=12.0)[0], clips(1)[0]
    np.testing.assert_array_equal(encoder.embed_audio([long, short]), encoder.embed_audio([short, short, long])[[2, 0]])


def test_is_longer_comes_from_the_true_length() -> None:
    window, hop = 10 * CLAP_SAMPLE_RATE, 480
    assert not is_longer(5 * CLAP_SAMPLE_RATE, window, hop)  # the pool's 5-s windows: never
    assert not is_longer(window, window, hop)
    assert not is_longer(window + hop - 1, window, hop)  # within one mel frame: stacked, not fused
    assert is_longer(window + hop, window, hop)
    assert is_longer(12 * CLAP_SAMPLE_RATE, window, hop)
