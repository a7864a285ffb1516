"""CLAP text and audio encoders (transformers `ClapModel`), returning L2-normalised float32 vectors.

Any LAION CLAP checkpoint in transformers format works by Hub id or local path; nothing is
loaded at import. The checkpoint's id and resolved revision are recorded so that retrieval can
refuse to compare text vectors from one CLAP with audio vectors from another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..settings import CLAP_BATCH_SIZE, CLAP_SAMPLE_RATE
from .device import load_device, torch_dtype
from .loading import load_encoder


@dataclass(frozen=True)
class ClapIdentity:
    """Which CLAP made a set of vectors: compared before text and audio vectors are matched."""

    model: str
    revision: str | None
    dim: int

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "revision": self.revision, "dim": self.dim}


TEXT_MAX_TOKENS = 77  # LAION CLAP tokenises captions to 77 tokens in training


def is_longer(num_samples: int, max_samples: int, hop_length: int) -> bool:
    """Whether a clip takes the fused path: longer than the model's window *in mel frames*.

    Mirrors the feature extractor's own test (a clip within one hop of the window is stacked, not
    fused), without its fallback of marking a random clip of the batch as longer when none is, which
    made a clip's vector depend on its batch and on the run. A 5-s window is never longer.
    """
    return num_samples > max_samples and num_samples // hop_length > max_samples // hop_length


def _pad_rows(t: Any, rows: int) -> Any:
    """Append zero rows to a batch tensor up to `rows` (a no-op when already that long)."""
    import torch

    if t.shape[0] >= rows:
        return t
    return torch.cat([t, t.new_zeros((rows - t.shape[0], *t.shape[1:]))])


class ClapEncoder:
    def __init__(
        self,
        model: str,
        device: str | None = "auto",
        dtype: str | None = "auto",
        revision: str | None = None,
        batch_size: int = CLAP_BATCH_SIZE,
    ):
        from transformers import ClapModel, ClapProcessor

        self.device = load_device(device)
        self.model, self.processor = load_encoder(
            ClapModel,
            ClapProcessor,
            model,
            what="CLAP",
            processor_role="processor",
            option="--clap",
            revision=revision,
            device=self.device,
            dtype=torch_dtype(dtype, self.device),
        )
        # unfused checkpoints take one mel channel ("rand_trunc"); fused ones four ("fusion")
        self.truncation = "fusion" if self.model.config.audio_config.enable_fusion else "rand_trunc"
        self.batch_size = batch_size
        commit = getattr(self.model.config, "_commit_hash", None)
        self.identity = ClapIdentity(
            model=model, revision=revision or commit, dim=int(self.model.config.projection_dim)
        )

    def _features(self, out: Any) -> np.ndarray:
        import torch

        emb = out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 5: a ModelOutput
        emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        return emb.cpu().numpy().astype(np.float32)

    def embed_audio(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """48 kHz mono float clips -> (n, dim) unit vectors.

        Every forward pass sees exactly `batch_size` clips (the last batch's features are topped up
        with zeros and the extra rows dropped): kernels pick their blocking from the input shape, so
        a clip's vector would otherwise change in the last bits with how many clips share its shard.
        """
        import torch

        out = []
        for i in range(0, len(clips), self.batch_size):
            batch = [np.asarray(c, dtype=np.float32) for c in clips[i : i + self.batch_size]]
            real = len(batch)
            inputs = self._audio_inputs(batch)
            inputs = {
                k: _pad_rows(v, self.batch_size).to(self.device, dtype=self.model.dtype)
                if v.is_floating_point()
                else _pad_rows(v, self.batch_size).to(self.device)
                for k, v in inputs.items()
            }
            with torch.inference_mode():
                out.append(self._features(self.model.get_audio_features(**inputs))[:real])
        return np.concatenate(out) if out else np.zeros((0, self.identity.dim), np.float32)

    def _audio_inputs(self, batch: list[np.ndarray]) -> dict[str, Any]:
        """Features of each clip on its own, with `is_longer` set from the clip's true length.

        Clips are featurised one by one under a fixed seed: the extractor crops clips longer than its
        window at random (both truncation modes), so a long clip's features would otherwise change
        with the run and with its batch. Clips up to the window involve no randomness at all.
        """
        import torch

        fe = self.processor.feature_extractor
        feats = []
        for clip in batch:
            saved = np.random.get_state()
            np.random.seed(0)
            try:
                one = fe([clip], sampling_rate=CLAP_SAMPLE_RATE, truncation=self.truncation, return_tensors="pt")
            finally:
                np.random.set_state(saved)
            feats.append(one["input_features"])
        longer = [[is_longer(len(c), fe.nb_max_samples, fe.hop_length)] for c in batch]
        return {"input_features": torch.cat(feats), "is_longer": torch.tensor(longer, dtype=torch.bool)}

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (n, dim) unit vectors.

        Tokens are padded to LAION CLAP's training length (77) and batches topped up to
        `batch_size`, for the same reason as audio: a text's vector must not depend on its company.
        """
        import torch

        max_len = min(TEXT_MAX_TOKENS, self.processor.tokenizer.model_max_length)
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = list(texts[i : i + self.batch_size])
            inputs = self.processor.tokenizer(
                batch, padding="max_length", max_length=max_len, truncation=True, return_tensors="pt"
            )
            inputs = {k: _pad_rows(v, self.batch_size).to(self.device) for k, v in inputs.items()}
            with torch.inference_mode():
                out.append(self._features(self.model.get_text_features(**inputs))[: len(batch)])
        return np.concatenate(out) if out else np.zeros((0, self.identity.dim), np.float32)
