"""The in-process vision-language engine: any image-text-to-text checkpoint through transformers.

Any checkpoint works by Hub id or local path: the processor's chat template builds the prompt, so
LLaVA, Qwen2.5-VL, Idefics, Gemma 3 ... need no model-specific code. `trust_remote_code` (CogVLM
and other custom models) only when asked. The interface it implements is `vlm_engine.VLMEngine`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from ..errors import ModelLoadError
from ..settings import VLM_BATCH_SIZE, VLM_MAX_NEW_TOKENS, VLM_RETRY_TEMPERATURE
from .device import load_device, torch_dtype
from .vlm_engine import Generation


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
        try:  # not found, offline, or a folder transformers does not recognise: the user's choice of --vlm
            self.processor = AutoProcessor.from_pretrained(model, **kw)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the processor of {model}: {exc}") from exc
        dt = torch_dtype(dtype, self.device)
        last: Exception | None = None
        for cls_name in ("AutoModelForImageTextToText", "AutoModelForCausalLM"):  # custom VLMs: CausalLM
            try:
                self.model = getattr(transformers, cls_name).from_pretrained(model, dtype=dt, **kw)
                break
            except ValueError as exc:  # "Unrecognized configuration class ..."
                last = exc
        else:
            raise ModelLoadError(f"{model} is not an image-text-to-text model: {last}")
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
            raise ModelLoadError(f"{model}: its processor cannot build a chat prompt with an image ({exc})") from exc

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
