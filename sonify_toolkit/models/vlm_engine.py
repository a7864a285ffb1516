"""What every vision-language engine is: one `Generation` per image, failures per image.

An engine turns a batch of RGB images plus one prompt into one `Generation` per image. Failures
are per image (`Generation.error`), never an exception for the whole batch, so a stage can write
error rows and go on. The engines (`vlm.TransformersVLM`, `vlm_openai.OpenAIVLM`) import this
module and never each other; `vlm_factory.make_engine` is the one place that knows them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from PIL import Image

ENGINES = ("transformers", "openai")  # the names `--engine` accepts


@dataclass
class Generation:
    """One image's answer: the text (None on error), generated token count, error message, and
    whether the text was cut to the engine's cap (the concepts row's `raw_response_truncated`)."""

    text: str | None
    tokens: int = 0
    error: str | None = None
    truncated: bool = False


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
