"""The fixed sets of values that options accept, as str enums (one small class per option).

Typer lists an enum's values in `--help` and refuses any other value in one line. Stages keep
plain strings in their parameters (fingerprints stay stable): the CLI passes `.value` on.
Devices are not here: they are open-ended (cpu, cuda, cuda:N, mps, auto) and checked against the
machine by `models.device`.
"""

from __future__ import annotations

from enum import Enum


class KeywordMatch(str, Enum):
    """How a non-sonic keyword is found in a caption: whole words (and plurals) or anywhere (the paper's "contains")."""

    word = "word"
    substring = "substring"


class Engine(str, Enum):
    """Where a VLM runs: in this process (transformers) or behind an OpenAI-compatible server (vLLM, SGLang...)."""

    transformers = "transformers"
    openai = "openai"


class IndexKind(str, Enum):
    """How retrieval searches the pool: exact matmul, faiss exact, or faiss approximate for huge pools."""

    exact = "exact"
    flat = "flat"
    ivf = "ivf"
    hnsw = "hnsw"


class RenderFormat(str, Enum):
    """What render writes: audio files, or an HF dataset (parquet with FLAC bytes)."""

    flac = "flac"
    wav = "wav"
    hf = "hf"


class ExecutorKind(str, Enum):
    """Where shards run: a local process pool or Ray actors."""

    local = "local"
    ray = "ray"


class ConceptText(str, Enum):
    """What CLAP reads of a concept: its description, its name, or both ('name: description')."""

    description = "description"
    name = "name"
    both = "both"


class Arrange(str, Enum):
    """How the recipe's `generate` combines several sources: summed (a mix) or one after another (a sequence)."""

    mix = "mix"
    sequence = "sequence"


class Dtype(str, Enum):
    """Model precision: auto is bf16 on GPU and fp32 on CPU."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
