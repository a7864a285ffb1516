"""The tiny random LLaVA of the tests is the demo's offline fallback VLM (one builder, in the package).

Saved with save_pretrained and loaded by path through the same code as `llava-hf/llava-1.5-7b-hf`.
Its answers are noise: exactly what the parser's and the stage's error paths must survive.
"""

from sonify_toolkit.demo.tiny_models import CHAT_TEMPLATE, build_tiny_llava

__all__ = ["CHAT_TEMPLATE", "build_tiny_llava"]
