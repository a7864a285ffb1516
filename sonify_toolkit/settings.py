"""Every default of the pipeline in one place, so a release can state exactly what it used.

Values marked *paper* come from "Seeing Sound" (sections 3.2-3.3, appendices A.2, A.7, A.9);
the others are our documented choices where the paper is silent (see docs/architecture.md).
"""

from __future__ import annotations

from .choices import KeywordMatch

# --- audio standardisation (paper, A.7) -------------------------------------------------------
SAMPLE_RATE = 16_000  # paper: every clip resampled to 16 kHz
SEGMENT_SECONDS = 5.0  # paper: non-overlapping 5-s segments, the last zero-padded
SEGMENT_FRAMES = int(SAMPLE_RATE * SEGMENT_SECONDS)
SILENCE_LUFS = -70.0  # ours: BS.1770's absolute gate; quieter segments carry no sound to retrieve
# libsndfile reads the first row; FFmpeg (PyAV) decodes the rest, and the audio track of video containers
AUDIO_EXTENSIONS = (
    *(".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".w64", ".caf"),
    *(".m4a", ".aac", ".mp4", ".m4v", ".mov", ".mkv", ".mka", ".webm", ".wma"),
)
# ours: plausibility, decided from a file's header before decoding (an error row, not gigabytes of bogus audio)
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
MAX_AUDIO_SECONDS = 6 * 3600.0  # PoolSegmentsStage.max_seconds: longer files are error rows (in the fingerprint)
# ours: +60 dBFS. Float files may exceed full scale a little; samples beyond this are not audio (mis-scaled
# or non-audio float data, e.g. a WAV of 3e29s that would measure 585 LUFS) and the file becomes an error row.
MAX_SAMPLE_PEAK = 1e3
# ours: input resampled either side of each 5-s block (a whole number of the rates' common periods): enough
# for soxr HQ's filter, so blocks joined agree with a one-shot resample to float rounding (tests/pool)
STANDARD_MARGIN_SECONDS = 0.1

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
# ours: whole words (and plurals). The paper's "caption contains" is `--keyword-match substring`, which
# also drops captions with "design", "signal", "iconic", "symbolic", "assignment" (see docs/vlms.md).
NON_SONIC_MATCH = KeywordMatch.word
# ours: each VLM's own caption decides its own row. The paper filters every image on LLaVA's caption:
# `--filter-caption-from llava-hf/llava-1.5-7b-hf` (see docs/vlms.md).
FILTER_CAPTION_OWN = "own"
SAMPLE_SEED = 0  # `--sample N`: which N images, by a seeded hash of each image id (images.sample_items)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
IMAGES_PER_SHARD = 1000

# --- retrieval (paper, Algorithm 1) --------------------------------------------------------------
TOP_K = 16
LUFS_MIN = -24.0  # target loudness range per source (LUFS); ours, the paper gives no numbers
LUFS_MAX = -22.0
SEED = 0
TEXTS_PER_SHARD = 50_000  # distinct concept texts per search shard (~1-2 min of CLAP text work on a GPU)
RECALL_SAMPLE = 256  # queries per search shard checked against exact search for approximate indexes

# --- render ------------------------------------------------------------------------------------
RENDER_FORMAT = "flac"
RENDER_FORMATS = ("flac", "wav", "hf")  # hf: parquet shards with FLAC bytes in an Audio column
PAIRS_PER_RENDER_SHARD = 1000
RENDER_CACHE_MB = 512  # ours: decoded 16 kHz float32 files kept per worker (~28 min of audio)

# --- extraction: prompt and engines (paper 3.2, A.2; see stages/extract.py) -----------------------
# The paper's final prompt (its Figure 2) is not published; ours is built from the failure cases it
# reports. Why each sentence is there:
#  1. "sound sources that are visible and present": the paper found VLMs invent off-camera sounds;
#     adding "visible and present in the image" "significantly improved the retrieval quality" (3.2).
#  2. "Do not list sounds that are off-camera, implied or imagined": the "inference by semantic
#     association" failure (a beach gets "seagulls" with no bird in sight) (limitations).
#  3. "Statues, drawings, paintings, toys, screens, posters, logos and signs make no sound": SAM is
#     full of art-like visuals and logos for which VLMs still return plausible concepts (limitations, A.2).
#  4. "a short name and one line describing the sound": CLAP retrieval works on "dog: sound of a dog
#     barking while running in the grass" style texts (3.3); the name is what we dedupe on.
#  5. "one-sentence caption": the non-sonic keyword filter (A.2) runs on the caption.
#  6. "at most {max_concepts}": bounds the mix (each concept becomes one summed clip).
#  7. "empty list when nothing makes sound": an explicit way out, so silent images are not padded.
#  8. The JSON shape with an example: a fixed, parseable answer (the parser also copes with prose).
# `{max_concepts}` is replaced by --max-concepts (plain replacement: a --prompt-file may hold JSON braces).
EXTRACT_PROMPT = (
    "List the sound sources that are visible and present in this image: things shown in the image "
    "that make a sound.\n"
    "Do not list sounds that are off-camera, implied by the setting or imagined.\n"
    "Statues, drawings, paintings, toys, screens, posters, logos and signs make no sound.\n"
    "For each sound source give a short name (one to three words) and one line describing the sound it makes.\n"
    "Also give a one-sentence caption of the image.\n"
    "List at most {max_concepts} sound sources; give an empty list when nothing in the image makes a sound.\n"
    'Answer with JSON only, like: {"caption": "A brown dog playing fetch near a river.", '
    '"sounds": [{"name": "dog", "description": "a dog barking while running in the grass"}, '
    '{"name": "river", "description": "water flowing in a river"}]}'
)
VLM_BATCH_SIZE = 8  # transformers engine: images per generate() call
VLM_MAX_NEW_TOKENS = 256  # a 5-concept JSON answer is ~150 tokens
VLM_MAX_IMAGE_SIDE = 1344  # ours: larger images are downscaled before the VLM (SA-1B is ~1500x2250)
VLM_RETRY_TEMPERATURE = 0.7  # the one retry of an unparsable answer samples (greedy would repeat it)
OPENAI_CONCURRENCY = 16  # requests in flight per worker
OPENAI_TIMEOUT = 120.0  # seconds per request
OPENAI_MAX_RETRIES = 5  # on 429, 5xx, timeouts and broken connections, with exponential backoff
OPENAI_BACKOFF = 1.0  # seconds before the first retry (doubles each time, capped at 60 s)
OPENAI_API_KEY_ENV = "OPENAI_API_KEY"
OPENAI_MAX_ANSWER_CHARS = 16_384  # ours: answer text kept per image (~100x a 5-concept answer); longer is cut
