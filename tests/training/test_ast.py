"""The AST adapter: the (frequency, time) patch grid and the frequency mean, on the tiny AST."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sonify_toolkit.models.ast import AstEncoder, AstGrid, frequency_mean
from tests.training.conftest import tone


def test_frequency_mean_undoes_asts_frequency_major_flattening() -> None:
    grid = AstGrid(freq=3, time=4)
    # AST flattens its conv output (B, D, F, T) frequency-major: token 2 + f*T + t holds patch (f, t)
    f, t = np.meshgrid(np.arange(3), np.arange(4), indexing="ij")
    tokens = torch.tensor(np.concatenate([[-1.0, -1.0], (10 * f + t).reshape(-1)]), dtype=torch.float32)
    out = frequency_mean(tokens.reshape(1, -1, 1), grid)
    np.testing.assert_allclose(out[0, :, 0].numpy(), 10 * 1 + np.arange(4))  # mean over f of 10f + t
    with pytest.raises(ValueError, match="patch tokens"):
        frequency_mean(torch.zeros(1, 5, 1), grid)


def test_encoder_shapes_on_the_released_grid(tiny_ast) -> None:
    enc = AstEncoder(str(tiny_ast), device="cpu", dtype="fp32", batch_size=2)
    assert (enc.grid.freq, enc.grid.time) == (12, 101) and enc.shape == (101, 32)
    feats = enc.encode([tone(440.0), tone(880.0, 2.0), tone(220.0, 12.0)])  # 5 s, short, longer than 10.24 s
    assert feats.shape == (3, 101, 32) and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert enc.identity["shape"] == [101, 32]
