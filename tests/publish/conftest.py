"""Fixtures for the publish tests: a synthetic finished work directory and its release."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonify_toolkit.stages.publish import ReleaseSummary, build_release
from tests.publish.synthetic import make_workdir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(tmp_path_factory.mktemp("publish"))


@pytest.fixture(scope="module")
def release(workdir: Path) -> ReleaseSummary:
    return build_release(workdir, workdir.parent / "release", repo_id="sonify-test/pairs", rendered=workdir / "render")
