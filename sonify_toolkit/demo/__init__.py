"""The bundled demo: sample inputs, tiny fallback models, and the end-to-end run behind `sonify demo`."""

from ..settings import DEFAULT_CLAP

# A 0.9B LLaVA (Qwen2-0.5B + SigLIP): minutes on a laptop CPU, and its processor needs no torchvision
# (SmolVLM's and Qwen2-VL's video processors do, and torchvision has no wheel matching the pinned CPU torch).
DEMO_VLM = "llava-hf/llava-interleave-qwen-0.5b-hf"
DEMO_CLAP = DEFAULT_CLAP
