"""The engine named on the command line, built from the options meant for it.

Apart from `vlm_engine` (the interface) so that the engines import the interface and this module
imports the engines: no module imports one that imports it back.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .vlm_engine import ENGINES, VLMEngine

TRANSFORMERS_OPTIONS = (
    "device",
    "dtype",
    "batch_size",
    "max_new_tokens",
    "trust_remote_code",
    "revision",
    "tokenizer",
)
OPENAI_OPTIONS = ("base_url", "api_key", "concurrency", "timeout", "max_retries", "backoff", "max_new_tokens")


def make_engine(kind: str, model: str, **options: Any) -> VLMEngine:
    """Load engine `kind` for `model`; options not meant for it are ignored (the stage passes all of them)."""
    if kind == "transformers":
        from .vlm import TransformersVLM  # torch + transformers: only for the in-process engine

        return TransformersVLM(model, **{k: v for k, v in options.items() if k in TRANSFORMERS_OPTIONS})
    if kind == "openai":
        from .vlm_openai import OpenAIVLM

        return OpenAIVLM(model, **{k: v for k, v in options.items() if k in OPENAI_OPTIONS})
    raise InputError(f"unknown VLM engine '{kind}' (choose: {', '.join(ENGINES)})")
