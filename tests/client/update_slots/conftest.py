"""Fixtures for the A/B slot tests: real checkpoints and patches, built once per module."""

from __future__ import annotations

from pathlib import Path

import pytest
from slot_models import Models, build_models

from fedota.client.update.install import Update, install


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state directory with no model installed yet."""
    return tmp_path / "state"


@pytest.fixture
def state_v1(state: Path, models: Models) -> Path:
    """A state directory that runs v1 (installed as a full artifact, healthy)."""
    result = install(state, Update(models.v1.target, models.v1.path))
    assert result.status == "healthy", result.reason
    return state
