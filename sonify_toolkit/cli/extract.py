"""`sonify extract`: sounding concepts of every image, once per VLM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..choices import Dtype, Engine, KeywordMatch
from ..errors import InputError
from ..settings import (
    DEFAULT_VLM,
    DEFAULT_WORKDIR,
    EXTRACT_PROMPT,
    FILTER_CAPTION_OWN,
    IMAGES_PER_SHARD,
    MAX_CONCEPTS,
    NON_SONIC_KEYWORDS,
    NON_SONIC_MATCH,
    OPENAI_API_KEY_ENV,
    OPENAI_CONCURRENCY,
    OPENAI_MAX_RETRIES,
    OPENAI_TIMEOUT,
    SAMPLE_SEED,
    VLM_BATCH_SIZE,
    VLM_MAX_IMAGE_SIDE,
    VLM_MAX_NEW_TOKENS,
)
from ..stages.extract import ExtractStage, filter_caption_dir
from .common import Device, DtypeOpt, RunOptions, Workdir, stage_command


@stage_command("extract")
def extract(
    images: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="IMAGES",
            help="Image folders (recursive), SA-1B tars (or folders of them), or manifests (.parquet/.csv).",
        ),
    ] = None,
    workdir: Workdir = Path(DEFAULT_WORKDIR),
    vlm: Annotated[
        list[str] | None,
        typer.Option("--vlm", metavar="MODEL", help="VLM (Hub id or path); repeat for one run per model."),
    ] = None,
    engine: Annotated[
        Engine, typer.Option("--engine", help="transformers (in process) or openai (a vLLM/SGLang server).")
    ] = Engine.transformers,
    hf_dataset: Annotated[
        str | None, typer.Option("--hf-dataset", help="Hugging Face image dataset (Hub id or local folder).")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Dataset split.")] = "train",
    image_column: Annotated[str, typer.Option("--image-column", help="Dataset column holding images.")] = "image",
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="Dataset column of image ids (default: row index).")
    ] = None,
    device: Device = "auto",
    dtype: DtypeOpt = Dtype.auto,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per generate() call.")] = (
        VLM_BATCH_SIZE
    ),
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = VLM_MAX_NEW_TOKENS,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Run the checkpoint's own code (CogVLM ...).")
    ] = False,
    tokenizer: Annotated[
        str | None,
        typer.Option("--tokenizer", help="A tokenizer apart from the checkpoint (THUDM/cogvlm-chat-hf: Vicuna's)."),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option("--sample", min=1, help="A uniform random subset of N input images (same for any sharding)."),
    ] = None,
    sample_seed: Annotated[int, typer.Option("--sample-seed", help="Which subset --sample draws.")] = SAMPLE_SEED,
    prompt_file: Annotated[
        Path | None, typer.Option("--prompt-file", help="Prompt text; '{max_concepts}' is filled in.")
    ] = None,
    max_concepts: Annotated[int, typer.Option("--max-concepts", min=1)] = MAX_CONCEPTS,
    non_sonic: Annotated[
        str,
        typer.Option("--non-sonic", help="Comma-separated caption keywords that drop an image ('' disables)."),
    ] = ",".join(NON_SONIC_KEYWORDS),
    keyword_match: Annotated[
        KeywordMatch,
        typer.Option("--keyword-match", help="word: whole words; substring: anywhere, the paper's 'contains'."),
    ] = NON_SONIC_MATCH,
    filter_caption_from: Annotated[
        str,
        typer.Option(
            "--filter-caption-from",
            help="Whose caption decides the non-sonic filter: 'own', or a VLM extracted before (the paper: LLaVA).",
        ),
    ] = FILTER_CAPTION_OWN,
    max_image_side: Annotated[
        int, typer.Option("--max-image-side", min=0, help="Downscale larger images first (0: never).")
    ] = VLM_MAX_IMAGE_SIDE,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Images per shard.")] = IMAGES_PER_SHARD,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="openai engine: server URL, e.g. http://localhost:8000/v1.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar=OPENAI_API_KEY_ENV,
            show_default=False,
            help=f"openai engine key (or ${OPENAI_API_KEY_ENV}).",
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="openai engine: requests in flight.")] = (
        OPENAI_CONCURRENCY
    ),
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="openai engine: seconds per request.")] = (
        OPENAI_TIMEOUT
    ),
    max_retries: Annotated[int, typer.Option("--max-retries", min=0, help="openai engine: retries per request.")] = (
        OPENAI_MAX_RETRIES
    ),
    *,
    run: RunOptions,
) -> None:
    """Ask vision-language models for the sounding concepts visible in each image; drop non-sonic images."""
    if not images and not hf_dataset:
        raise InputError("give image folders, tars or manifests, or --hf-dataset")
    prompt = EXTRACT_PROMPT
    if prompt_file is not None:
        prompt = prompt_file.read_text()
        if not prompt.strip():
            raise InputError(f"--prompt-file {prompt_file} is empty")
    keywords = tuple(k.strip() for k in non_sonic.split(",") if k.strip())
    for model in vlm or [DEFAULT_VLM]:  # in the order given: a caption source named first is extracted first
        stage = ExtractStage(
            vlm=model,
            inputs=[str(p) for p in images or []],
            hf_dataset=hf_dataset,
            split=split,
            image_column=image_column,
            id_column=id_column,
            engine=engine.value,
            device=device,
            dtype=dtype.value,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            trust_remote_code=trust_remote_code,
            tokenizer=tokenizer,
            sample=sample,
            sample_seed=sample_seed,
            prompt=prompt,
            max_concepts=max_concepts,
            non_sonic_keywords=keywords,
            keyword_match=keyword_match.value,
            filter_caption_dir=filter_caption_dir(filter_caption_from, model, workdir),
            max_image_side=max_image_side,
            images_per_shard=shard_size,
            base_url=base_url,
            api_key=api_key,
            concurrency=concurrency,
            timeout=timeout,
            max_retries=max_retries,
        )
        run.run(stage, workdir)
