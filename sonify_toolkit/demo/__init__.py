"""The bundled demo: sample inputs, tiny fallback models, and the end-to-end run behind `sonify demo`."""

from ..settings import DEFAULT_CLAP

DEMO_VLM = "HuggingFaceTB/SmolVLM-256M-Instruct"  # 256M parameters: minutes on a laptop CPU
DEMO_CLAP = DEFAULT_CLAP
