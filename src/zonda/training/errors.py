"""Errors of the training stage that mean bad inputs, not bugs (the CLI reports them without a traceback)."""

from __future__ import annotations


class TrainingInputError(ValueError):
    """Bad training inputs or settings: the message names the file or the params field."""
