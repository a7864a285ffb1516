"""Shared fixtures: offline Hub, tiny random models built once per session, sample sounds."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # a missing local file must fail fast, never reach for the Hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

from sonify_toolkit.sample_data import make_sample_sounds


@pytest.fixture(scope="session")
def tiny_clap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny random ClapModel + ClapProcessor saved with save_pretrained."""
    from tests.tiny.clap import build_tiny_clap

    return build_tiny_clap(tmp_path_factory.mktemp("tiny_clap"))


@pytest.fixture(scope="session")
def sample_sounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated sample collection (5 kinds x 4 clips, mixed rates/channels/formats) with labels.csv."""
    return make_sample_sounds(tmp_path_factory.mktemp("sounds"), n_per_kind=4)
