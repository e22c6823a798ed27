"""Fixtures of the registry tests (their builders: ``tests.support.registry_builders``)."""

from __future__ import annotations

import pytest

from tests.support import registry_builders


@pytest.fixture(autouse=True, scope="module")
def _restore_tracking_uri():
    """mlflow's process-wide tracking URI (which registering and ``tracking.configure`` set) is restored
    after each registry test module, so no module sees a store an earlier one left behind."""
    with registry_builders.preserved_tracking_uri():
        yield
