"""Every default of the pipeline in one place, so a release can state exactly what it used.

Values marked *paper* come from "Seeing Sound" (sections 3.2-3.3, appendices A.2, A.7, A.9);
the others are our documented choices where the paper is silent (see docs/architecture.md).
"""

from __future__ import annotations

# --- audio standardisation (paper, A.7) -------------------------------------------------------
SAMPLE_RATE = 16_000  # paper: every clip resampled to 16 kHz
SEGMENT_SECONDS = 5.0  # paper: non-overlapping 5-s segments, the last zero-padded
SEGMENT_FRAMES = int(SAMPLE_RATE * SEGMENT_SECONDS)
SILENCE_LUFS = -70.0  # ours: BS.1770's absolute gate; quieter segments carry no sound to retrieve
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc", ".w64", ".opus")

# --- CLAP (paper, 3.3) -------------------------------------------------------------------------
DEFAULT_CLAP = "laion/clap-htsat-unfused"  # LAION CLAP in transformers format
CLAP_SAMPLE_RATE = 48_000  # CLAP's audio tower is trained at 48 kHz
CLAP_BATCH_SIZE = 32

# --- work layout ---------------------------------------------------------------------------------
DEFAULT_WORKDIR = "sonify-work"
POOL_FILES_PER_SHARD = 256  # ours: ~1-2 min of work per shard keeps a killed run cheap to resume

# --- extraction (paper, 3.2 and A.2) -------------------------------------------------------------
DEFAULT_VLM = "llava-hf/llava-1.5-7b-hf"
MAX_CONCEPTS = 5
NON_SONIC_KEYWORDS = ("logo", "icon", "emblem", "symbol", "trademark", "sign")  # paper, A.2
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
IMAGES_PER_SHARD = 1000

# --- retrieval (paper, Algorithm 1) --------------------------------------------------------------
TOP_K = 16
LUFS_MIN = -24.0  # target loudness range per source (LUFS); ours, the paper gives no numbers
LUFS_MAX = -22.0
SEED = 0
PAIRS_PER_SHARD = 10_000

# --- render ------------------------------------------------------------------------------------
RENDER_FORMAT = "flac"
PAIRS_PER_RENDER_SHARD = 1000
