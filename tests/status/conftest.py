"""Fixtures for `sonify status`: synthetic work directories (finished and cut short)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.publish.synthetic import make_workdir


@pytest.fixture(scope="module")
def partial_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(tmp_path_factory.mktemp("partial"), partial=True)


@pytest.fixture(scope="module")
def finished_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(tmp_path_factory.mktemp("finished"))
