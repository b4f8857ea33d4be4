"""Shared fixtures: a tiny model on a volume, and (from `tests.support.aws`) the loopback S3 and SQS servers.

Fixtures only: the helpers the tests import are in `tests.support`.
"""

from __future__ import annotations

import pytest

from processor.storage.volume import ModelFolder, Volume

from tests.support.volumes import make_tiny_volume

pytest_plugins = ["tests.support.aws"]  # loopback moto and SeaweedFS servers, started once per session


@pytest.fixture(scope="session")
def tiny_volume(tmp_path_factory: pytest.TempPathFactory) -> Volume:
    return make_tiny_volume(tmp_path_factory.mktemp("volume"))


@pytest.fixture(scope="session")
def tiny_model(tiny_volume: Volume) -> ModelFolder:
    return tiny_volume.model("tiny")
