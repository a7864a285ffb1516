"""The tiny random CLAP of the tests is the demo's offline fallback model (one builder, in the package)."""

from sonify_toolkit.demo.tiny_models import build_tiny_clap

__all__ = ["build_tiny_clap"]
