"""sonify: audio-image training data from any image collection (the "Seeing Sound" method)."""

__version__ = "0.1.0"
