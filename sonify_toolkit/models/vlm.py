"""Vision-language model engines: one interface, and the in-process transformers engine.

An engine turns a batch of RGB images plus one prompt into one `Generation` per image. Failures
are per image (`Generation.error`), never an exception for the whole batch, so a stage can write
error rows and go on. Any image-text-to-text checkpoint works by Hub id or local path: the
processor's chat template builds the prompt, so LLaVA, Qwen2.5-VL, Idefics, Gemma 3 ... need no
model-specific code. `trust_remote_code` (CogVLM and other custom models) only when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from ..settings import VLM_BATCH_SIZE, VLM_MAX_NEW_TOKENS, VLM_RETRY_TEMPERATURE
from .device import load_device, torch_dtype


@dataclass
class Generation:
    """One image's answer: the text (None on error), generated token count, error message."""

    text: str | None
    tokens: int = 0
    error: str | None = None


class VLMEngine(Protocol):
    model_id: str
    batch_size: int  # images the stage should hand over per call

    def generate(
        self, images: Sequence[Image.Image], prompt: str, sample_seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        """Greedy answers; with `sample_seeds` (one per image), sampled ones (the stage's retry of an
        unparsable answer). An image's sampled answer depends on its own seed only, never on its batch."""
        ...

    def close(self) -> None: ...


class TransformersVLM:
    """AutoProcessor + AutoModelForImageTextToText, batched (left padding), greedy by default."""

    def __init__(
        self,
        model: str,
        device: str | None = "auto",
        dtype: str | None = "auto",
        batch_size: int = VLM_BATCH_SIZE,
        max_new_tokens: int = VLM_MAX_NEW_TOKENS,
        trust_remote_code: bool = False,
        revision: str | None = None,
    ):
        import transformers
        from transformers import AutoProcessor

        self.model_id = model
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device = load_device(device)
        kw: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        self.processor = AutoProcessor.from_pretrained(model, **kw)
        dt = torch_dtype(dtype, self.device)
        last: Exception | None = None
        for cls_name in ("AutoModelForImageTextToText", "AutoModelForCausalLM"):  # custom VLMs: CausalLM
            try:
                self.model = getattr(transformers, cls_name).from_pretrained(model, dtype=dt, **kw)
                break
            except ValueError as exc:  # "Unrecognized configuration class ..."
                last = exc
        else:
            raise ValueError(f"{model} is not an image-text-to-text model: {last}")
        self.model.to(self.device).eval()
        tok = getattr(self.processor, "tokenizer", self.processor)
        tok.padding_side = "left"  # decoder-only batched generation continues from the right edge
        if tok.pad_token_id is None and tok.eos_token_id is not None:
            tok.pad_token = tok.eos_token
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.revision = revision or getattr(self.model.config, "_commit_hash", None)
        try:  # fail at setup, not once per image, when the checkpoint has no usable chat template
            self._prompt_text("test")
        except Exception as exc:
            raise ValueError(f"{model}: its processor cannot build a chat prompt with an image ({exc})") from exc

    def _prompt_text(self, prompt: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def _count_tokens(self, row: Any) -> int:
        ids = row.tolist()
        for i, t in enumerate(ids):
            if t in self.eos_ids:
                return i + 1
        return sum(1 for t in ids if t != self.pad_id)

    def _generate_batch(self, images: Sequence[Image.Image], prompt: str, sample_seed: int | None) -> list[Generation]:
        """Greedy for the batch, or sampled from `sample_seed` (then the caller passes one image)."""
        import torch

        text = self._prompt_text(prompt)
        inputs = self.processor(images=list(images), text=[text] * len(images), padding=True, return_tensors="pt")
        inputs = inputs.to(self.device, dtype=self.model.dtype)
        gen: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "pad_token_id": self.pad_id}
        if sample_seed is None:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            torch.manual_seed(sample_seed)
            gen.update(do_sample=True, temperature=VLM_RETRY_TEMPERATURE, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **gen)
        new = out[:, inputs["input_ids"].shape[1] :]
        texts = self.processor.batch_decode(new, skip_special_tokens=True)
        return [Generation(t.strip(), self._count_tokens(row)) for t, row in zip(texts, new, strict=True)]

    def _one(self, image: Image.Image, prompt: str, sample_seed: int | None) -> Generation:
        try:
            return self._generate_batch([image], prompt, sample_seed)[0]
        except Exception as exc:
            return Generation(None, 0, f"{type(exc).__name__}: {exc}")

    def generate(
        self, images: Sequence[Image.Image], prompt: str, sample_seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        """Greedy: one batched call; if the batch fails (e.g. out of memory), each image alone, so one
        bad image costs one error row. Sampled (rare retries): each image alone from its own seed, since
        one torch generator shared by a batch would tie an image's answer to its batch mates."""
        if sample_seeds is not None:
            return [self._one(img, prompt, seed) for img, seed in zip(images, sample_seeds, strict=True)]
        if not images:
            return []
        try:
            return self._generate_batch(images, prompt, None)
        except Exception:
            if len(images) == 1:
                return [self._one(images[0], prompt, None)]
            _empty_cache()
        return [self._one(img, prompt, None) for img in images]

    def close(self) -> None:
        self.model = None
        _empty_cache()


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def make_engine(kind: str, model: str, **options: Any) -> VLMEngine:
    """The engine named on the command line; options not meant for it are ignored."""
    if kind == "transformers":
        keys = ("device", "dtype", "batch_size", "max_new_tokens", "trust_remote_code", "revision")
        return TransformersVLM(model, **{k: v for k, v in options.items() if k in keys})
    if kind == "openai":
        from .vlm_openai import OpenAIVLM

        keys = ("base_url", "api_key", "concurrency", "timeout", "max_retries", "backoff", "max_new_tokens")
        return OpenAIVLM(model, **{k: v for k, v in options.items() if k in keys})
    raise ValueError(f"unknown VLM engine '{kind}' (choose: transformers, openai)")
