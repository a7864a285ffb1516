"""The pipeline's tables as explicit pyarrow schemas: what every stage writes and the next reads.

Explicit schemas keep shards written by different workers, machines or versions concatenable,
and make an empty shard (a shard whose every item failed) a valid, typed table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

# --- errors: one row per failed item, every stage ----------------------------------------------
ERRORS = pa.schema(
    [
        pa.field("item", pa.string(), nullable=False),  # what failed: a file, an image id, a pair id
        pa.field("reason", pa.string(), nullable=False),  # short machine-readable reason
        pa.field("detail", pa.string()),  # human-readable message
    ]
)

# --- pool: one row per 5-s segment ---------------------------------------------------------------
POOL_SEGMENTS = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),  # "{source}/{path}#{segment}"
        pa.field("source", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),  # POSIX, relative to the collection root
        pa.field("segment", pa.int32(), nullable=False),
        pa.field("num_frames", pa.int32(), nullable=False),  # valid 16 kHz frames before padding
        pa.field("source_sha256", pa.string(), nullable=False),
        pa.field("lufs", pa.float64(), nullable=False),
        pa.field("peak", pa.float32(), nullable=False),
        pa.field("labels", pa.list_(pa.string()), nullable=False),
    ]
)

# --- concepts: one row per (image, VLM) ----------------------------------------------------------
CONCEPT = pa.struct([pa.field("name", pa.string()), pa.field("description", pa.string())])
CONCEPTS = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("image_path", pa.string()),  # path, "tar::member", or "hf://name/split#index"
        pa.field("vlm", pa.string(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("concepts", pa.list_(CONCEPT), nullable=False),
        pa.field("keep", pa.bool_(), nullable=False),
        pa.field("drop_reason", pa.string()),
        pa.field("raw_response", pa.string()),
        pa.field("error", pa.string()),
        # the engine cut the answer to its cap (settings.OPENAI_MAX_ANSWER_CHARS); null: no answer, or an
        # older table (see `conform`)
        pa.field("raw_response_truncated", pa.bool_()),
    ]
)

# --- pairs (the metadata release): one row per (image, VLM) --------------------------------------
PAIR_SOURCE = pa.struct(
    [
        pa.field("concept", pa.string()),
        pa.field("description", pa.string()),
        pa.field("clip_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("path", pa.string()),
        pa.field("segment", pa.int32()),
        pa.field("source_sha256", pa.string()),
        pa.field("similarity", pa.float32()),  # cosine similarity s
        pa.field("score", pa.float32()),  # signed square root r
        pa.field("threshold", pa.float32()),  # tau = mean(r over top-k)
        pa.field("clip_lufs", pa.float32()),
        pa.field("target_lufs", pa.float32()),
    ]
)
PAIRS = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),  # "{image_id}|{vlm}"
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("image_source", pa.string()),
        pa.field("vlm", pa.string(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("sources", pa.list_(PAIR_SOURCE), nullable=False),
    ]
)

# --- render: one row per pair source that could not be used (the summary lists them per collection) -
MISSING = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("source_index", pa.int32(), nullable=False),
        pa.field("collection", pa.string()),
        pa.field("path", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
    ]
)

# --- rendered audio index: one row per pair ------------------------------------------------------
RENDERED = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("path", pa.string()),  # relative to the render output folder
        pa.field("lufs", pa.float64()),
        pa.field("peak", pa.float32()),
        pa.field("mix_gain_db", pa.float32()),  # 0 unless the sum would have clipped
        pa.field("status", pa.string(), nullable=False),  # "ok" or an error reason
        pa.field("error", pa.string()),
    ]
)


def table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) to a table of exactly `schema`: missing keys are null, extra keys an error."""
    names = set(schema.names)
    for row in rows:
        extra = set(row) - names
        if extra:
            raise KeyError(f"columns not in schema: {sorted(extra)}")
    return pa.Table.from_pylist(list(rows), schema=schema)


def conform(tbl: pa.Table, schema: pa.Schema) -> pa.Table:
    """A stored table as `schema`: nullable columns it predates are added as nulls, then it is cast.

    Lets a newer version read tables an older one wrote (and resume a stage they are part of)
    when a release adds a nullable column; a missing required column still fails the cast.
    """
    for f in schema:
        if f.name not in tbl.column_names and f.nullable:
            tbl = tbl.append_column(f, pa.nulls(tbl.num_rows, f.type))
    if tbl.column_names != schema.names and set(schema.names) <= set(tbl.column_names):
        tbl = tbl.select(schema.names)
    return tbl.cast(schema)


# --- the Hugging Face release ----------------------------------------------------------------------
def pairs_features() -> Any:
    """The release's `datasets.Features`: the pairs table as `load_dataset` hands it to users.

    Derived from `PAIRS` so the card, the parquet shards and the table can never disagree.
    Imported lazily: `datasets` is heavy and only publishing needs it.
    """
    import datasets

    return datasets.Features.from_arrow_schema(PAIRS)


def rendered_features(sample_rate: int = 16_000) -> Any:
    """Features of the optional rendered-audio config: one encoded FLAC mix per pair plus its loudness."""
    import datasets

    return datasets.Features(
        {
            "pair_id": datasets.Value("string"),
            "audio": datasets.Audio(sampling_rate=sample_rate),
            "lufs": datasets.Value("float64"),
            "peak": datasets.Value("float32"),
            "mix_gain_db": datasets.Value("float32"),
        }
    )
