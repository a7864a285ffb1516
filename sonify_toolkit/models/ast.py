"""AST audio features (transformers `ASTModel`): the paper's audio representation (section 3.4).

The feature is a vector time series. AST cuts the 128-bin log-mel spectrogram (1024 frames of 10 ms,
i.e. 10.24 s; shorter clips are zero-padded) into 16x16 patches with stride 10: 12 frequency x 101 time
patches, plus 2 special tokens (CLS, distillation). We take the last hidden state, drop the 2 special
tokens, reshape the 1212 patch tokens to (12 frequency, 101 time) — AST flattens its patch grid
frequency-major — and average over frequency: one `hidden_size` vector (768 for the released AST) per
time step of ~100 ms, shape (101, 768). The temporal axis is what lets the generator see sources that
follow one another (`--arrange sequence`), and the per-step vectors keep loudness cues (paper A.8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from ..settings import SAMPLE_RATE
from .device import load_device, torch_dtype
from .loading import load_encoder

DEFAULT_AST = "MIT/ast-finetuned-audioset-10-10-0.4593"
AST_BATCH_SIZE = 16


@dataclass(frozen=True)
class AstGrid:
    """The patch grid of an AST config: how the token sequence maps back to (frequency, time)."""

    freq: int
    time: int
    special: int = 2  # CLS + distillation tokens come first

    @classmethod
    def from_config(cls, cfg: Any) -> AstGrid:
        freq = (cfg.num_mel_bins - cfg.patch_size) // cfg.frequency_stride + 1
        time = (cfg.max_length - cfg.patch_size) // cfg.time_stride + 1
        return cls(freq=freq, time=time)


def frequency_mean(last_hidden_state: Any, grid: AstGrid) -> Any:
    """(B, special + F*T, D) tokens -> (B, T, D): drop the special tokens, average the F patches per step."""
    tokens = last_hidden_state[:, grid.special :, :]
    b, n, d = tokens.shape
    if n != grid.freq * grid.time:
        raise ValueError(f"AST returned {n} patch tokens, expected {grid.freq}x{grid.time}")
    return tokens.reshape(b, grid.freq, grid.time, d).mean(dim=1)


class AstEncoder:
    """16 kHz mono clips -> (n, time steps, hidden) float32 feature sequences."""

    def __init__(
        self,
        model: str = DEFAULT_AST,
        device: str | None = "auto",
        dtype: str | None = "auto",
        revision: str | None = None,
        batch_size: int = AST_BATCH_SIZE,
    ):
        from transformers import ASTFeatureExtractor, ASTModel

        self.device = load_device(device)
        self.model, self.extractor = load_encoder(
            ASTModel,
            ASTFeatureExtractor,
            model,
            what="AST",
            processor_role="feature extractor",
            option="--ast",
            revision=revision,
            device=self.device,
            dtype=torch_dtype(dtype, self.device),
        )
        if self.extractor.sampling_rate != SAMPLE_RATE:
            raise ModelLoadError(f"AST feature extractor expects {self.extractor.sampling_rate} Hz, not {SAMPLE_RATE}")
        self.grid = AstGrid.from_config(self.model.config)
        self.dim = int(self.model.config.hidden_size)
        self.batch_size = batch_size
        self.identity = {
            "model": model,
            "revision": revision or getattr(self.model.config, "_commit_hash", None),
            "shape": [self.grid.time, self.dim],
            "feature": "last_hidden_state, special tokens dropped, mean over frequency patches",
        }

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.time, self.dim

    def encode(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Clips at 16 kHz (longer than max_length frames are truncated by the extractor)."""
        import torch

        out = []
        for i in range(0, len(clips), self.batch_size):
            batch = [np.asarray(c, dtype=np.float32) for c in clips[i : i + self.batch_size]]
            inputs = self.extractor(batch, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            values = inputs["input_values"].to(self.device, dtype=self.model.dtype)
            with torch.inference_mode():
                hidden = self.model(input_values=values).last_hidden_state
            out.append(frequency_mean(hidden.float(), self.grid).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, *self.shape), np.float32)
