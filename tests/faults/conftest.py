"""Fixtures of the fault catalogue (its cases are marked ``faults`` where slow; ``make test-faults`` runs those)."""

from __future__ import annotations

import pytest

from tests.support import training_builders


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Each module runs on one intra-op thread: the in-process training runs here are tiny (far faster, no
    contention), and the kill -9 driver's child runs on one thread too, as its reference run."""
    with training_builders.one_thread():
        yield
