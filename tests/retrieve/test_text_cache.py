"""The text-vector cache: round trip, separation by encoder, reuse across instances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sonify_toolkit.stages.retrieve.text_cache import TextVectorCache

ENC = {"model": "m", "revision": None, "dim": 3}


def test_put_then_get_across_instances(tmp_path: Path) -> None:
    TextVectorCache(tmp_path, ENC).put(["a dog", "rain"], np.array([[1, 0, 0], [0, 1, 0]], np.float32))
    cache = TextVectorCache(tmp_path, ENC)
    vecs, found = cache.get(["rain", "wind", "a dog"])
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(vecs, [[0, 1, 0], [0, 0, 0], [1, 0, 0]])
    cache.put(["wind"], np.array([[0, 0, 1]], np.float32))
    assert cache.get(["wind"])[1].all()  # files written after the first lookup are seen too


def test_another_encoder_does_not_see_the_vectors(tmp_path: Path) -> None:
    TextVectorCache(tmp_path, ENC).put(["a dog"], np.ones((1, 3), np.float32))
    other = TextVectorCache(tmp_path, {**ENC, "revision": "abc"})
    assert not other.get(["a dog"])[1].any()


def test_wrong_shape_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vectors"):
        TextVectorCache(tmp_path, ENC).put(["a"], np.ones((1, 4), np.float32))
