"""Fixtures of the training tests (their builders: ``tests.support.training_builders``)."""

from __future__ import annotations

import pytest

from tests.support import training_builders


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Each training test module runs on one intra-op thread (tiny models: far faster, no contention)."""
    with training_builders.one_thread():
        yield
