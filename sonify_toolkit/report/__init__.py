"""`sonify report`: a self-contained HTML page (plus its PNG plots, thumbnails and audio) for a run."""

from .build import build_report

__all__ = ["build_report"]
