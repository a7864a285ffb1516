"""Shared fixtures: offline Hub, tiny random models built once per session, sample sounds."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"  # a missing local file must fail fast, never reach for the Hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# datasets caches what load_dataset reads under ~/.cache keyed by path and mtime; a stale entry from an
# earlier run (same tmp path, other bytes) would be served back. One fresh cache per test session,
# set before datasets is imported (it reads the variable at import) and inherited by subprocesses.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="sonify-tests-datasets-")

from pathlib import Path

import pytest

from sonify_toolkit.sample_data import make_sample_sounds

atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_clap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny random ClapModel + ClapProcessor saved with save_pretrained."""
    from tests.tiny.clap import build_tiny_clap

    return build_tiny_clap(tmp_path_factory.mktemp("tiny_clap"))


@pytest.fixture(scope="session")
def sample_sounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated sample collection (5 kinds x 4 clips, mixed rates/channels/formats) with labels.csv."""
    return make_sample_sounds(tmp_path_factory.mktemp("sounds"), n_per_kind=4)
