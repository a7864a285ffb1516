"""The in-process vision-language engine: any image-text-to-text checkpoint through transformers.

Any checkpoint works by Hub id or local path, in one of two ways:

- chat template: the processor's template builds the prompt and the processor the tensors, so
  LLaVA, Qwen2.5-VL, Idefics, Gemma 3 ... need no model-specific code;
- the model builds its own inputs: CogVLM and CogVLM2 (remote code, `trust_remote_code`) have no
  chat template; their `model.build_conversation_input_ids(tokenizer, query=, history=[], images=[...])`
  returns one image's `input_ids`, `token_type_ids`, `attention_mask` and `images`, which are
  batched here (left padding, language token type 0) as the checkpoints' own batch demo does
  (THUDM/CogVLM2 basic_demo/cli_demo_batch_inference.py) and passed to `model.generate`.
  CogVLM (v1) ships no tokenizer: `tokenizer=` names one (Vicuna's, `lmsys/vicuna-7b-v1.5`).

Which way is decided by the loaded model (does it have `build_conversation_input_ids`?), not by
its name. `trust_remote_code` only when asked. The interface is `vlm_engine.VLMEngine`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from ..error_text import describe
from ..errors import ModelLoadError
from ..settings import VLM_BATCH_SIZE, VLM_MAX_NEW_TOKENS, VLM_RETRY_TEMPERATURE
from .device import load_device, torch_dtype
from .loading import load_failure_reason, load_pretrained
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
        tokenizer: str | None = None,
    ):
        import transformers

        self.model_id = model
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device = load_device(device)
        kw: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        self.processor = _load_processor(model, tokenizer, kw)
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
        self.builds_own_inputs = callable(getattr(self.model, "build_conversation_input_ids", None))
        if tokenizer is not None and not self.builds_own_inputs:
            raise ModelLoadError(
                f"--tokenizer is for checkpoints that build their own inputs (CogVLM); {model} uses its processor"
            )
        tok = self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        tok.padding_side = "left"  # decoder-only batched generation continues from the right edge
        if tok.pad_token_id is None and tok.eos_token_id is not None:
            tok.pad_token = tok.eos_token
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.revision = revision or getattr(self.model.config, "_commit_hash", None)
        if self.builds_own_inputs:
            return
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

        if self.builds_own_inputs:
            inputs = self._conversation_inputs(images, prompt)
        else:
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

    def _conversation_inputs(self, images: Sequence[Image.Image], prompt: str) -> dict[str, Any]:
        """CogVLM-style inputs for a batch: the model's own builder per image, then left-padded.

        Per-token tensors (`input_ids`, `token_type_ids`, `attention_mask`) are padded on the left
        (pad id, language type 0, mask 0); lists of image tensors (`images`, CogAgent's
        `cross_images`) become one list per row, as `generate` expects (`[[image], [image]]`).
        The template version is the checkpoint's own (`config.template_version`): not passed."""
        import torch

        feats = [
            self.model.build_conversation_input_ids(self.tokenizer, query=prompt, history=[], images=[img])
            for img in images
        ]
        width = max(len(f["input_ids"]) for f in feats)
        fill = {"input_ids": self.pad_id, "token_type_ids": 0, "attention_mask": 0}
        batch: dict[str, Any] = {}
        for key, first in feats[0].items():
            if isinstance(first, torch.Tensor) and first.dim() == 1 and len(first) == len(feats[0]["input_ids"]):
                rows = [
                    torch.cat([torch.full((width - len(f[key]),), fill.get(key, 0), dtype=f[key].dtype), f[key]])
                    for f in feats
                ]
                batch[key] = torch.stack(rows).to(self.device)
            elif isinstance(first, (list, tuple)):
                batch[key] = [[self._to_model(t) for t in f[key]] for f in feats] if first else None
        return batch

    def _to_model(self, t: Any) -> Any:
        """A tensor on the model's device; floating ones in its dtype (pixels arrive as float32)."""
        return t.to(self.device, dtype=self.model.dtype) if t.is_floating_point() else t.to(self.device)

    def _one(self, image: Image.Image, prompt: str, sample_seed: int | None) -> Generation:
        try:
            return self._generate_batch([image], prompt, sample_seed)[0]
        except Exception as exc:
            return Generation(None, 0, describe(exc))  # no object address reaches the error row

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


def _load_processor(model: str, tokenizer: str | None, kw: dict[str, Any]) -> Any:
    """The checkpoint's processor; or, for checkpoints that build their own inputs, a tokenizer
    (named by `tokenizer`, or the checkpoint's own when it has no processor and runs remote code)."""
    from transformers import AutoProcessor, AutoTokenizer

    if tokenizer is not None:
        return load_pretrained(
            AutoTokenizer.from_pretrained,
            tokenizer,
            what="tokenizer",
            option="--tokenizer",
            trust_remote_code=kw["trust_remote_code"],
        )
    try:  # not found, offline, or a folder transformers does not recognise: the user's choice of --vlm
        return AutoProcessor.from_pretrained(model, **kw)
    except (OSError, ValueError) as exc:
        if not kw["trust_remote_code"]:
            raise ModelLoadError(
                f"cannot load the VLM '{model}': {load_failure_reason(model, exc)}; "
                "pass a local folder with --vlm PATH (a save_pretrained or `hf download` copy)"
            ) from exc
        first = exc
    try:  # remote-code checkpoints that build their own inputs (CogVLM2) need only their tokenizer
        return AutoTokenizer.from_pretrained(model, **kw)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load the processor or tokenizer of '{model}': {load_failure_reason(model, first)}; "
            "pass a local folder with --vlm PATH; a checkpoint without a tokenizer "
            "(THUDM/cogvlm-chat-hf) needs --tokenizer (lmsys/vicuna-7b-v1.5)"
        ) from exc


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
